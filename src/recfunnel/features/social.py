"""Friend engagement: how many of the user's friends engaged with the candidate item.

Social proof is one of the strongest signals of what a user will engage with when friends share
tastes (homophily), and it is invisible to retrieval scores computed from the user's own
history. For a row (user ``u``, item ``i``) the step gives

* ``friends_engaged``: ``|friends(u) ∩ engagers(i)|``, friends who engaged with ``i`` in the
  fitted event log;
* ``friends_engaged_share``: that count over ``u``'s number of friends (0 without friends).

Engagements are learned at ``fit`` from the event log (``user_id``, ``item_id``; every event
of the log counts, whatever the row's time: fit on events before the requests, as the funnel
does). Friendships are read from the :class:`~recfunnel.core.graph.SocialGraph` at transform
time, so a friendship added online counts at once. The graph is data, not part of the saved
step: :meth:`FriendEngagement.attach_graph` it after ``FeaturePipeline.load``. Users are
matched by id; a user or item the graph or the log does not know gets 0 for both.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recfunnel.core.errors import ConfigError, NotFittedError
from recfunnel.core.graph import SocialGraph
from recfunnel.features.base import FeatureBlock, FeatureStep, fitted_index, require_columns


class FriendEngagement(FeatureStep):
    """Friends of the row's user who engaged with the row's item: count and share.

    >>> g = SocialGraph.from_edges(pd.DataFrame({"src_user_id": ["a", "a", "a"],
    ...                                          "dst_user_id": ["b", "c", "d"]}), mutual=False)
    >>> events = pd.DataFrame({"user_id": ["b", "b", "c", "a"], "item_id": ["x", "y", "x", "z"]})
    >>> rows = pd.DataFrame({"user_id": ["a", "a", "b", "new"], "item_id": ["x", "z", "z", "x"]})
    >>> step = FriendEngagement().attach_graph(g).fit(rows, events)
    >>> step.transform(rows).dense.astype(float).round(3).tolist()
    [[2.0, 0.667], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    """

    name: ClassVar[str] = "friend_engagement"
    needs_events: ClassVar[bool] = True

    graph_: SocialGraph

    def __init__(self, user_column: str = "user_id", item_column: str = "item_id") -> None:
        self.user_column = user_column
        self.item_column = item_column

    def attach_graph(self, graph: SocialGraph) -> Self:
        """Read friendships from ``graph`` (needed before ``transform``, and after ``load``)."""
        self.graph_ = graph
        self._aligned: tuple[int, int, sp.csr_matrix] | None = None
        return self

    def fit(self, frame: pd.DataFrame, events: pd.DataFrame | None = None) -> Self:
        if events is None:
            raise ConfigError(f"{type(self).__name__} needs the event log: fit(events=...)")
        require_columns(events, [self.user_column, self.item_column], "event log")
        u_codes, users = pd.factorize(events[self.user_column].astype(str).to_numpy())
        i_codes, items = pd.factorize(events[self.item_column].astype(str).to_numpy())
        engagers = sp.csr_matrix(
            (np.ones(len(u_codes), np.float32), (i_codes, u_codes)),
            shape=(len(items), len(users)),
        )
        engagers.sum_duplicates()
        engagers.sort_indices()
        self.users_ = np.asarray(users, dtype=str)
        self.items_ = np.asarray(items, dtype=str)
        self.engagers_indptr_ = engagers.indptr.astype(np.int64)
        self.engagers_indices_ = engagers.indices.astype(np.int64)
        return self

    def _graph_to_log(self) -> sp.csr_matrix:
        """Graph users × log users 0/1 map, rebuilt when users join the graph."""
        graph = self.graph_
        cached = getattr(self, "_aligned", None)
        if cached is not None and cached[0] == id(graph) and cached[1] == graph.n_users:
            return cached[2]
        to_log = fitted_index(self, "users_").get_indexer(graph.user_ids().astype(str))
        have = np.flatnonzero(to_log >= 0)
        align = sp.csr_matrix(
            (np.ones(len(have), np.float32), (have, to_log[have])),
            shape=(graph.n_users, len(self.users_)),
        )
        self._aligned = (id(graph), graph.n_users, align)
        return align

    def transform(self, frame: pd.DataFrame) -> FeatureBlock:
        self._check_fitted("engagers_indptr_")
        if not hasattr(self, "graph_"):
            raise NotFittedError(
                f"{type(self).__name__} has no social graph: call attach_graph(graph) "
                "(after FeaturePipeline.load, or Funnel.attach_graph)"
            )
        require_columns(frame, [self.user_column, self.item_column], type(self).__name__)
        n = len(frame)
        out = np.zeros((n, 2), np.float32)
        item = fitted_index(self, "items_").get_indexer(
            frame[self.item_column].astype(str).to_numpy()
        )
        # Each distinct user once: its graph row, friends (as log users) and friend count.
        u_codes, u_ids = pd.factorize(frame[self.user_column].astype(str).to_numpy())
        graph_row = self.graph_.encode(list(u_ids), missing="ignore")
        in_graph = graph_row >= 0
        slot = np.cumsum(in_graph) - 1  # row of a distinct user in `friends`
        friends = self.graph_.rows(graph_row[in_graph]) @ self._graph_to_log()
        degree = np.zeros(len(u_ids), np.float64)
        degree[in_graph] = self.graph_.degree(graph_row[in_graph])
        ok = np.flatnonzero(in_graph[u_codes] & (item >= 0))
        if len(ok):
            engagers = sp.csr_matrix(
                (
                    np.ones(len(self.engagers_indices_), np.float32),
                    self.engagers_indices_,
                    self.engagers_indptr_,
                ),
                shape=(len(self.items_), len(self.users_)),
            )
            # Row k: friends of row k's user ∘ engagers of row k's item, summed.
            both = friends[slot[u_codes[ok]]].multiply(engagers[item[ok]])
            out[ok, 0] = np.asarray(both.sum(axis=1)).ravel()
        d = degree[u_codes]
        out[:, 1] = np.divide(out[:, 0], d, out=np.zeros(n), where=d > 0)
        names = ("friends_engaged", "friends_engaged_share")
        return FeatureBlock(out, np.zeros((n, 0), np.int64), names, (), ())

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        self._check_fitted("engagers_indptr_")
        return {
            "users": self.users_,
            "items": self.items_,
            "engagers_indptr": self.engagers_indptr_,
            "engagers_indices": self.engagers_indices_,
        }

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.users_ = np.asarray(arrays["users"], dtype=str)
        self.items_ = np.asarray(arrays["items"], dtype=str)
        self.engagers_indptr_ = np.asarray(arrays["engagers_indptr"], np.int64)
        self.engagers_indices_ = np.asarray(arrays["engagers_indices"], np.int64)
