"""Most-connected users: the popularity baseline of link prediction.

Preferential attachment (Barabási & Albert 1999) says new friendships go to users who already
have many; Liben-Nowell & Kleinberg 2007 use degree as the non-personalised baseline every
link predictor should beat. Everyone gets the same list (minus their own exclusions), so it
also serves users who have no friends yet.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from recfunnel.candidates.friends._popularity import connection_scores, rank_by_group
from recfunnel.core.friends import Candidates, FriendGenerator, FriendSide
from recfunnel.core.graph import SocialGraph


class PopularUsers(FriendGenerator):
    """score(u, v) = number of friends of ``v`` (or, with ``half_life`` seconds, their
    friendships weighted ``0.5 ** (age / half_life)``, so users gaining friends lately rank
    first), the same for every ``u``.

    The ranking is computed at ``fit`` (it reads the whole graph); refit to refresh it.
    Users with no friends are never suggested. Ties go to the lower user row.

    >>> import pandas as pd
    >>> e = pd.DataFrame({"src_user_id": list("aabd"), "dst_user_id": list("bcce")})
    >>> g = SocialGraph.from_edges(e, mutual=False)       # a-b, a-c, b-c, d-e
    >>> PopularUsers().fit(g).recommend(["d"], n=2)[0]
    ScoredList(ids=('a', 'b'), scores=(2.0, 2.0))
    """

    name: ClassVar[str] = "popular_users"

    def __init__(self, half_life: float | None = None) -> None:
        self.half_life = half_life

    def _fit(self, graph: SocialGraph, side: FriendSide) -> None:
        score = connection_scores(graph, self.half_life)
        _, self.ranking_, self.ranking_score_ = rank_by_group(
            score, np.zeros(len(score), np.int64), 1
        )

    def _candidates(self, users: npt.NDArray[np.int64], n: int) -> Candidates:
        k = min(n, len(self.ranking_))
        indptr = np.arange(len(users) + 1, dtype=np.int64) * k
        return Candidates(
            indptr,
            np.tile(self.ranking_[:k], len(users)),
            np.tile(self.ranking_score_[:k], len(users)),
        )

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"ranking": self.ranking_, "ranking_score": self.ranking_score_}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.ranking_ = arrays["ranking"].astype(np.int64)
        self.ranking_score_ = arrays["ranking_score"].astype(np.float32)
