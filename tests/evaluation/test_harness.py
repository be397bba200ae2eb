from __future__ import annotations

import numpy as np
import pytest

from recfunnel.candidates import ItemKNN, Popularity
from recfunnel.core.errors import ConfigError
from recfunnel.core.ids import IdIndex
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.data.splits import random_split
from recfunnel.evaluation.harness import evaluate
from recfunnel.evaluation.metrics import ranking_metrics


def _parts():
    users = IdIndex(["a", "b", "c"], kind="user")
    items = IdIndex(["x", "y", "z", "w"], kind="item")

    def m(u, i):
        return InteractionMatrix.from_arrays(u, i, users=users, items=items)

    return m(["a", "b"], ["x", "x"]), m(["a"], ["y"]), m(["a", "a", "b"], ["z", "x", "w"])


def test_masks_train_and_exclude_and_skips_users_without_targets() -> None:
    train, valid, test = _parts()
    # Scores prefer x > y > z > w for everyone.
    scores = lambda u: np.tile(np.array([[4.0, 3.0, 2.0, 1.0]], np.float32), (len(u), 1))  # noqa: E731
    res = evaluate(
        scores, test=test, train=train, exclude=[valid], ks=[1, 2], metrics=["hit", "recall"]
    )
    assert res.users.tolist() == [0, 1]  # c has no test item
    # a: x (train) and y (valid) masked, so z comes first; the test x can never be hit.
    assert res.per_user["hit@1"].tolist() == [1.0, 0.0]
    # b: x masked; y, z come first; w at rank 3.
    assert res.per_user["recall@2"].tolist() == [0.5, 0.0]
    assert res.coverage["coverage@1"] == pytest.approx(2 / 4)


def test_batches_do_not_change_values() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    data = InteractionMatrix.from_arrays(
        [f"u{x}" for x in rng.integers(0, 150, n)], [f"i{x}" for x in rng.integers(0, 90, n)]
    )
    split = random_split(data, (0.8, 0.1, 0.1), seed=1)
    model = ItemKNN(k=20).fit(split.train)
    a = evaluate(model, test=split.test, train=split.train, exclude=[split.valid], batch_size=7)
    b = evaluate(model, test=split.test, train=split.train, exclude=[split.valid])
    for key in a.per_user:
        np.testing.assert_array_equal(a.per_user[key], b.per_user[key])
    assert a.coverage == b.coverage


def test_curves_agree_with_direct_metrics() -> None:
    rng = np.random.default_rng(1)
    n = 1500
    data = InteractionMatrix.from_arrays(
        [f"u{x}" for x in rng.integers(0, 100, n)], [f"i{x}" for x in rng.integers(0, 60, n)]
    )
    split = random_split(data, (0.8, 0.2), seed=2)
    res = evaluate(Popularity().fit(split.train), test=split.test, train=split.train,
                   ks=[5], metrics=["ndcg"], curves_to=6)  # fmt: skip
    assert res.curves["ndcg"][4] == pytest.approx(res.mean()["ndcg@5"], abs=1e-12)
    assert len(res.curves["recall"]) == 6
    assert np.all(np.diff(res.curves["recall"]) >= 0)


def test_bad_inputs() -> None:
    _, _, test = _parts()
    with pytest.raises(ConfigError, match="positive"):
        evaluate(lambda u: np.zeros((len(u), 4), np.float32), test=test, ks=[0])
    with pytest.raises(ConfigError, match="shape"):
        evaluate(lambda u: np.zeros((len(u), 3), np.float32), test=test)
    with pytest.raises(ConfigError, match="NaN"):
        evaluate(lambda u: np.full((len(u), 4), np.nan, np.float32), test=test)
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate(lambda u: np.zeros((len(u), 4), np.float32), test=test, metrics=["ndgc"])
    other = InteractionMatrix.from_arrays(["a"], ["x"])
    with pytest.raises(ConfigError, match="same user and item indexes"):
        evaluate(lambda u: np.zeros((len(u), 4), np.float32), test=test, train=other)
    with pytest.raises(ConfigError, match="at least one relevant"):
        ranking_metrics([[1, 0]], [0], ["ndcg@2"])


def test_confidence_intervals_cover_the_mean() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    data = InteractionMatrix.from_arrays(
        [f"u{x}" for x in rng.integers(0, 300, n)], [f"i{x}" for x in rng.integers(0, 80, n)]
    )
    split = random_split(data, (0.8, 0.2), seed=2)
    res = evaluate(Popularity().fit(split.train), test=split.test, train=split.train, ks=[10])
    for key, (lo, hi) in res.ci95(seed=1).items():
        assert lo <= res.mean()[key] <= hi
        # Same seed, same interval.
        assert res.ci95(seed=1)[key] == (lo, hi)
