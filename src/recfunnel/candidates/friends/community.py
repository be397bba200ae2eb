"""Most-connected users of the query user's own community: a cold-start source.

A new member has no friends to walk from, but sign-up usually tells something about them
(school, city, a community detected offline). People connect mostly within such groups
(homophily: McPherson, Smith-Lovin & Cook 2001), so the best-connected members of the user's
group make better first suggestions than the global celebrities, which remain the fallback
for a user whose group is unknown.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

from recfunnel.candidates.friends._popularity import connection_scores, rank_by_group
from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.friends import Candidates, FriendGenerator, FriendSide
from recfunnel.core.graph import SocialGraph


class CommunityPopular(FriendGenerator):
    """score(u, v) = number of friends of ``v`` (recency-weighted with ``half_life`` seconds,
    as in :class:`~.popular.PopularUsers`), over the users ``v`` whose ``column`` value in
    ``user_features`` equals ``u``'s; over everyone when ``u``'s value is unknown (missing,
    not seen at fit, or a user who joined later without :meth:`add_profiles`).

    ``fit`` needs ``user_features`` with ``user_id`` and ``column`` (rows for users not in the
    graph are ignored). Rankings are computed at fit; refit to refresh them. Only users with at
    least one friend are suggested; a group lists its own members only.

    >>> import pandas as pd
    >>> e = pd.DataFrame({"src_user_id": list("aabde"), "dst_user_id": list("bcceg")})
    >>> g = SocialGraph.from_edges(e, mutual=False)     # a-b, a-c, b-c, d-e, e-g
    >>> g.add_users(["new"]).tolist()
    [6]
    >>> f = pd.DataFrame({"user_id": list("abcdeg"), "community": list("xxxyyy")})
    >>> m = CommunityPopular().fit(g, user_features=f)
    >>> m.recommend(["d"], n=3)[0].ids, m.recommend(["new"], n=1)[0].ids
    (('g',), ('a',))
    >>> _ = m.add_profiles(pd.DataFrame({"user_id": ["new"], "community": ["y"]}))
    >>> m.recommend(["new"], n=3)[0]
    ScoredList(ids=('e', 'd', 'g'), scores=(2.0, 1.0, 1.0))
    """

    name: ClassVar[str] = "community_popular"

    def __init__(self, column: str = "community", half_life: float | None = None) -> None:
        self.column = column
        self.half_life = half_life

    def _fit(self, graph: SocialGraph, side: FriendSide) -> None:
        features = side.user_features
        if features is None:
            raise ConfigError(
                f"{type(self).__name__}.fit needs user_features with a {self.column!r} column"
            )
        labels = self._labels(features)
        self.groups_ = np.asarray(sorted(set(labels.dropna().tolist())), dtype=np.str_)
        self.group_ = np.full(graph.n_users, -1, dtype=np.int64)
        self._assign(graph, labels)
        score = connection_scores(graph, self.half_life)
        group = self.group_[: len(score)]
        self.group_indptr_, self.group_rows_, self.group_score_ = rank_by_group(
            score, group, len(self.groups_)
        )
        _, self.ranking_, self.ranking_score_ = rank_by_group(
            score, np.zeros(len(score), np.int64), 1
        )

    def _labels(self, features: pd.DataFrame) -> pd.Series:
        for col in ("user_id", self.column):
            if col not in features.columns:
                raise DataError(f"missing column {col!r}", source="user_features")
        values = features[self.column]
        labels = values.astype(str).where(values.notna(), None)
        labels.index = features["user_id"].astype(str)
        return labels

    def _assign(self, graph: SocialGraph, labels: pd.Series) -> None:
        rows = graph.encode(labels.index, missing="ignore")
        code = pd.Index(self.groups_).get_indexer(pd.Index(labels.to_numpy(dtype=object)))
        ok = rows >= 0
        if len(self.group_) < graph.n_users:
            pad = np.full(graph.n_users - len(self.group_), -1, dtype=np.int64)
            self.group_ = np.concatenate([self.group_, pad])
        self.group_[rows[ok]] = code[ok]

    def add_profiles(self, user_features: pd.DataFrame) -> Self:
        """Record the ``column`` value of users who joined (or changed group) since fit, so
        their next request is served from their group; users must already be in the graph
        (``graph.add_users``), else ``UnknownIdError``. A value not seen at fit counts as
        unknown. Rankings are not changed. Returns ``self``."""
        self._check_fitted()
        labels = self._labels(user_features)
        self.graph_.encode(labels.index)  # unknown users raise
        self._assign(self.graph_, labels)
        return self

    def _candidates(self, users: npt.NDArray[np.int64], n: int) -> Candidates:
        known = len(self.group_)
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        out_i: list[npt.NDArray[np.int64]] = []
        out_s: list[npt.NDArray[np.float32]] = []
        for k, u in enumerate(users.tolist()):
            g = int(self.group_[u]) if u < known else -1
            if g >= 0:
                lo = int(self.group_indptr_[g])
                hi = min(int(self.group_indptr_[g + 1]), lo + n)
                rows, score = self.group_rows_[lo:hi], self.group_score_[lo:hi]
            else:
                rows, score = self.ranking_[:n], self.ranking_score_[:n]
            out_i.append(rows)
            out_s.append(score)
            indptr[k + 1] = indptr[k] + len(rows)
        return Candidates(indptr, np.concatenate(out_i), np.concatenate(out_s))

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "groups": self.groups_,
            "group": self.group_,
            "group_indptr": self.group_indptr_,
            "group_rows": self.group_rows_,
            "group_score": self.group_score_,
            "ranking": self.ranking_,
            "ranking_score": self.ranking_score_,
        }

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.groups_ = arrays["groups"].astype(np.str_)
        self.group_ = arrays["group"].astype(np.int64)
        self.group_indptr_ = arrays["group_indptr"].astype(np.int64)
        self.group_rows_ = arrays["group_rows"].astype(np.int64)
        self.group_score_ = arrays["group_score"].astype(np.float32)
        self.ranking_ = arrays["ranking"].astype(np.int64)
        self.ranking_score_ = arrays["ranking_score"].astype(np.float32)
