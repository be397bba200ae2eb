"""Two-hop scoring over sparse rows, shared by the friends-of-friends heuristics and
co-engagement.

For a batch of users with friendship rows ``R = graph.rows(users)`` (``B x n``, the online
overlay applied) and ``F`` the distinct friends of the batch, the friends-of-friends scores are

    S = R[:, F] · diag(w_F) · graph.rows(F)          (B x n, sparse)

where ``w_f`` weights a path through friend ``f`` (1 for mutual-friend counts, ``1/log deg f``
for Adamic–Adar). Only the rows of the batch and of its friends are read, so a request costs
``O(sum of the friends' degrees)``, not ``O(graph)``; ``graph.adjacency()`` is never touched.

**Hubs.** One friend with 50 000 friends would make a query cost 50 000 entries for little
information. Every row is therefore cut to at most ``max_neighbors`` entries *before* it is
expanded: the query user's own friend list and each friend's list alike, so a query costs at
most ``max_neighbors²`` entries. The cut is a deterministic, evenly spaced sample of the sorted
row (positions ``⌊j·len/max_neighbors⌋``), so the same graph always gives the same answer and
the sample is spread over the whole list rather than biased to its low row numbers. Counts
through a cut row are lower bounds of the true counts; with ``max_neighbors`` at least the
largest degree everything is exact. Degrees used in weights and normalisations are the true
ones.

>>> indptr = np.array([0, 5, 7]); indices = np.arange(7)
>>> sample_rows(indptr, indices, np.ones(7), 2)[1].tolist()   # row 0 sampled, row 1 kept
[0, 2, 5, 6]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError
from recfunnel.core.friends import Candidates
from recfunnel.core.graph import SocialGraph

Weight = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float64]]


def check_positive_int(owner: str, name: str, value: object) -> int:
    """Parameter ``name`` of ``owner`` as a positive int, or a ``ConfigError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{owner}.{name} must be a positive integer, got {value!r}")
    return int(value)


def sample_rows(
    indptr: npt.NDArray[np.integer],
    indices: npt.NDArray[np.integer],
    data: npt.NDArray[np.floating],
    max_len: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """CSR arrays with every row cut to at most ``max_len`` entries, keeping the evenly
    spaced positions ``⌊j·len/max_len⌋`` of longer rows (deterministic)."""
    ptr = np.asarray(indptr, dtype=np.int64)
    lengths = np.diff(ptr)
    if not len(lengths) or lengths.max() <= max_len:
        return ptr, np.asarray(indices, np.int64), np.asarray(data, np.float64)
    keep = np.minimum(lengths, max_len)
    out_indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(keep, out=out_indptr[1:])
    row = np.repeat(np.arange(len(lengths)), keep)
    j = np.arange(out_indptr[-1]) - out_indptr[row]
    pos = ptr[row] + (j * lengths[row]) // keep[row]
    return out_indptr, np.asarray(indices, np.int64)[pos], np.asarray(data, np.float64)[pos]


def expand(
    first_indptr: npt.NDArray[np.int64],
    first_cols: npt.NDArray[np.int64],
    first_weights: npt.NDArray[np.float64],
    second_indptr: npt.NDArray[np.int64],
    second_indices: npt.NDArray[np.int64],
) -> Candidates:
    """The sparse product ``first · second`` of two CSR matrices given as arrays (``first``'s
    columns are rows of ``second``; ``second``'s values are all one), as scored candidates.

    Summing is done by sorting ``row · n + col`` keys, so the cost is ``O(E log E)`` in the
    ``E`` expanded entries and never ``O(number of columns)`` (scipy's product allocates two
    arrays of the full width per call: 8 MB at a million users).
    """
    n_rows = len(first_indptr) - 1
    lengths = np.diff(second_indptr)[first_cols]
    total = int(lengths.sum())
    if total == 0:
        return Candidates(
            np.zeros(n_rows + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        )
    entry = np.repeat(np.arange(len(first_cols)), lengths)
    start = np.repeat(second_indptr[first_cols] - np.cumsum(lengths) + lengths, lengths)
    cols = second_indices[start + np.arange(total)]
    rows = np.repeat(np.arange(n_rows), np.diff(first_indptr))[entry]
    width = np.int64(int(cols.max()) + 1)
    keys, inverse = np.unique(rows * width + cols, return_inverse=True)
    score = np.bincount(inverse, weights=first_weights[entry], minlength=len(keys))
    out_rows = keys // width
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(out_rows, minlength=n_rows), out=indptr[1:])
    return Candidates(indptr, keys % width, score.astype(np.float32))


@dataclass(frozen=True)
class TwoHop:
    """Friends-of-friends of a batch: ``paths`` holds, per user row, the candidates and their
    weighted number of two-hop paths (Candidates layout), plus the degrees normalisations
    need."""

    paths: Candidates
    #: True degree of each query user (``B``).
    user_degree: npt.NDArray[np.int64]


def friends_of_friends(
    graph: SocialGraph,
    users: npt.NDArray[np.int64],
    max_neighbors: int,
    weight: Weight | None = None,
) -> TwoHop:
    """Two-hop paths from each of ``users`` through their friends, each path through friend
    ``f`` counting ``weight(deg f)`` (1 when ``weight`` is None); rows cut to
    ``max_neighbors`` (module docstring). The user themself and their friends may appear among
    the candidates (the caller's base class removes them).

    >>> import pandas as pd
    >>> e = pd.DataFrame({"src_user_id": list("abbc"), "dst_user_id": list("bcda")})
    >>> g = SocialGraph.from_edges(e, mutual=False)        # a-b, b-c, b-d, c-a
    >>> hop = friends_of_friends(g, g.encode(["a"]), max_neighbors=10)
    >>> dict(zip(g.decode(hop.paths.index).tolist(), hop.paths.score.tolist()))
    {'a': 2.0, 'b': 1.0, 'c': 1.0, 'd': 1.0}
    """
    first = graph.rows(users)
    user_degree = np.diff(first.indptr).astype(np.int64)
    f_indptr, f_idx, _ = sample_rows(first.indptr, first.indices, first.data, max_neighbors)
    friends, f_cols = np.unique(f_idx, return_inverse=True)
    if not len(friends):
        empty = Candidates(
            np.zeros(len(users) + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        )
        return TwoHop(empty, user_degree)
    second = graph.rows(friends)
    friend_degree = np.diff(second.indptr).astype(np.int64)
    s_indptr, s_idx, _ = sample_rows(second.indptr, second.indices, second.data, max_neighbors)
    w = np.ones(len(friends)) if weight is None else weight(friend_degree)
    paths = expand(f_indptr, f_cols.astype(np.int64), w[f_cols], s_indptr, s_idx)
    return TwoHop(paths, user_degree)


def top_per_row(cand: Candidates, n: int) -> Candidates:
    """The ``n`` best-scored entries of each row (ties: lower user row first), rows sorted
    best first."""
    rows = np.repeat(np.arange(len(cand)), np.diff(cand.indptr))
    order = np.lexsort((cand.index, -cand.score, rows))
    rows = rows[order]
    rank = np.arange(len(order)) - cand.indptr[rows]
    keep = order[rank < n]
    indptr = np.zeros(len(cand) + 1, dtype=np.int64)
    np.cumsum(np.minimum(np.diff(cand.indptr), n), out=indptr[1:])
    return Candidates(indptr, cand.index[keep], cand.score[keep])
