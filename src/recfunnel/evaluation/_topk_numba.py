"""The numba kernel behind :func:`recfunnel.evaluation._kernels.masked_topk`.

Kept in its own module, at module level, so that ``cache=True`` works: numba caches a
function by its module and qualified name, and a function built inside another function is
compiled again in every process. Importing this module imports numba (about a second), so
``_kernels`` imports it only when a kernel is first needed.
"""

# mypy: ignore-errors
from __future__ import annotations

import os

import numba
import numpy as np

from recfunnel.core.concurrency import NUMBA_THREADING_LAYER

# The workqueue threading layer, not OpenMP (see recfunnel.core.concurrency); launches hold
# PARALLEL_KERNEL_LOCK (in ``_kernels``). An explicit NUMBA_THREADING_LAYER from the user wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = NUMBA_THREADING_LAYER


@numba.njit(inline="always")
def find(indices, lo, hi, j):  # type: ignore[no-untyped-def]
    """Position of ``j`` in the sorted ``indices[lo:hi]``, or -1."""
    a, z = lo, hi
    while a < z:
        mid = (a + z) >> 1
        if indices[mid] < j:
            a = mid + 1
        else:
            z = mid
    return a if a < hi and indices[a] == j else -1


# `identity` is a run-time flag: a branch the CPU predicts perfectly, and one compiled
# function that numba can cache on disk (a closure would be recompiled in every process).
@numba.njit(parallel=True, cache=True, nogil=True)
def kernel(scores, users, order, rank_of, m_ptr, m_idx, t_ptr, t_idx, t_val, k, identity):  # type: ignore[no-untyped-def]
    b, n = scores.shape
    out = np.full((b, k), -1, dtype=np.int64)
    rel = np.zeros((b, k), dtype=np.float64)
    top_val = np.empty((b, k), dtype=np.float64)
    nan_rows = np.zeros(b, dtype=np.bool_)
    for r in numba.prange(b):
        u = users[r]
        row = scores[r]
        tv = top_val[r]
        ti = out[r]
        filled = 0
        thresh = -np.inf
        lo = m_ptr[u]
        hi = m_ptr[u + 1]
        # Masked columns as sorted visiting positions (only needed for a custom order).
        masked = np.empty(0 if identity else hi - lo, dtype=np.int64)
        if not identity:
            for t in range(hi - lo):
                masked[t] = rank_of[m_idx[lo + t]]
            masked.sort()
        for pos in range(n):
            j = pos if identity else order[pos]
            v = row[j]
            # The common case first: not better than the current k-th (or -inf).
            if v <= thresh:
                continue
            if v != v:
                nan_rows[r] = True
                continue
            if identity:
                if hi > lo and find(m_idx, lo, hi, j) >= 0:
                    continue
            elif len(masked) > 0 and find(masked, 0, len(masked), pos) >= 0:
                continue
            # Insert keeping descending order; equal values stay ahead (visited first).
            p = filled if filled < k else k - 1
            while p > 0 and tv[p - 1] < v:
                if p < k:
                    tv[p] = tv[p - 1]
                    ti[p] = ti[p - 1]
                p -= 1
            tv[p] = v
            ti[p] = j
            if filled < k:
                filled += 1
            if filled == k:
                thresh = tv[k - 1]
        for t in range(filled):
            at = find(t_idx, t_ptr[u], t_ptr[u + 1], ti[t])
            if at >= 0:
                rel[r, t] = t_val[at]
    return out, rel, nan_rows
