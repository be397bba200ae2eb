"""Popularity: every user gets the items with the most training interactions."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

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

    def _score_similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.broadcast_to(self.item_scores_, (len(items), len(self.item_scores_)))

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"item_scores": self.item_scores_}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.item_scores_ = arrays["item_scores"]
