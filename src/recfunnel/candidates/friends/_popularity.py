"""Connection counts (optionally recency-weighted) and rankings by them, shared by the
popularity sources."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError
from recfunnel.core.graph import SocialGraph


def connection_scores(graph: SocialGraph, half_life: float | None) -> npt.NDArray[np.float64]:
    """Each user's number of friends (``half_life`` None), or their friendships weighted
    ``0.5 ** (age / half_life)`` where ``age`` is the time from the friendship's start to the
    newest friendship in the graph (friendships of unknown time weigh 0: not recent).
    Reads the whole graph: for ``fit`` only.

    >>> import pandas as pd
    >>> e = pd.DataFrame({"src_user_id": list("aab"), "dst_user_id": list("bcc"),
    ...                   "timestamp": [0.0, 10.0, 10.0]})
    >>> g = SocialGraph.from_edges(e, mutual=False)        # a-b at 0; a-c, b-c at 10
    >>> connection_scores(g, None).tolist(), connection_scores(g, 10.0).tolist()
    ([2.0, 2.0, 2.0], [1.5, 1.5, 2.0])
    """
    if half_life is None:
        degree: npt.NDArray[np.float64] = graph.degree().astype(np.float64)
        return degree
    if not half_life > 0:
        raise ConfigError(f"half_life must be positive seconds or None, got {half_life!r}")
    a, b, since = graph.friendship_pairs()
    known = np.isfinite(since)
    newest = since[known].max() if known.any() else 0.0
    w = np.where(known, 0.5 ** ((newest - np.where(known, since, newest)) / half_life), 0.0)
    n = graph.n_users
    out = np.bincount(a, w, minlength=n) + np.bincount(b, w, minlength=n)
    return np.asarray(out, dtype=np.float64)


def rank_by_group(
    score: npt.NDArray[np.float64], group: npt.NDArray[np.int64], n_groups: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Users with a positive score and a group (``group >= 0``), grouped, best first within a
    group (ties: lower row first): ``(indptr per group, rows, scores)``."""
    keep = np.flatnonzero((score > 0) & (group >= 0))
    order = keep[np.lexsort((keep, -score[keep], group[keep]))]
    indptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(group[order], minlength=n_groups), out=indptr[1:])
    return indptr, order.astype(np.int64), score[order].astype(np.float32)
