"""Deterministic top-k over score matrices.

Ties change metrics silently, so every ranking in recfunnel goes through :func:`topk`, which
orders by score descending and breaks ties by a fixed item priority: by default the lower item
index first. ``-inf`` marks excluded items; they are never returned.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def topk(
    scores: npt.NDArray[np.floating],
    k: int,
    *,
    tie_priority: npt.NDArray[np.integer] | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]:
    """Indices and scores of the ``k`` best columns of each row of ``scores`` (B x I).

    Among equal scores the column that comes first in ``tie_priority`` (a permutation of
    ``range(I)``; default: identity, i.e. lower index first) wins. Rows with fewer than ``k``
    finite scores are padded with index ``-1`` and score ``-inf``.

    >>> s = np.array([[0.5, 0.9, 0.5, -np.inf], [1.0, 1.0, 1.0, 1.0]])
    >>> topk(s, 3)[0].tolist()
    [[1, 0, 2], [0, 1, 2]]
    >>> topk(s, 3, tie_priority=np.array([3, 2, 1, 0]))[0].tolist()
    [[1, 2, 0], [3, 2, 1]]
    >>> topk(s[:1], 4)[0].tolist()
    [[1, 0, 2, -1]]
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (batch x items), got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN; a model produced invalid scores")
    if tie_priority is not None:
        perm = np.asarray(tie_priority, dtype=np.int64)
        idx, val = topk(scores[:, perm], k)
        return np.where(idx >= 0, perm[np.maximum(idx, 0)], -1), val
    b, n = scores.shape
    kk = min(k, n)
    if kk == n:
        order = np.argsort(-scores, axis=1, kind="stable")
    else:
        # Exact selection with index tie-breaking: everything strictly above the k-th value,
        # then the lowest-index columns equal to it, then a stable sort of the k selected.
        kth = np.partition(scores, n - kk, axis=1)[:, n - kk]
        above = scores > kth[:, None]
        at = scores == kth[:, None]
        need = kk - above.sum(axis=1)
        chosen = above | (at & (np.cumsum(at, axis=1) <= need[:, None]))
        cols = np.nonzero(chosen)[1].reshape(b, kk)
        sub = np.take_along_axis(scores, cols, axis=1)
        order = np.take_along_axis(cols, np.argsort(-sub, axis=1, kind="stable"), axis=1)
    idx = order[:, :kk].astype(np.int64)
    val = np.take_along_axis(scores, idx, axis=1)
    if kk < k:
        idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
        val = np.pad(val, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    invalid = np.isneginf(val)
    idx[invalid] = -1
    return idx, val
