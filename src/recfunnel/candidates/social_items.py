"""Items your friends engaged with: the social-proof candidate source.

Friends share tastes (homophily: McPherson et al. 2001), and what they read, watch or buy is a
candidate pool that collaborative filtering on the user's own history cannot see. The score
is a weighted vote of the user's friends (the "social" neighbourhood of trust- and
social-based recommenders, e.g. Ma et al. 2008; Konstas et al. 2009):
``score(u, i) = Σ_{f ∈ friends(u)} w(f) · e(f, i)``.

Friendships are read from the :class:`~recfunnel.core.graph.SocialGraph` at scoring time, not
copied at fit, so a friendship added online (``graph.add_edges``) changes the next answer
without a refit. The graph is data, not part of the artefact: after ``load``, call
:meth:`FriendsItems.attach_graph`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recfunnel.core.errors import ConfigError, NotFittedError
from recfunnel.core.generator import CandidateGenerator, SearchSpace, SideInfo
from recfunnel.core.graph import SocialGraph
from recfunnel.core.matrix import InteractionMatrix

FRIEND_WEIGHTINGS = ("uniform", "activity")


class FriendsItems(CandidateGenerator):
    """score(u, i) = n(u) · Σ over friends f of u of w(f) · e(f, i).

    * ``e(f, i)`` is 1 if ``f`` engaged with ``i`` in the training interactions, else 0; with
      ``half_life`` (in the timestamps' unit) it is ``0.5 ** ((t_max - t) / half_life)`` for the
      most recent engagement at time ``t`` (``t_max``: the last training time; its choice
      scales every score alike and changes no ranking).
    * ``w(f)`` is 1 (``friend_weighting="uniform"``: a count of friends) or
      ``1 / log(2 + a_f)`` with ``a_f`` the number of distinct items ``f`` engaged with
      (``"activity"``: a friend who engages with everything says less about each item).
    * ``n(u)`` is ``1 / log(1 + deg u)`` with ``degree_norm`` (``deg u``: friends in the graph),
      else 1. It changes no user's ranking; it makes scores comparable across users (for
      blending with other sources, or as a ranker feature).

    Users of the interactions are matched to graph users by id. A user without a graph row,
    or without friends, scores 0 for every item (an all-zero row); so do items no friend
    engaged with. ``fit`` needs ``graph=``; the learned state is the weighted users × items
    engagement matrix ``w(f) · e(f, i)``.

    ``similar_items`` is the plain item–item cosine over the binary training interactions
    (``|U_i ∩ U_j| / sqrt(|U_i| |U_j|)``): co-engagement among friends is not a meaningful
    item similarity, and this keeps the contract's item-to-item answer useful.

    >>> import pandas as pd
    >>> g = SocialGraph.from_edges(pd.DataFrame({"src_user_id": ["a", "a"],
    ...                                          "dst_user_id": ["b", "c"]}), mutual=False)
    >>> m = InteractionMatrix.from_arrays(list("bbca"), list("xyyz"))
    >>> model = FriendsItems().fit(m, graph=g)
    >>> model.recommend(["a"], n=2)[0]
    ScoredList(ids=('y', 'x'), scores=(2.0, 1.0))
    """

    name: ClassVar[str] = "friends_items"
    search_space: ClassVar[SearchSpace] = {
        "friend_weighting": ("categorical", list(FRIEND_WEIGHTINGS)),
    }

    graph_: SocialGraph

    def __init__(
        self,
        half_life: float | None = None,
        friend_weighting: str = "uniform",
        degree_norm: bool = False,
    ) -> None:
        self.half_life = half_life
        self.friend_weighting = friend_weighting
        self.degree_norm = degree_norm

    # ---- learning -------------------------------------------------------------------------
    def _fit(self, interactions: InteractionMatrix, side: SideInfo) -> None:
        name = type(self).__name__
        if side.graph is None:
            raise ConfigError(f"{name}.fit needs the social graph: fit(..., graph=SocialGraph)")
        if self.friend_weighting not in FRIEND_WEIGHTINGS:
            raise ConfigError(
                f"{name}.friend_weighting must be one of {list(FRIEND_WEIGHTINGS)}, "
                f"got {self.friend_weighting!r}"
            )
        if self.half_life is not None and not self.half_life > 0:
            raise ConfigError(f"{name}.half_life must be positive or None, got {self.half_life}")
        engaged = self._engagement(interactions)
        activity = np.diff(self.seen_.indptr).astype(np.float64)
        if self.friend_weighting == "activity":
            weight = 1.0 / np.log(2.0 + activity)
        else:
            weight = np.ones(len(activity))
        weighted = sp.csr_matrix(sp.diags(weight.astype(np.float32)) @ engaged, dtype=np.float32)
        weighted.sort_indices()
        self.engagement_ = weighted
        self.attach_graph(side.graph)

    def _engagement(self, interactions: InteractionMatrix) -> sp.csr_matrix:
        """``e(f, i)``: binary, or the decayed weight of the most recent engagement."""
        if self.half_life is None:
            return self.seen_
        t = interactions.timestamp
        if not np.isfinite(t).all():
            raise ConfigError(
                f"{type(self).__name__}.half_life needs a timestamp on every interaction; "
                f"{int((~np.isfinite(t)).sum())} have none (set half_life=None)"
            )
        decay = np.power(0.5, (t.max() - t) / float(self.half_life))
        key = interactions.user.astype(np.int64) * interactions.n_items + interactions.item
        order = np.lexsort((-decay, key))  # per (user, item), the most recent first
        first = np.ones(len(order), dtype=bool)
        first[1:] = key[order][1:] != key[order][:-1]
        keep = order[first]
        m = sp.csr_matrix(
            (decay[keep].astype(np.float32), (interactions.user[keep], interactions.item[keep])),
            shape=interactions.shape,
        )
        m.sort_indices()
        return m

    # ---- the graph ------------------------------------------------------------------------
    def attach_graph(self, graph: SocialGraph) -> Self:
        """Score with the friendships of ``graph`` from now on (needed after ``load``). A graph
        updated in place (``add_edges``, ``add_users``) needs no new call; a new graph object
        (e.g. from ``compact()``) does."""
        self.graph_ = graph
        self._aligned: tuple[int, int, npt.NDArray[np.int64], sp.csr_matrix] | None = None
        return self

    def _alignment(self) -> tuple[npt.NDArray[np.int64], sp.csr_matrix]:
        """Graph row of each of our users (-1: none) and the graph-users × our-users 0/1 map.

        Recomputed when users join the graph (an interaction user may join it later)."""
        graph = self.graph_
        cached = getattr(self, "_aligned", None)
        if cached is not None and cached[0] == id(graph) and cached[1] == graph.n_users:
            return cached[2], cached[3]
        to_graph = graph.encode(self.users_.ids.tolist(), missing="ignore")
        have = np.flatnonzero(to_graph >= 0)
        to_ours = sp.csr_matrix(
            (np.ones(len(have), np.float32), (to_graph[have], have)),
            shape=(graph.n_users, len(self.users_)),
        )
        self._aligned = (id(graph), graph.n_users, to_graph, to_ours)
        return to_graph, to_ours

    # ---- scoring --------------------------------------------------------------------------
    def _score_users(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        if not hasattr(self, "graph_"):
            raise NotFittedError(
                f"{type(self).__name__} has no social graph: call attach_graph(graph) after load()"
            )
        out = np.zeros((len(users), len(self.items_)), dtype=np.float32)
        to_graph, to_ours = self._alignment()
        rows = to_graph[users]
        have = np.flatnonzero(rows >= 0)
        if not len(have):
            return out
        friends = self.graph_.rows(rows[have])  # B' x graph users
        scores = np.asarray((friends @ to_ours @ self.engagement_).toarray(), dtype=np.float32)
        if self.degree_norm:
            degree = np.diff(friends.indptr).astype(np.float64)
            scale = np.where(degree > 0, 1.0 / np.log1p(np.maximum(degree, 1.0)), 0.0)
            scores *= scale[:, None].astype(np.float32)
        out[have] = scores
        return out

    def _score_similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        x = self.seen_.tocsc()
        counts = np.diff(x.indptr).astype(np.float64)
        gram = np.asarray((x[:, items].T @ x).toarray(), dtype=np.float64)  # B x n_items
        denom = np.sqrt(counts[items][:, None] * counts[None, :])
        sim: npt.NDArray[np.float32] = np.divide(
            gram, denom, out=np.zeros_like(gram), where=denom > 0
        ).astype(np.float32)
        return sim

    # ---- persistence ----------------------------------------------------------------------
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        e = self.engagement_
        return {"e_data": e.data, "e_indices": e.indices, "e_indptr": e.indptr}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.engagement_ = sp.csr_matrix(
            (arrays["e_data"], arrays["e_indices"], arrays["e_indptr"]),
            shape=(len(self.users_), len(self.items_)),
        )
