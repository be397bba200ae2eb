"""Jaccard coefficient: mutual friends as a share of everyone either user knows.

Jaccard 1901; as a link predictor, Liben-Nowell & Kleinberg 2007. Dividing the mutual-friend
count by the size of the union stops well-connected users from winning on size alone; this is
``networkx.jaccard_coefficient`` over pairs that are not friends.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt

from recfunnel.candidates.friends._neighborhood import (
    check_positive_int,
    friends_of_friends,
    top_per_row,
)
from recfunnel.core.friends import Candidates, FriendGenerator, FriendSide
from recfunnel.core.generator import SearchSpace
from recfunnel.core.graph import SocialGraph


class Jaccard(FriendGenerator):
    """score(u, v) = |N(u) ∩ N(v)| / |N(u) ∪ N(v)| over the friends of friends ``v`` of ``u``.

    The union is ``deg u + deg v - |N(u) ∩ N(v)|`` with true degrees (overlay included): the
    formula for a pair that are not friends, which every suggestion is. The intersection goes
    through friend lists cut to ``max_neighbors`` (as in :class:`~.mutual.MutualFriends`).

    >>> import pandas as pd
    >>> e = pd.DataFrame({"src_user_id": list("aabcdd"), "dst_user_id": list("bcddea")})
    >>> g = SocialGraph.from_edges(e, mutual=False)    # a-b, a-c, b-d, c-d, d-e, d-a
    >>> Jaccard().fit(g).recommend(["b"], n=3)[0]      # b: {a, d}; c: {a, d}; e: {d}
    ScoredList(ids=('c', 'e'), scores=(1.0, 0.5))
    """

    name: ClassVar[str] = "jaccard"
    search_space: ClassVar[SearchSpace] = {"max_neighbors": ("int", 50, 5000, "log")}

    def __init__(self, max_neighbors: int = 1000) -> None:
        self.max_neighbors = max_neighbors

    def _fit(self, graph: SocialGraph, side: FriendSide) -> None:
        check_positive_int(type(self).__name__, "max_neighbors", self.max_neighbors)

    def _candidates(self, users: npt.NDArray[np.int64], n: int) -> Candidates:
        hop = friends_of_friends(self.graph_, users, int(self.max_neighbors))
        paths = hop.paths
        common = paths.score.astype(np.float64)
        rows = np.repeat(np.arange(len(paths)), np.diff(paths.indptr))
        union = hop.user_degree[rows] + self.graph_.degree(paths.index) - common
        # The formula is for non-friends; the user themself and their friends (removed by the
        # base class) only need a finite value.
        score = common / np.maximum(union, 1.0)
        return top_per_row(Candidates(paths.indptr, paths.index, score.astype(np.float32)), n)
