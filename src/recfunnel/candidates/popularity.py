"""Popularity: every user gets the items with the most training interactions."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recfunnel.core.errors import ConfigError
from recfunnel.core.generator import CandidateGenerator, SideInfo
from recfunnel.core.matrix import InteractionMatrix


class Popularity(CandidateGenerator):
    """Scores an item by its number of training interactions (true counts).

    This is the popularity floor every model must beat. It is not RecBole's ``Pop``, which
    counts training batches an item appears in, sampled negatives included.

    ``count`` is ``"users"`` (distinct users who interacted; default) or ``"events"`` (every
    interaction, repeats included). ``similar_items`` returns the most popular other items.

    >>> m = InteractionMatrix.from_arrays(list("aabbc"), list("xyxzx"))
    >>> Popularity().fit(m).recommend(["c"], n=2)[0].ids
    ('y', 'z')
    """

    name: ClassVar[str] = "pop"

    def __init__(self, count: str = "users") -> None:
        self.count = count

    def _fit(self, interactions: InteractionMatrix, side: SideInfo) -> None:
        if self.count == "users":
            counts = np.asarray(self.seen_.sum(axis=0)).ravel()
        elif self.count == "events":
            counts = interactions.item_counts()
        else:
            raise ConfigError(f"Popularity.count must be 'users' or 'events', got {self.count!r}")
        self.item_scores_ = counts.astype(np.float32)

    def _score_users(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.broadcast_to(self.item_scores_, (len(users), len(self.item_scores_)))

    def _score_pairs(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        return self.item_scores_[items]

    def _top_unblocked(
        self, users: npt.NDArray[np.int64], k: int, blocked: sp.csr_matrix
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        # The same list for everyone: walk the popularity order, skipping each row's blocked
        # items (at most k + |blocked row| steps), instead of a top-k over the catalogue.
        order = self.__dict__.get("_order")
        if order is None:
            s = self.item_scores_
            order = self.__dict__["_order"] = np.lexsort((np.arange(len(s)), -s))
        idx = np.full((len(users), k), -1, np.int64)
        val = np.full((len(users), k), -np.inf, np.float32)
        for r in range(len(users)):
            row = blocked.indices[blocked.indptr[r] : blocked.indptr[r + 1]]
            head = order[: k + len(row)]
            head = head[~np.isin(head, row)][:k]
            idx[r, : len(head)] = head
            val[r, : len(head)] = self.item_scores_[head]
        return idx, val

    def _score_similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.broadcast_to(self.item_scores_, (len(items), len(self.item_scores_)))

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"item_scores": self.item_scores_}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.item_scores_ = arrays["item_scores"]
