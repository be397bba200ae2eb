"""Adamic–Adar: mutual friends weighted by how selective each one is.

Adamic & Adar 2003, "Friends and neighbors on the Web"; as a link predictor, Liben-Nowell &
Kleinberg 2007. A mutual friend with few friends says more about a pair than a celebrity who
knows everyone, so each counts ``1 / log deg(z)``; this is ``networkx.adamic_adar_index``.
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


def adamic_adar_weight(degree: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """``1 / log(deg)`` for ``deg >= 2``, else 0.

    A mutual friend ``z`` of two distinct users has ``deg z >= 2``, so the formula is always
    defined where it matters; a friend of degree 1 (only the query user) leads to nobody else
    and contributes nothing (``1/log 1`` would be infinite).

    >>> adamic_adar_weight(np.array([0, 1, 2, 10])).round(4).tolist()
    [0.0, 0.0, 1.4427, 0.4343]
    """
    deg = np.asarray(degree, dtype=np.float64)
    safe = np.where(deg >= 2, deg, np.e)
    out: npt.NDArray[np.float64] = np.where(deg >= 2, 1.0 / np.log(safe), 0.0)
    return out


class AdamicAdar(FriendGenerator):
    """score(u, v) = sum over mutual friends ``z`` of ``1 / log deg(z)`` (natural log, true
    degree, overlay included), over the friends of friends of ``u``.

    ``max_neighbors`` cuts friend lists as in :class:`~.mutual.MutualFriends`. Nothing is
    learned; the graph is read at request time.

    >>> import pandas as pd
    >>> e = pd.DataFrame({"src_user_id": list("aabcd"), "dst_user_id": list("bcdde")})
    >>> g = SocialGraph.from_edges(e, mutual=False)       # a-b, a-c, b-d, c-d, d-e
    >>> rec = AdamicAdar().fit(g).recommend(["a"], n=2)[0]
    >>> rec.ids, round(rec.scores[0], 4)                  # 2 / log 2
    (('d',), 2.8854)
    """

    name: ClassVar[str] = "adamic_adar"
    search_space: ClassVar[SearchSpace] = {"max_neighbors": ("int", 50, 5000, "log")}

    def __init__(self, max_neighbors: int = 1000) -> None:
        self.max_neighbors = max_neighbors

    def _fit(self, graph: SocialGraph, side: FriendSide) -> None:
        check_positive_int(type(self).__name__, "max_neighbors", self.max_neighbors)

    def _candidates(self, users: npt.NDArray[np.int64], n: int) -> Candidates:
        hop = friends_of_friends(
            self.graph_, users, int(self.max_neighbors), weight=adamic_adar_weight
        )
        return top_per_row(hop.paths, n)
