"""Categorical, multi-valued and crossed features: ids equal the hash definition."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recfunnel.core.errors import ConfigError, NotFittedError
from recfunnel.features.categorical import FeatureCross, HashedCategorical, MultiValued
from recfunnel.features.hashing import MISSING_ID, N_RESERVED, OOV_ID, stable_hash64


def _bucket(value: str, seed: str, n: int, which: int = 0) -> int:
    h = int(stable_hash64([value], seed)[0])
    return N_RESERVED + ((h >> 32) if which else h) % n


def test_hashed_categorical_ids_and_double_hashing() -> None:
    frame = pd.DataFrame({"item_id": ["i1", "i2", None, "i1"]})
    step = HashedCategorical("item_id", n_buckets=1000, n_hashes=2).fit(frame)
    block = step.transform(pd.DataFrame({"item_id": ["i1", "unseen", None]}))
    assert block.sparse_names == ("item_id#0", "item_id#1")
    assert block.n_buckets == (1002, 1002)
    assert block.sparse[0].tolist() == [
        _bucket("i1", "item_id", 1000, 0),
        _bucket("i1", "item_id", 1000, 1),
    ]
    assert block.sparse[1, 0] == _bucket("unseen", "item_id", 1000)
    assert block.sparse[2].tolist() == [MISSING_ID, MISSING_ID]


def test_rare_values_go_to_the_oov_bucket() -> None:
    frame = pd.DataFrame({"city": ["a"] * 3 + ["b"] * 2 + ["c"]})
    step = HashedCategorical("city", n_buckets=50, min_count=2, seed=9).fit(frame)
    ids = step.transform(pd.DataFrame({"city": ["a", "b", "c", "d"]})).sparse[:, 0]
    assert ids.tolist() == [_bucket("a", "9", 50), _bucket("b", "9", 50), OOV_ID, OOV_ID]


def test_multi_valued_ids_and_mean_pooling() -> None:
    frame = pd.DataFrame({"genres": ["Drama|Noir|Drama", "Noir", "", None, ("Comedy", "Noir")]})
    step = MultiValued("genres", n_buckets=500, max_values=2).fit(frame)
    block = step.transform(frame)
    d, nr, c = (_bucket(g, "genres", 500) for g in ("Drama", "Noir", "Comedy"))
    assert block.sparse.tolist() == [[d, nr], [nr, 0], [0, 0], [0, 0], [c, nr]]
    assert block.sparse_names == ("genres[0]", "genres[1]")
    mean = MultiValued("genres", n_buckets=500, mode="mean").fit(frame).transform(frame)
    assert mean.dense.shape == (5, 502)
    assert mean.dense[0, [d, nr]].tolist() == [0.5, 0.5]
    np.testing.assert_allclose(mean.dense.sum(axis=1), [1, 1, 0, 0, 1])


def test_multi_valued_frequency_threshold_counts_rows() -> None:
    frame = pd.DataFrame({"tags": ["x|y", "x", "x|z"]})
    step = MultiValued("tags", n_buckets=64, min_count=2).fit(frame)
    assert step.transform(frame).sparse[:, :2].tolist() == [
        [_bucket("x", "tags", 64), OOV_ID],
        [_bucket("x", "tags", 64), 0],
        [_bucket("x", "tags", 64), OOV_ID],
    ]


def test_cross_of_age_group_and_genre() -> None:
    frame = pd.DataFrame(
        {"age": [17, 34, 35, np.nan], "genres": ["Drama", "Drama|Noir", "Noir", "Drama"]}
    )
    cross = FeatureCross(
        ["age", "genres"],
        n_buckets=10_000,
        bins={"age": [18, 35]},
        multi_columns=["genres"],
        max_values=2,
    ).fit(frame)
    block = cross.transform(frame)
    seed = "age×genres"

    def b(age: str, genre: str) -> int:
        return _bucket(f"{age}\x1e{genre}", seed, 10_000)

    assert block.sparse.tolist() == [
        [b("0", "Drama"), 0],
        [b("1", "Drama"), b("1", "Noir")],
        [b("2", "Noir"), 0],
        [b("\x00missing", "Drama"), 0],
    ]
    assert block.n_buckets == (10_002, 10_002)


def test_scalar_cross_is_one_column_and_order_matters() -> None:
    frame = pd.DataFrame({"country": ["fr", "de"], "device": ["ios", "web"]})
    ab = FeatureCross(["country", "device"], n_buckets=97, seed="s").fit(frame).transform(frame)
    ba = FeatureCross(["device", "country"], n_buckets=97, seed="s").fit(frame).transform(frame)
    assert ab.sparse_names == ("country×device",)
    assert ab.sparse[:, 0].tolist() == [
        _bucket("fr\x1eios", "s", 97),
        _bucket("de\x1eweb", "s", 97),
    ]
    assert ba.sparse[0, 0] == _bucket("ios\x1efr", "s", 97)


def test_errors() -> None:
    frame = pd.DataFrame({"a": [1], "b": [2]})
    with pytest.raises(ConfigError):
        FeatureCross(["a"]).fit(frame)
    with pytest.raises(ConfigError):
        FeatureCross(["a", "b"], multi_columns=["c"]).fit(frame)
    with pytest.raises(ConfigError):
        MultiValued("a", n_buckets=10**6, mode="mean").fit(frame)
    with pytest.raises(NotFittedError):
        HashedCategorical("a").transform(frame)
