"""Mutual friends: the "people you may know" baseline of link prediction.

Liben-Nowell & Kleinberg 2007, "The link-prediction problem for social networks": the number
of common neighbours ``|N(u) ∩ N(v)|`` is the simplest local score and a strong one. Only
friends of friends have a non-zero score, so they are the candidates.
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


class MutualFriends(FriendGenerator):
    """score(u, v) = number of friends ``u`` and ``v`` have in common, over the friends of
    friends of ``u``.

    Counts go through friend lists cut to ``max_neighbors`` entries (an evenly spaced,
    deterministic sample; see :mod:`recfunnel.candidates.friends._neighborhood`), so a query
    costs at most ``max_neighbors²`` entries however big the hubs; they are exact when no
    degree exceeds it. Nothing is learned: the graph is read at request time, overlay included,
    so a new friendship changes the next answer.

    >>> import pandas as pd
    >>> e = pd.DataFrame({"src_user_id": list("aabcd"), "dst_user_id": list("bcdde")})
    >>> g = SocialGraph.from_edges(e, mutual=False)       # a-b, a-c, b-d, c-d, d-e
    >>> MutualFriends().fit(g).recommend(["a"], n=2)[0]
    ScoredList(ids=('d',), scores=(2.0,))
    """

    name: ClassVar[str] = "mutual_friends"
    search_space: ClassVar[SearchSpace] = {"max_neighbors": ("int", 50, 5000, "log")}

    def __init__(self, max_neighbors: int = 1000) -> None:
        self.max_neighbors = max_neighbors

    def _fit(self, graph: SocialGraph, side: FriendSide) -> None:
        check_positive_int(type(self).__name__, "max_neighbors", self.max_neighbors)

    def _candidates(self, users: npt.NDArray[np.int64], n: int) -> Candidates:
        hop = friends_of_friends(self.graph_, users, int(self.max_neighbors))
        return top_per_row(hop.paths, n)
