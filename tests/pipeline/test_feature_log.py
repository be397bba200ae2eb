"""Feature logging: bit-identical round trip, sampling, date partitions, atomic files, deletion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.features import FeatureBlock
from recfunnel.pipeline.feature_log import FeatureLogger, delete_user, read_feature_log

DAY = 86_400.0
T0 = 19_000 * DAY  # 2022-01-08 00:00 UTC


def _block(n: int, seed: int) -> FeatureBlock:
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, 3)).astype(np.float32)
    special = np.array([np.nan, -0.0, np.inf, -np.inf, 1e-45, np.finfo(np.float32).max], np.float32)
    dense[: min(n, 6), 0] = special[: min(n, 6)]
    sparse = rng.integers(0, 50, size=(n, 2)).astype(np.int64)
    sparse[0, 1] = np.iinfo(np.int64).max
    return FeatureBlock(dense, sparse, ("price", "age", "ctr"), ("genre", "hour"), (50, 2**63 - 1))


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_round_trip_is_bit_identical(tmp_path: Path) -> None:
    blocks = [_block(20, s) for s in range(3)]
    with FeatureLogger(tmp_path, sample_rate=1.0) as log:
        for r, block in enumerate(blocks):
            log.log(
                request_id=f"r{r}",
                user_id=f"u{r}",
                stage="rank",
                item_ids=[f"i{j}" for j in range(20)],
                features=block,
                scores=np.linspace(1, 0, 20),
                shown=np.arange(20) < 5,
                model_versions={"ranker": "lgb-3", "retrieval": "als-7"},
                timestamp=T0 + 60 * r,
            )
    got, meta = read_feature_log(tmp_path)
    want = FeatureBlock.concat(
        [
            FeatureBlock(
                np.concatenate([b.dense for b in blocks]),
                np.concatenate([b.sparse for b in blocks]),
                blocks[0].dense_names,
                blocks[0].sparse_names,
                blocks[0].n_buckets,
            )
        ]
    )
    assert got.dense.dtype == np.float32 and got.sparse.dtype == np.int64
    assert got.dense.view(np.uint32).tobytes() == want.dense.view(np.uint32).tobytes()
    assert np.array_equal(got.sparse, want.sparse)
    assert (got.dense_names, got.sparse_names, got.n_buckets) == (
        want.dense_names,
        want.sparse_names,
        want.n_buckets,
    )
    assert meta["request_id"].tolist() == [f"r{r}" for r in range(3) for _ in range(20)]
    assert meta["position"].tolist() == list(range(20)) * 3
    assert meta["shown"].sum() == 15
    assert json.loads(meta["model_versions"][0]) == {"ranker": "lgb-3", "retrieval": "als-7"}
    assert meta["timestamp"].tolist()[::20] == [T0, T0 + 60, T0 + 120]
    assert set(meta["date"]) == {"2022-01-08"}
    np.testing.assert_array_equal(meta["score"].to_numpy()[:20], np.linspace(1, 0, 20))


def test_ranker_trained_from_logs_equals_in_memory(tmp_path: Path) -> None:
    from recfunnel.ranking import make_ranker

    rng = np.random.default_rng(0)
    n = 400
    block = FeatureBlock(
        rng.normal(size=(n, 4)).astype(np.float32),
        rng.integers(0, 8, size=(n, 1)),
        ("a", "b", "c", "d"),
        ("g",),
        (8,),
    )
    labels = (block.dense[:, 0] + 0.3 * block.sparse[:, 0] > 1.0).astype(float)
    with FeatureLogger(tmp_path, sample_rate=1.0) as log:
        for r in range(4):
            rows = slice(100 * r, 100 * (r + 1))
            sub = FeatureBlock(
                block.dense[rows],
                block.sparse[rows],
                block.dense_names,
                block.sparse_names,
                block.n_buckets,
            )
            log.log(
                request_id=f"r{r}",
                user_id="u",
                stage="rank",
                features=sub,
                item_ids=[f"i{j}" for j in range(100)],
                shown=np.ones(100, bool),
                timestamp=T0,
            )
    logged, _ = read_feature_log(tmp_path)
    params = dict(n_estimators=20, num_leaves=7, min_child_samples=5, n_threads=1)
    a = make_ranker("lightgbm", **params).fit(block.to_ranker_features(), labels)
    b = make_ranker("lightgbm", **params).fit(logged.to_ranker_features(), labels)
    probe = block.to_ranker_features()
    assert np.array_equal(a.predict(probe), b.predict(probe))


def test_sampling_rate_is_respected(tmp_path: Path) -> None:
    rate, n_requests, per = 0.1, 50, 400
    log = FeatureLogger(tmp_path, sample_rate=rate, seed=7)
    kept = 0
    for r in range(n_requests):
        kept += log.log(
            request_id=f"r{r}",
            user_id="u",
            stage="retrieve",
            item_ids=[f"i{j}" for j in range(per)],
            features=None,
            shown=np.arange(per) < 10,
            timestamp=T0,
        )
    log.flush()
    _, meta = read_feature_log(tmp_path)
    assert len(meta) == kept
    shown = meta[meta["shown"]]
    dropped = meta[~meta["shown"]]
    assert len(shown) == 10 * n_requests and (shown["logging_probability"] == 1.0).all()
    assert (dropped["logging_probability"] == rate).all()
    n_unshown = n_requests * (per - 10)
    sd = np.sqrt(n_unshown * rate * (1 - rate))
    assert abs(len(dropped) - n_unshown * rate) < 4 * sd  # 19,500 draws: 1,950 +- 4 * 42
    # Weighting by 1 / p recovers the population size.
    total = (1.0 / meta["logging_probability"]).sum()
    assert abs(total - n_requests * per) < 4 * sd / rate
    # The draw is a seeded hash: the same seed keeps the same rows, whatever the order.
    again = FeatureLogger(tmp_path / "again", sample_rate=rate, seed=7)
    for r in reversed(range(n_requests)):
        again.log(
            request_id=f"r{r}",
            user_id="u",
            stage="retrieve",
            item_ids=[f"i{j}" for j in range(per)],
            features=None,
            shown=np.arange(per) < 10,
            timestamp=T0,
        )
    again.flush()
    _, meta2 = read_feature_log(tmp_path / "again")
    key = ["request_id", "item_id"]
    assert sorted(map(tuple, meta2[key].to_numpy())) == sorted(map(tuple, meta[key].to_numpy()))
    other = FeatureLogger(tmp_path / "other", sample_rate=rate, seed=8)
    other.log(
        request_id="r0",
        user_id="u",
        stage="retrieve",
        features=None,
        item_ids=[f"i{j}" for j in range(per)],
        timestamp=T0,
    )
    other.flush()
    _, meta3 = read_feature_log(tmp_path / "other")
    assert set(meta3["item_id"]) != set(meta.loc[meta["request_id"] == "r0", "item_id"])


def test_partitions_by_utc_date_and_selects_ranges(tmp_path: Path) -> None:
    with FeatureLogger(tmp_path, sample_rate=1.0) as log:
        for day in (2, 0, 1):
            log.log(
                request_id=f"d{day}",
                user_id="u",
                stage="rank",
                item_ids=["a", "b"],
                features=_block(2, day),
                timestamp=T0 + day * DAY + DAY - 1,
            )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "date=2022-01-08",
        "date=2022-01-09",
        "date=2022-01-10",
    ]
    for folder in tmp_path.iterdir():
        assert [
            p.name.startswith("part-") and p.suffix == ".parquet" for p in folder.iterdir()
        ] == [True]
    _, meta = read_feature_log(tmp_path)
    assert meta["request_id"].tolist()[::2] == ["d0", "d1", "d2"]  # dates ascending
    block, meta = read_feature_log(tmp_path, start="2022-01-09", end="2022-01-09")
    assert meta["request_id"].unique().tolist() == ["d1"] and len(block) == 2
    _, meta = read_feature_log(tmp_path, start="2022-01-09")
    assert meta["date"].unique().tolist() == ["2022-01-09", "2022-01-10"]
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        read_feature_log(tmp_path, start="09/01/2022")


def test_crash_mid_write_leaves_no_visible_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = FeatureLogger(tmp_path, sample_rate=1.0)
    log.log(
        request_id="r1",
        user_id="u",
        stage="rank",
        item_ids=[f"i{j}" for j in range(50)],
        features=_block(50, 0),
        timestamp=T0,
    )
    original = pq.ParquetWriter.write_table

    def crash(self: pq.ParquetWriter, table, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, table.slice(0, 10), *args, **kwargs)  # half a file reaches the disk
        raise OSError("disk full")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        log.flush()
    assert [p for p in _files(tmp_path)] == []  # not even the temporary file
    block, meta = read_feature_log(tmp_path)
    assert len(block) == 0 and len(meta) == 0
    assert log.n_buffered == 50  # the rows wait for the next flush
    monkeypatch.undo()
    log.flush()
    block, meta = read_feature_log(tmp_path)
    assert len(meta) == 50 and log.n_buffered == 0
    assert np.array_equal(block.sparse, _block(50, 0).sparse)


def test_delete_user(tmp_path: Path) -> None:
    log = FeatureLogger(tmp_path, sample_rate=1.0)
    for day, user in [(0, "alice"), (0, "bob"), (1, "alice"), (2, "carol")]:
        log.log(
            request_id=f"{user}{day}",
            user_id=user,
            stage="rank",
            item_ids=["a", "b", "c"],
            features=_block(3, day),
            timestamp=T0 + day * DAY,
        )
    log.log(
        request_id="anon",
        user_id=None,
        stage="rank",
        item_ids=["a"],
        features=_block(1, 5),
        timestamp=T0,
    )
    log.flush()
    log.log(
        request_id="late",
        user_id="alice",
        stage="rank",
        item_ids=["z"],
        features=_block(1, 6),
        timestamp=T0,
    )  # still buffered
    names_before = {p.name for p in _files(tmp_path)}
    assert log.delete_user("alice") == 3 + 3 + 1
    log.flush()
    _, meta = read_feature_log(tmp_path)
    assert "alice" not in set(meta["user_id"].dropna())
    assert meta["request_id"].tolist() == ["bob0"] * 3 + ["anon", "carol2", "carol2", "carol2"]
    assert not (tmp_path / "date=2022-01-09").exists()  # alice's only partition is gone
    # Day 0's file was rewritten under its own name (no duplicate, no leftover temp file).
    assert {p.name for p in (tmp_path / "date=2022-01-08").iterdir()} <= names_before
    assert delete_user(tmp_path, "alice") == 0
    assert delete_user(tmp_path, "bob") == 3
    # A request that was still running when alice was deleted logs nothing for her afterwards.
    kept = log.log(
        request_id="in-flight",
        user_id="alice",
        stage="rank",
        item_ids=["y"],
        features=_block(1, 7),
        timestamp=T0,
        shown=[True],
    )
    assert kept == 0 and log.n_buffered == 0


def test_layouts_and_inputs_are_checked(tmp_path: Path) -> None:
    log = FeatureLogger(tmp_path, sample_rate=1.0)
    log.log(
        request_id="r", user_id="u", stage="retrieve", item_ids=["a"], features=None, timestamp=T0
    )
    log.log(
        request_id="r",
        user_id="u",
        stage="rank",
        item_ids=["a"],
        features=_block(1, 0),
        timestamp=T0,
    )
    log.flush()
    with pytest.raises(DataError, match="layout differs"):
        read_feature_log(tmp_path)
    assert len(read_feature_log(tmp_path, stage="rank")[0]) == 1
    assert read_feature_log(tmp_path, stage="retrieve")[0].dense.shape == (1, 0)
    with pytest.raises(ConfigError, match="rows"):
        log.log(
            request_id="r",
            user_id="u",
            stage="rank",
            item_ids=["a", "b"],
            features=_block(1, 0),
            timestamp=T0,
        )
    with pytest.raises(ConfigError, match="sample_rate"):
        FeatureLogger(tmp_path, sample_rate=2.0).log(
            request_id="r", user_id="u", stage="s", item_ids=[], features=None, timestamp=T0
        )
    empty_block, empty_meta = read_feature_log(tmp_path / "nothing")
    assert len(empty_block) == 0 and "logging_probability" in empty_meta.columns
