"""Ranker training rows from the funnel: candidates, labels, negatives, downsampling, logs.

A ranker must learn on candidates that look like those it will rank, labelled by interactions
the retrieval models did **not** train on (labels the generators were fitted on are already
"seen" and can never be candidates). So, within the training data:

1. :func:`holdout_labels` keeps, per user, a share of the interactions apart as labels (the
   last ones by time, or random ones); retrieval is fitted on the rest;
2. the funnel retrieves candidates for each user (the hard negatives are the candidates that
   are not labels) and :func:`sample_random_negatives` adds uniformly drawn unseen items;
3. :func:`label_rows` marks the candidates that are held-out interactions;
4. :func:`downsample_rows` keeps every positive and each negative with probability
   ``negative_keep_rate`` ``w``; a pointwise ranker's probabilities are then corrected with
   :func:`recfunnel.evaluation.calibration.correct_downsampled` (``q = p / (p + (1 - p) / w)``).

Rows are a :class:`RankerRows`: a frame with one row per (request, candidate), consecutive per
request, plus labels. :func:`log_rows` / :func:`rows_from_log` write them through the feature
log and read them back, so a ranker can be trained on exactly what serving logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.evaluation.calibration import downsample_negatives
from recfunnel.features.base import FeatureBlock
from recfunnel.pipeline.feature_log import FeatureLogger, read_feature_log

IntArray = npt.NDArray[np.int64]


def holdout_labels(
    interactions: InteractionMatrix,
    fraction: float,
    *,
    order: str = "random",
    seed: int = 0,
) -> tuple[InteractionMatrix, InteractionMatrix]:
    """Split each user's interactions into (retrieval part, label part).

    A user with ``n`` interactions gives ``floor(fraction * n)`` of them to the label part: the
    most recent ones (``order="last"``; ties by row order) or a seeded random choice
    (``order="random"``). Users with too few interactions keep all of them for retrieval.

    >>> m = InteractionMatrix.from_arrays(["a"] * 5 + ["b"], list("vwxyzv"),
    ...                                   timestamp=[5, 4, 3, 2, 1, 9])
    >>> fit, labels = holdout_labels(m, 0.4, order="last")
    >>> len(fit), sorted(labels.items.decode(labels.item).tolist())
    (4, ['v', 'w'])
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"label fraction must be in (0, 1), got {fraction}")
    n = len(interactions)
    if order == "last":
        ts = np.nan_to_num(interactions.timestamp, nan=-np.inf)
        key = -ts  # most recent first
    elif order == "random":
        key = np.random.default_rng(seed).random(n)
    else:
        raise ConfigError(f"label order must be 'random' or 'last', got {order!r}")
    rows = np.lexsort((np.arange(n), key, interactions.user))
    counts = np.bincount(interactions.user, minlength=interactions.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(n) - np.repeat(starts, counts)
    take = np.floor(fraction * counts).astype(np.int64)
    is_label = np.zeros(n, bool)
    is_label[rows] = pos < np.repeat(take, counts)
    return interactions.subset(~is_label), interactions.subset(is_label)


def sample_random_negatives(
    users: IntArray,
    n: int,
    n_items: int,
    exclude: sp.csr_matrix,
    rng: np.random.Generator,
) -> tuple[IntArray, IntArray]:
    """``n`` distinct uniformly drawn items per row of ``users``, none in ``exclude[user]``.

    Returns ``(row, item)`` pairs, ``row`` being the position in ``users``. A user with fewer
    than ``n`` allowed items gets them all.

    >>> ex = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]]))
    >>> r, i = sample_random_negatives(np.array([0, 1]), 3, 5, ex, np.random.default_rng(0))
    >>> r.tolist(), bool(set(i[r == 0].tolist()) <= {2, 3, 4}), len(set(i[r == 1].tolist()))
    ([0, 0, 0, 1, 1, 1], True, 3)
    """
    rows: list[IntArray] = []
    items: list[IntArray] = []
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    for r, u in enumerate(np.asarray(users, np.int64).tolist()):
        banned = exclude.indices[exclude.indptr[u] : exclude.indptr[u + 1]]
        allowed = n_items - len(np.unique(banned))
        want = min(n, allowed)
        got = np.zeros(0, np.int64)
        while len(got) < want:
            draw = rng.integers(0, n_items, size=2 * want + 8)
            draw = draw[~np.isin(draw, banned)]
            got = np.concatenate([got, draw])
            _, first = np.unique(got, return_index=True)
            got = got[np.sort(first)]
        rows.append(np.full(want, r, np.int64))
        items.append(got[:want].astype(np.int64))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(items)


def label_rows(
    user: npt.ArrayLike, item: npt.ArrayLike, labels: InteractionMatrix
) -> npt.NDArray[np.float64]:
    """1.0 where ``(user[j], item[j])`` is an interaction of ``labels``, else 0.0.

    >>> lab = InteractionMatrix.from_arrays(["a", "b"], ["x", "y"])
    >>> label_rows([0, 0, 1], [0, 1, 1], lab).tolist()
    [1.0, 0.0, 1.0]
    """
    u = np.asarray(user, np.int64)
    i = np.asarray(item, np.int64)
    n_items = labels.n_items
    keys = np.unique(labels.user.astype(np.int64) * n_items + labels.item)
    return np.isin(u * n_items + i, keys).astype(np.float64)


@dataclass(frozen=True)
class RankerRows:
    """Training rows: ``frame`` (one row per (request, candidate), the rows of a request
    consecutive, with a ``request`` column) and their ``labels``."""

    frame: pd.DataFrame
    labels: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        if len(self.frame) != len(self.labels):
            raise ConfigError(f"{len(self.frame)} rows but {len(self.labels)} labels")
        req = self.frame["request"].to_numpy()
        if len(req) > 1 and (np.diff(req) < 0).any():
            raise ConfigError("rows of a request must be consecutive, requests in order")

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def groups(self) -> IntArray:
        """Consecutive group sizes (rows per request), as LightGBM takes them."""
        return request_groups(self.frame["request"].to_numpy())

    def take(self, rows: npt.NDArray[np.bool_] | IntArray) -> RankerRows:
        """The rows where a boolean mask holds, or at the given positions (in that order;
        the rows of a request must stay consecutive)."""
        given = np.asarray(rows)
        idx: IntArray = (
            np.flatnonzero(given) if given.dtype == bool else given.astype(np.int64, copy=False)
        )
        return RankerRows(self.frame.iloc[idx].reset_index(drop=True), self.labels[idx])

    @classmethod
    def concat(cls, parts: list[RankerRows]) -> RankerRows:
        """Parts one after the other; their ``request`` numbers must not overlap."""
        if not parts:
            raise ConfigError("no rows to concatenate")
        return cls(
            pd.concat([p.frame for p in parts], ignore_index=True),
            np.concatenate([p.labels for p in parts]),
        )


def request_groups(request: npt.ArrayLike) -> IntArray:
    """Lengths of the runs of equal values (consecutive group sizes).

    >>> request_groups([3, 3, 5, 7, 7, 7]).tolist()
    [2, 1, 3]
    """
    r = np.asarray(request)
    if len(r) == 0:
        return np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    sizes: IntArray = np.diff(np.r_[starts, len(r)]).astype(np.int64)
    return sizes


def drop_groups_without_positive(rows: RankerRows) -> RankerRows:
    """Only the requests with at least one positive (a listwise loss learns nothing else)."""
    req = rows.frame["request"].to_numpy()
    has = pd.Series(rows.labels > 0).groupby(req).transform("any").to_numpy()
    return rows.take(has)


def downsample_rows(rows: RankerRows, negative_keep_rate: float, seed: int = 0) -> RankerRows:
    """Keep every positive and each negative with probability ``negative_keep_rate``."""
    if negative_keep_rate >= 1.0:
        return rows
    mask, _ = downsample_negatives(rows.labels, negative_keep_rate, np.random.default_rng(seed))
    return rows.take(mask)


def split_by_user(
    rows: RankerRows, valid_fraction: float, seed: int = 0
) -> tuple[RankerRows, RankerRows | None]:
    """(train rows, validation rows): a seeded share of users goes to validation whole."""
    if valid_fraction <= 0.0:
        return rows, None
    users = np.unique(rows.frame["user"].to_numpy())
    rng = np.random.default_rng(seed)
    n_valid = round(valid_fraction * len(users))
    if n_valid == 0 or n_valid >= len(users):
        return rows, None
    valid_users = rng.choice(users, size=n_valid, replace=False)
    in_valid = np.isin(rows.frame["user"].to_numpy(), valid_users)
    return rows.take(~in_valid), rows.take(in_valid)


# ---- feature logs -------------------------------------------------------------------------
def log_rows(
    logger: FeatureLogger,
    rows: RankerRows,
    features: FeatureBlock,
    *,
    stage: str,
    timestamp: float,
    model_versions: dict[str, str] | None = None,
) -> int:
    """Log the rows' features, one call per request (``request_id`` = the frame's
    ``request_id`` column, else ``request``); returns the rows kept by the logger."""
    if len(features) != len(rows):
        raise ConfigError(f"{len(features)} feature rows for {len(rows)} rows")
    frame = rows.frame
    rid = (
        frame["request_id"].astype(str).to_numpy()
        if "request_id" in frame.columns
        else frame["request"].astype(str).to_numpy()
    )
    uid = frame["user_id"].astype(str).to_numpy()
    iid = frame["item_id"].astype(str).to_numpy()
    kept = 0
    start = 0
    for size in rows.groups.tolist():
        sl = slice(start, start + size)
        block = FeatureBlock(
            features.dense[sl],
            features.sparse[sl],
            features.dense_names,
            features.sparse_names,
            features.n_buckets,
        )
        kept += logger.log(
            request_id=str(rid[start]),
            user_id=str(uid[start]),
            stage=stage,
            item_ids=list(iid[sl]),
            features=block,
            timestamp=timestamp,
            model_versions=model_versions,
        )
        start += size
    return kept


def rows_from_log(
    root: str | os.PathLike[str],
    labels: pd.DataFrame,
    *,
    stage: str | None = None,
) -> tuple[FeatureBlock, npt.NDArray[np.float64], IntArray, pd.DataFrame]:
    """Logged features joined with ``labels`` (columns ``request_id``, ``item_id``, ``label``).

    Returns the features, the labels, the consecutive group sizes and the logged metadata
    frame, row for row in log order. Rows of a request are grouped only while they are
    consecutive in the log, as :func:`log_rows` writes them. A logged row without a label is
    an error (say which outcome it had, even 0).
    """
    block, meta = read_feature_log(root, stage=stage)
    need = {"request_id", "item_id", "label"}
    if not need <= set(labels.columns):
        raise ConfigError(f"labels need columns {sorted(need)}; got {list(labels.columns)}")
    key = labels.assign(
        request_id=labels["request_id"].astype(str), item_id=labels["item_id"].astype(str)
    ).drop_duplicates(["request_id", "item_id"])
    joined = meta[["request_id", "item_id"]].merge(
        key[["request_id", "item_id", "label"]], how="left", on=["request_id", "item_id"]
    )
    if joined["label"].isna().any():
        first = joined[joined["label"].isna()].iloc[0]
        raise DataError(
            f"logged row ({first['request_id']!r}, {first['item_id']!r}) has no label",
            source=str(root),
        )
    y = joined["label"].to_numpy(np.float64)
    return block, y, request_groups(meta["request_id"].to_numpy()), meta


def frame_summary(rows: RankerRows) -> dict[str, Any]:
    """Counts worth printing: rows, requests, positives, positives per request."""
    groups = rows.groups
    pos = float(rows.labels.sum())
    return {
        "rows": len(rows),
        "requests": len(groups),
        "positives": int(pos),
        "positive_rate": pos / max(len(rows), 1),
        "rows_per_request": float(groups.mean()) if len(groups) else 0.0,
    }


__all__ = [
    "RankerRows",
    "downsample_rows",
    "drop_groups_without_positive",
    "frame_summary",
    "holdout_labels",
    "label_rows",
    "log_rows",
    "request_groups",
    "rows_from_log",
    "sample_random_negatives",
    "split_by_user",
]
