"""Co-engagement: suggest people who engage with the same things.

Users who read, watch or buy the same items share interests, and shared interests predict
friendship beyond the graph itself (the "focus" theory of tie formation: Feld 1981; used as a
link-prediction feature since Liben-Nowell & Kleinberg 2007). Each user is the set of items they
engaged with, each item weighted by its rarity (the BM25 inverse document frequency, Robertson
& Zaragoza 2009: thousands of users clicking a viral video says little), and candidates are
users by cosine similarity of these vectors, computed sparsely: only users who share an item
with the query user are touched.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recfunnel.candidates.friends._neighborhood import (
    check_positive_int,
    expand,
    sample_rows,
    top_per_row,
)
from recfunnel.core.errors import ConfigError
from recfunnel.core.friends import Candidates, FriendGenerator, FriendSide
from recfunnel.core.generator import SearchSpace
from recfunnel.core.graph import SocialGraph


class CoEngagement(FriendGenerator):
    """score(u, v) = Σ_i w_i² x_ui x_vi / (‖w ∘ x_u‖ ‖w ∘ x_v‖): cosine similarity of the
    users' binary item sets, item ``i`` weighted ``w_i = log(1 + (N - df_i + 0.5) / (df_i +
    0.5))`` (BM25 idf, ``N`` users with an engagement, ``df_i`` of them engaged with ``i``) when
    ``idf``, else 1.

    ``fit`` needs ``interactions`` (an :class:`~recfunnel.core.matrix.InteractionMatrix`);
    its users are matched to graph users by id, so its user index may differ from the
    graph's, and users of either side missing from the other are simply without engagements.
    Per query, the user's items are cut to ``max_items`` and each item's users to
    ``max_users_per_item`` (evenly spaced deterministic samples, as the hubs of
    :mod:`~recfunnel.candidates.friends._neighborhood`), so a query costs at most their
    product. Engagements are learned at fit (a user who joined later has none); the graph's
    exclusions apply at request time.

    >>> from recfunnel.core.matrix import InteractionMatrix
    >>> import pandas as pd
    >>> g = SocialGraph.from_edges(pd.DataFrame({"src_user_id": ["a"], "dst_user_id": ["d"]}),
    ...                            users=list("abcd"), mutual=False)
    >>> m = InteractionMatrix.from_arrays(list("aabbc"), list("xyxyz"))
    >>> CoEngagement(idf=False).fit(g, interactions=m).recommend(["a"], n=3)[0]
    ScoredList(ids=('b',), scores=(1.0,))
    """

    name: ClassVar[str] = "co_engagement"
    search_space: ClassVar[SearchSpace] = {"max_users_per_item": ("int", 50, 5000, "log")}

    def __init__(
        self, idf: bool = True, max_items: int = 500, max_users_per_item: int = 1000
    ) -> None:
        self.idf = idf
        self.max_items = max_items
        self.max_users_per_item = max_users_per_item

    def _fit(self, graph: SocialGraph, side: FriendSide) -> None:
        name = type(self).__name__
        check_positive_int(name, "max_items", self.max_items)
        check_positive_int(name, "max_users_per_item", self.max_users_per_item)
        inter = side.interactions
        if inter is None:
            raise ConfigError(f"{name}.fit needs interactions (users x items)")
        rows = inter.users.encode(graph.user_ids(), missing="ignore")
        have = np.flatnonzero(rows >= 0)
        align = sp.csr_matrix(
            (np.ones(len(have), np.float32), (have, rows[have])),
            shape=(graph.n_users, inter.n_users),
        )
        x = sp.csr_matrix(align @ inter.to_csr())
        x.data[:] = 1.0
        x.sort_indices()
        df = np.bincount(x.indices, minlength=x.shape[1]).astype(np.float64)
        n_active = float((np.diff(x.indptr) > 0).sum())
        if self.idf:
            weight = np.log1p((n_active - df + 0.5) / (df + 0.5))
        else:
            weight = np.ones(x.shape[1])
        self.engaged_indptr_ = x.indptr.astype(np.int64)
        self.engaged_items_ = x.indices.astype(np.int64)
        self.item_weight_ = weight.astype(np.float64)
        self._prepare()

    def _prepare(self) -> None:
        n_users = len(self.engaged_indptr_) - 1
        x = sp.csr_matrix(
            (np.ones(len(self.engaged_items_)), self.engaged_items_, self.engaged_indptr_),
            shape=(n_users, len(self.item_weight_)),
        )
        self._norm = np.sqrt(x @ self.item_weight_**2)
        engagers = x.T.tocsr()
        engagers.sort_indices()
        self._engagers_indptr = engagers.indptr.astype(np.int64)
        self._engagers = engagers.indices.astype(np.int64)

    def _candidates(self, users: npt.NDArray[np.int64], n: int) -> Candidates:
        fitted = len(self.engaged_indptr_) - 1
        # Rows of the query users (empty for users who joined after fit).
        lo = np.where(users < fitted, self.engaged_indptr_[np.minimum(users, fitted - 1)], 0)
        hi = np.where(users < fitted, self.engaged_indptr_[np.minimum(users, fitted - 1) + 1], 0)
        lengths = hi - lo
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        pos = np.repeat(lo - indptr[:-1], lengths) + np.arange(indptr[-1])
        items = self.engaged_items_[pos]
        f_indptr, f_items, _ = sample_rows(indptr, items, np.ones(len(items)), self.max_items)
        s_indptr, s_users, _ = sample_rows(
            self._engagers_indptr,
            self._engagers,
            np.ones(len(self._engagers)),
            self.max_users_per_item,
        )
        paths = expand(f_indptr, f_items, self.item_weight_[f_items] ** 2, s_indptr, s_users)
        rows = np.repeat(np.arange(len(users)), np.diff(paths.indptr))
        q = self._norm[np.minimum(users, fitted - 1)][rows]
        denom = q * self._norm[paths.index]
        score = np.where(denom > 0, paths.score / np.where(denom > 0, denom, 1.0), 0.0)
        return top_per_row(Candidates(paths.indptr, paths.index, score.astype(np.float32)), n)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "engaged_indptr": self.engaged_indptr_,
            "engaged_items": self.engaged_items_,
            "item_weight": self.item_weight_,
        }

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.engaged_indptr_ = arrays["engaged_indptr"].astype(np.int64)
        self.engaged_items_ = arrays["engaged_items"].astype(np.int64)
        self.item_weight_ = arrays["item_weight"].astype(np.float64)
        self._prepare()
