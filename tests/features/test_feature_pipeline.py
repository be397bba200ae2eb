"""FeaturePipeline: every step together, save / load round trip, identical in a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recfunnel.core.errors import ArtifactError, ConfigError
from recfunnel.features import (
    ContextFeatures,
    FeatureCross,
    FeaturePipeline,
    HashedCategorical,
    ItemPageRank,
    MultiValued,
    NumericColumns,
    RetrievalFeatures,
    StreamingNormalizer,
    WindowedCounts,
)

DAY = 86_400.0
GENRES = ["Drama", "Noir", "Comedy", "Action", "Sci-Fi"]


def _data(seed: int = 0, n_rows: int = 300) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    users = [f"u{i}" for i in range(30)]
    items = [f"i{i}" for i in range(50)]
    events = pd.DataFrame(
        {
            "user_id": rng.choice(users, 2000),
            "item_id": rng.choice(items, 2000),
            "timestamp": rng.uniform(0, 30 * DAY, 2000),
        }
    )
    rows = pd.DataFrame(
        {
            "user_id": rng.choice([*users, "new_user"], n_rows),
            "item_id": rng.choice([*items, "new_item"], n_rows),
            "timestamp": rng.uniform(20 * DAY, 31 * DAY, n_rows),
            "score_als": np.where(rng.random(n_rows) < 0.3, np.nan, rng.normal(size=n_rows)),
            "rank_als": rng.integers(1, 100, n_rows).astype(float),
            "score_pop": rng.integers(0, 500, n_rows).astype(float),
            "age": np.where(rng.random(n_rows) < 0.1, np.nan, rng.integers(12, 80, n_rows)),
            "genres": [
                "|".join(rng.choice(GENRES, rng.integers(0, 4), replace=False))
                for _ in range(n_rows)
            ],
        }
    )
    return rows, events


def _pipeline() -> FeaturePipeline:
    return FeaturePipeline(
        [
            ("user", HashedCategorical("user_id", n_buckets=1 << 12, min_count=2)),
            ("item", HashedCategorical("item_id", n_buckets=1 << 12, n_hashes=2)),
            ("genres", MultiValued("genres", n_buckets=64, max_values=3)),
            (
                "age_genre",
                FeatureCross(
                    ["age", "genres"],
                    n_buckets=256,
                    bins={"age": [18, 25, 35, 50]},
                    multi_columns=["genres"],
                    max_values=3,
                ),
            ),
            ("ctx", ContextFeatures(tz="Europe/Paris")),
            ("pop", WindowedCounts("item_id", windows=("1d", "7d", "30d"), log1p=True)),
            ("activity", WindowedCounts("user_id", windows=("7d", "all"))),
            ("pagerank", ItemPageRank()),
            ("user_attr", NumericColumns(["age"])),
            ("retrieval", RetrievalFeatures()),
        ],
        normalizer=StreamingNormalizer(clip=8.0),
    )


@pytest.fixture(scope="module")
def fitted() -> tuple[FeaturePipeline, pd.DataFrame, pd.DataFrame]:
    rows, events = _data()
    return _pipeline().fit(rows, events), rows, events


def test_output_is_the_ranker_input(
    fitted: tuple[FeaturePipeline, pd.DataFrame, pd.DataFrame],
) -> None:
    pipe, rows, _ = fitted
    out = pipe.transform(rows)
    assert out.dense.dtype == np.float32 and out.sparse.dtype == np.int64
    assert out.sparse.shape == (len(rows), 1 + 2 + 3 + 3 + 2)
    assert out.sparse_names[:3] == ("user.user_id", "item.item_id#0", "item.item_id#1")
    assert ((out.sparse >= 0) & (out.sparse < np.asarray(out.n_buckets))).all()
    raw = len(pipe.raw_dense_names_)
    assert out.dense.shape == (len(rows), 2 * raw) and out.dense_names == pipe.dense_names_
    assert "retrieval.als.score.missing" in out.dense_names
    assert np.isfinite(out.dense).all()
    z = out.dense[:, :raw]
    assert np.abs(z).max() <= 8.0  # the normaliser's clip
    unclipped = (np.abs(z) < 8.0).all(axis=0)
    np.testing.assert_allclose(z.mean(axis=0)[unclipped], 0.0, atol=1e-5)
    assert unclipped.sum() >= raw - 2
    ranker_input = out.to_ranker_features()
    assert ranker_input.n_dense == out.dense.shape[1] and ranker_input.n_buckets == out.n_buckets


def test_rows_are_independent_of_batch_and_index(
    fitted: tuple[FeaturePipeline, pd.DataFrame, pd.DataFrame],
) -> None:
    pipe, rows, _ = fitted
    whole = pipe.transform(rows)
    part = pipe.transform(rows.iloc[::-7].set_axis(np.arange(100, 100 + len(rows[::7]))))
    np.testing.assert_array_equal(part.dense, whole.dense[::-7])
    np.testing.assert_array_equal(part.sparse, whole.sparse[::-7])


def test_save_load_round_trip_and_a_new_process(
    fitted: tuple[FeaturePipeline, pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    pipe, _, _ = fitted
    new_rows, _ = _data(seed=1, n_rows=120)
    expected = pipe.transform(new_rows)
    pipe.save(tmp_path / "features")
    loaded = FeaturePipeline.load(tmp_path / "features")
    got = loaded.transform(new_rows)
    np.testing.assert_array_equal(got.dense, expected.dense)
    np.testing.assert_array_equal(got.sparse, expected.sparse)
    assert (got.dense_names, got.sparse_names, got.n_buckets) == (
        expected.dense_names,
        expected.sparse_names,
        expected.n_buckets,
    )
    new_rows.to_parquet(tmp_path / "rows.parquet")
    code = (
        "import sys, numpy as np, pandas as pd;"
        "from recfunnel.features import FeaturePipeline;"
        "p = FeaturePipeline.load(sys.argv[1]);"
        "out = p.transform(pd.read_parquet(sys.argv[2]));"
        "np.savez(sys.argv[3], dense=out.dense, sparse=out.sparse)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "features"), str(tmp_path / "rows.parquet"),
         str(tmp_path / "out.npz")],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    with np.load(tmp_path / "out.npz", allow_pickle=False) as other:
        np.testing.assert_array_equal(other["sparse"], expected.sparse)
        np.testing.assert_array_equal(other["dense"], expected.dense)


def test_artefact_is_checked(
    fitted: tuple[FeaturePipeline, pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    pipe, _, _ = fitted
    path = pipe.save(tmp_path / "f")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["hash"] == "blake2b-64-le/v1"
    for edit in ({"kind": "os.system"}, {"hash": "murmur3"}):
        broken = dict(manifest)
        if "kind" in edit:
            broken["steps"] = [{**manifest["steps"][0], **edit}, *manifest["steps"][1:]]
        else:
            broken.update(edit)
        (path / "manifest.json").write_text(json.dumps(broken))
        with pytest.raises(ArtifactError):
            FeaturePipeline.load(path)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with (path / "arrays.npz").open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(ArtifactError):
        FeaturePipeline.load(path)


def test_update_statistics_streams_into_the_normaliser() -> None:
    rows, events = _data()
    more, _ = _data(seed=2, n_rows=80)
    pipe = _pipeline().fit(rows, events).update_statistics(more)
    raw = np.vstack([pipe._raw(rows).dense, pipe._raw(more).dense])
    reference = StreamingNormalizer().fit(raw)
    assert pipe.normalizer_ is not None
    np.testing.assert_allclose(pipe.normalizer_.mean_, reference.mean_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pipe.normalizer_.var_, reference.var_, rtol=1e-9, atol=1e-9)


def test_configuration_errors() -> None:
    rows, _ = _data(n_rows=10)
    with pytest.raises(ConfigError):
        FeaturePipeline([("pop", WindowedCounts())]).fit(rows)
    with pytest.raises(ConfigError):
        FeaturePipeline([("a", NumericColumns(["age"])), ("a", NumericColumns(["age"]))]).fit(rows)
    raw = FeaturePipeline([("age", NumericColumns(["age"]))], normalize=False).fit(rows)
    assert raw.transform(rows).dense_names == ("age.age",)


def test_columns_give_what_the_frame_gives(
    fitted: tuple[FeaturePipeline, pd.DataFrame, pd.DataFrame],
) -> None:
    """The serving path hands the pipeline numpy ``Columns`` instead of a DataFrame: every
    step, whether it reads the arrays itself or gets them converted, gives the same block,
    including for small batches (dict look-ups) and large ones (pandas index)."""
    from recfunnel.features import Columns

    pipe, rows, _ = fitted
    for part in (rows.iloc[:7], rows, pd.concat([rows] * 20, ignore_index=True)):
        cols = Columns({c: part[c].to_numpy() for c in part.columns})
        a, b = pipe.transform(part), pipe.transform(cols)
        np.testing.assert_array_equal(a.dense, b.dense)
        np.testing.assert_array_equal(a.sparse, b.sparse)
        assert a.dense_names == b.dense_names
    for name, step in pipe.steps:
        part = rows.iloc[:50]
        cols = Columns({c: part[c].to_numpy() for c in part.columns})
        readable = cols if step.reads_columns else cols.to_frame()
        np.testing.assert_array_equal(
            step.transform(part).dense, step.transform(readable).dense, err_msg=name
        )
    with pytest.raises(ConfigError, match="unequal lengths"):
        Columns({"a": [1, 2], "b": [1]})
