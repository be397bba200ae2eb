"""Personalised PageRank from the query user, by local push.

Andersen, Chung & Lang 2006, "Local graph partitioning using PageRank vectors" (FOCS):
personalised PageRank ``π_s`` (restart probability ``α`` to the source ``s``) is approximated
by keeping an estimate ``p`` and a residual ``r`` (``r = e_s`` at first) and *pushing* any node
whose residual is large for its degree, ``r(u) >= ε·deg(u)``:

    p(u) += α·r(u);   r(v) += (1 - α)·r(u) / deg(u) for each friend v;   r(u) = 0.

The invariant ``π_s = p + Σ_u r(u)·π_u`` holds throughout. We push the non-lazy walk, i.e.
standard PageRank with damping ``1 - α`` (``networkx.pagerank(alpha=1 - α,
personalization={s: 1})``), rather than the paper's lazy walk (lazy PPR with ``α'`` equals
this one with ``α = 2α'/(1 + α')``). All nodes above the threshold are pushed at once per
round (vectorised; the invariant does not depend on the order), and the total volume pushed
is at most ``1/(α·ε)`` edges, whatever the size of the graph: a query never sees more than
that. On an undirected graph ``π_u(v)/deg v = π_v(u)/deg u``, so when no node is above the
threshold ``0 <= π_s(v) - p(v) - α·r(v) < ε·deg(v)`` for every ``v``: the score
``p(v) + α·r(v)`` (a node's own residual will at least restart there) is within ``ε·deg v``
of the exact value, from below.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError
from recfunnel.core.friends import Candidates, FriendGenerator, FriendSide
from recfunnel.core.generator import SearchSpace
from recfunnel.core.graph import SocialGraph

# Per-thread dense work arrays, so a query costs what it touches and not O(n_users) (a fresh
# np.zeros of a million entries costs a page fault on every touched page): estimate,
# residual and degree + 1 (0 = not looked up yet) are reset entry by entry after each query;
# ``mark`` deduplicates without sorting and needs no reset (see ``_distinct``).
# 32 bytes x n_users per serving thread.
_SCRATCH = threading.local()


def _scratch(n: int) -> tuple[npt.NDArray[Any], ...]:
    if getattr(_SCRATCH, "n", -1) < n:
        _SCRATCH.p = np.zeros(n)
        _SCRATCH.r = np.zeros(n)
        _SCRATCH.deg = np.zeros(n, dtype=np.int64)
        _SCRATCH.mark = np.zeros(n, dtype=np.int64)
        _SCRATCH.n = n
    return _SCRATCH.p, _SCRATCH.r, _SCRATCH.deg, _SCRATCH.mark


def _distinct(indices: npt.NDArray[np.int64], mark: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The distinct values of ``indices`` (in order of a representative occurrence), in
    O(len) without sorting: after ``mark[indices] = position`` each value holds the position
    of exactly one of its occurrences, whichever write won; stale marks are never read."""
    pos = np.arange(len(indices))
    mark[indices] = pos
    out: npt.NDArray[np.int64] = indices[mark[indices] == pos]
    return out


def push_pagerank(
    graph: SocialGraph, source: int, alpha: float, eps: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Rows reached from ``source`` and their PPR estimates ``p + α·r`` (module docstring),
    rows ascending. A user without friends reaches nobody.

    >>> import pandas as pd
    >>> e = pd.DataFrame({"src_user_id": list("ab"), "dst_user_id": list("bc")})
    >>> g = SocialGraph.from_edges(e, mutual=False)          # a - b - c
    >>> nodes, score = push_pagerank(g, 0, alpha=0.5, eps=1e-9)
    >>> score.round(4).tolist()                               # exact: 7/12, 1/3, 1/12
    [0.5833, 0.3333, 0.0833]
    """
    p, r, known, mark = _scratch(graph.n_users)
    touched = [np.array([source], dtype=np.int64)]
    try:
        if graph.degree([source])[0] == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        r[source] = 1.0
        active = touched[0]
        while len(active):
            rows = graph.rows(active)
            deg = np.diff(rows.indptr)
            mass = r[active]
            p[active] += alpha * mass
            r[active] = 0.0
            share = (1.0 - alpha) * mass / np.maximum(deg, 1)
            np.add.at(r, rows.indices, np.repeat(share, deg))
            reached = _distinct(rows.indices.astype(np.int64), mark)
            touched.append(reached)
            d = known[reached] - 1
            new = d < 0
            if new.any():
                d[new] = graph.degree(reached[new])
                known[reached[new]] = d[new] + 1
            # Sorted, so the order of additions (and so the rounding) never depends on
            # which duplicate won in ``_distinct``.
            active = np.sort(reached[(d > 0) & (r[reached] >= eps * d)])
        nodes = np.sort(_distinct(np.concatenate(touched), mark))
        score = p[nodes] + alpha * r[nodes]
        return nodes, score
    finally:
        every = np.concatenate(touched)
        p[every] = 0.0
        r[every] = 0.0
        known[every] = 0


class PersonalizedPageRank(FriendGenerator):
    """score(u, v) = personalised PageRank of ``v`` from ``u`` (restart probability
    ``alpha``), by local push to tolerance ``eps`` (scores within ``eps·deg v`` below the
    exact values; module docstring).

    Smaller ``eps`` reaches further (work grows as ``1/(alpha·eps)``); larger ``alpha`` keeps
    the walk closer to the user. Nothing is learned: pushes read the graph through
    ``graph.rows`` at request time, so online friendships count at once. A batch is answered
    user by user.

    >>> import pandas as pd
    >>> e = pd.DataFrame({"src_user_id": list("aabcd"), "dst_user_id": list("bcdde")})
    >>> g = SocialGraph.from_edges(e, mutual=False)       # a-b, a-c, b-d, c-d, d-e
    >>> PersonalizedPageRank(eps=1e-6).fit(g).recommend(["a"], n=2)[0].ids
    ('d', 'e')
    """

    name: ClassVar[str] = "ppr"
    search_space: ClassVar[SearchSpace] = {
        "alpha": ("float", 0.05, 0.5, "linear"),
        "eps": ("float", 1e-7, 1e-4, "log"),
    }

    def __init__(self, alpha: float = 0.15, eps: float = 1e-5) -> None:
        self.alpha = alpha
        self.eps = eps

    def _fit(self, graph: SocialGraph, side: FriendSide) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"PersonalizedPageRank.alpha must be in (0, 1), got {self.alpha}")
        if not self.eps > 0.0:
            raise ConfigError(f"PersonalizedPageRank.eps must be positive, got {self.eps}")

    def _candidates(self, users: npt.NDArray[np.int64], n: int) -> Candidates:
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        out_i: list[npt.NDArray[np.int64]] = []
        out_s: list[npt.NDArray[np.float32]] = []
        for k, u in enumerate(users.tolist()):
            nodes, score = push_pagerank(self.graph_, u, float(self.alpha), float(self.eps))
            if len(nodes) > n:
                top = np.argpartition(-score, n - 1)[:n]
                nodes, score = nodes[top], score[top]
            out_i.append(nodes)
            out_s.append(score.astype(np.float32))
            indptr[k + 1] = indptr[k] + len(nodes)
        return Candidates(
            indptr,
            np.concatenate(out_i) if out_i else np.zeros(0, np.int64),
            np.concatenate(out_s) if out_s else np.zeros(0, np.float32),
        )
