"""The numba kernel behind :func:`recfunnel.candidates._gram.item_gram`: the upper triangle of
the item-item Gram matrix XᵀX of a sparse user-item matrix, written straight into a dense array.

Why by hand: scipy's sparse-sparse product (``X.T @ X``) builds a sparse result with a
per-row accumulator and then ``toarray()`` copies it out; for ml-1m (805k events, 3,706 items,
a nearly dense 13.7M-entry result) that is 0.7 s, three quarters of EASE's fit. Dense BLAS
would spend 2·users·items² flops on mostly zeros. Here output row ``a`` is accumulated in
cache: for every user u who has item a, add x_ua · x_ub to G[a, b] for the user's items b ≥ a
(Σ_u deg(u)² / 2 multiply-adds in all): 0.08 s on ml-1m on 2 threads, rows dealt
round-robin so that both threads get as much work (0.16 s on one).

Module-level and ``cache=True`` so that numba compiles it once per machine, not per process.
"""

# mypy: ignore-errors
from __future__ import annotations

import numba
import numpy as np

from recfunnel.core.concurrency import PARALLEL_KERNEL_LOCK

# Importing the evaluator's kernel module also sets numba's threading layer (workqueue, see
# recfunnel.core.concurrency); its sorted-index search is the one used here.
from recfunnel.evaluation._topk_numba import find

#: Rows are dealt to the threads round-robin in this many interleaved strides: row a does
#: work for the items after a only, so contiguous halves would leave one thread idle.
STRIDES = 64


@numba.njit(parallel=True, cache=True, nogil=True)
def upper_gram(u_ptr, u_idx, u_val, i_ptr, i_usr, i_val, out):  # type: ignore[no-untyped-def]
    """``out[a, b] += Σ_u x_ua x_ub`` for b ≥ a. CSR (``u_*``, sorted columns) and CSC
    (``i_*``) of the same matrix; ``out`` is C-ordered and zero on entry. Each row is written
    by one thread only."""
    n = out.shape[0]
    for stride in numba.prange(STRIDES):
        for a in range(stride, n, STRIDES):
            row = out[a]
            for t in range(i_ptr[a], i_ptr[a + 1]):
                u = i_usr[t]
                va = i_val[t]
                # Start at item a in the user's sorted list (u has a): only b >= a.
                for s in range(find(u_idx, u_ptr[u], u_ptr[u + 1], a), u_ptr[u + 1]):
                    row[u_idx[s]] += va * u_val[s]
    return out


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels, for the float32 inputs they get."""
    ptr = np.array([0, 1], np.int64)
    idx = np.array([0], np.int32)
    val = np.ones(1, np.float32)
    with PARALLEL_KERNEL_LOCK:
        upper_gram(ptr, idx, val, ptr, idx, val, np.zeros((1, 1), np.float32))
    kth_largest_positive(np.ones((1, 2), np.float32), 1)


@numba.njit(cache=True, nogil=True)
def kth_largest_positive(a, k):  # type: ignore[no-untyped-def]
    """Per row of ``a``, its ``k``-th largest value when the row has more than ``k`` positive
    entries, else 0: ItemKNN's neighbour threshold. Partitions only the positive entries of
    each row (a fraction of the catalogue), where ``np.partition`` over whole rows costs the
    full width."""
    b, n = a.shape
    out = np.zeros(b, dtype=a.dtype)
    buf = np.empty(n, dtype=a.dtype)
    for r in range(b):
        m = 0
        for c in range(n):
            v = a[r, c]
            if v > 0:
                buf[m] = v
                m += 1
        if m > k:
            out[r] = np.partition(buf[:m], m - k)[m - k]
    return out
