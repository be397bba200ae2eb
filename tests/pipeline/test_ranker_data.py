"""Ranker training rows: hold-out labels, negatives, downsampling, and logs vs memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recfunnel.core.matrix import InteractionMatrix
from recfunnel.pipeline.ranker_data import (
    RankerRows,
    downsample_rows,
    drop_groups_without_positive,
    holdout_labels,
    label_rows,
    log_rows,
    request_groups,
    rows_from_log,
    sample_random_negatives,
    split_by_user,
)


def _matrix(seed: int = 0, n_users: int = 30, n_items: int = 40) -> InteractionMatrix:
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        k = int(rng.integers(3, 15))
        users += [f"u{u}"] * k
        items += [f"i{i}" for i in rng.choice(n_items, size=k, replace=False)]
        ts += rng.permutation(k).astype(float).tolist()
    return InteractionMatrix.from_arrays(users, items, timestamp=ts)


def _pairs(m: InteractionMatrix) -> set[tuple[int, int]]:
    return set(zip(m.user.tolist(), m.item.tolist(), strict=True))


@pytest.mark.parametrize("order", ["last", "random"])
def test_holdout_takes_floor_fraction_per_user(order: str) -> None:
    m = _matrix()
    fit, labels = holdout_labels(m, 0.25, order=order, seed=3)
    assert _pairs(fit) | _pairs(labels) == _pairs(m) and not _pairs(fit) & _pairs(labels)
    counts = m.user_counts()
    assert labels.user_counts().tolist() == np.floor(0.25 * counts).astype(int).tolist()
    if order == "last":
        # Every held-out interaction is later than every kept one of the same user.
        for u in range(m.n_users):
            kept, held = fit.timestamp[fit.user == u], labels.timestamp[labels.user == u]
            if len(held):
                assert held.min() > kept.max()
    again = holdout_labels(m, 0.25, order=order, seed=3)[1]
    assert _pairs(again) == _pairs(labels)  # deterministic


def test_random_negatives_avoid_excluded_items() -> None:
    ex = sp.csr_matrix(np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 0]]))
    rows, items = sample_random_negatives(np.array([0, 1, 2]), 3, 6, ex, np.random.default_rng(0))
    by_row = {r: items[rows == r].tolist() for r in range(3)}
    assert sorted(by_row[0]) == [3, 4, 5]  # exactly the allowed ones
    assert len(set(by_row[1])) == 3 and 5 not in by_row[1]
    assert by_row[2] == [5]  # only one allowed item


def test_labels_downsampling_and_groups() -> None:
    labels = InteractionMatrix.from_arrays(["a", "b"], ["x", "y"])
    assert label_rows([0, 0, 1, 1], [0, 1, 0, 1], labels).tolist() == [1.0, 0.0, 0.0, 1.0]
    n = 4000
    frame = pd.DataFrame({"request": np.repeat(np.arange(n // 10), 10), "user": 0})
    y = (np.arange(n) % 10 == 0).astype(float)
    rows = RankerRows(frame, y)
    kept = downsample_rows(rows, 0.25, seed=1)
    assert kept.labels.sum() == y.sum()  # every positive stays
    negatives = int((kept.labels == 0).sum())
    assert abs(negatives / (n - y.sum()) - 0.25) < 0.03
    assert request_groups(kept.frame["request"]).sum() == len(kept)
    assert downsample_rows(rows, 1.0) is rows


def test_groups_without_positive_are_dropped_and_users_split_whole() -> None:
    frame = pd.DataFrame({"request": [0, 0, 1, 1, 2], "user": [5, 5, 6, 6, 7]})
    rows = RankerRows(frame, np.array([0.0, 1.0, 0.0, 0.0, 1.0]))
    kept = drop_groups_without_positive(rows)
    assert kept.frame["request"].tolist() == [0, 0, 2] and kept.groups.tolist() == [2, 1]
    train, valid = split_by_user(rows, 0.34, seed=0)
    assert valid is not None
    assert not set(train.frame["user"]) & set(valid.frame["user"])
    assert len(train) + len(valid) == len(rows)
    with pytest.raises(ValueError, match="consecutive"):
        RankerRows(pd.DataFrame({"request": [1, 0]}), np.zeros(2))


def test_ranker_from_feature_log_scores_like_one_trained_in_memory(tmp_path: Path) -> None:
    """Training rows built by the funnel, logged and read back, train the same ranker."""
    from recfunnel.pipeline.feature_log import FeatureLogger
    from recfunnel.pipeline.funnel import Funnel
    from recfunnel.pipeline.funnel_config import FunnelConfig
    from recfunnel.ranking import make_ranker

    m = _matrix(seed=1, n_users=60, n_items=50)
    cfg = FunnelConfig.from_dict(
        {
            "retrieval": {
                "generators": [
                    {"model": "itemknn", "quota": 15, "params": {"k": 20}},
                    {"model": "pop", "quota": 10},
                ]
            },
            "light": {"model": "lightgbm", "keep": 10},
            "training": {"random_negatives": 3, "negative_keep_rate": 0.7},
        }
    )
    funnel = Funnel(cfg)
    rows = funnel.fit_candidates(m)
    assert funnel.features_ is not None
    block = funnel.features_.transform(rows.frame)
    assert rows.frame["source"].isin(["itemknn", "pop", "random"]).all()

    params = {"objective": "lambdarank", "n_estimators": 30, "min_child_samples": 5}
    memory = make_ranker("lightgbm", **params).fit(
        block.to_ranker_features(), rows.labels, groups=rows.groups
    )
    with FeatureLogger(tmp_path, sample_rate=1.0) as logger:
        written = log_rows(logger, rows, block, stage="light", timestamp=funnel.now_)
    assert written == len(rows)
    outcomes = pd.DataFrame(
        {
            "request_id": rows.frame["request"].astype(str),
            "item_id": rows.frame["item_id"],
            "label": rows.labels,
        }
    )
    logged, y, groups, _meta = rows_from_log(tmp_path, outcomes, stage="light")
    assert np.array_equal(y, rows.labels) and np.array_equal(groups, rows.groups)
    from_log = make_ranker("lightgbm", **params).fit(logged.to_ranker_features(), y, groups=groups)
    probe = block.to_ranker_features()
    np.testing.assert_array_equal(from_log.predict(probe), memory.predict(probe))
    assert from_log.booster_.model_to_string() == memory.booster_.model_to_string()
