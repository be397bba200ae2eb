"""Freshness boost: newer items score higher, the boost halving every ``half_life`` seconds.

For an item created at ``created_at`` and a request at ``now``::

    age   = max(now - created_at, 0)                       (seconds)
    boost = 2 ** (-age / half_life)                         (1 when new, 1/2 after a half-life)
    score' = score * (1 + weight * boost)                   mode="multiply" (default)
    score' = score + weight * boost                         mode="add"

then the slate is re-sorted by ``score'`` (a stable sort: ties keep their order). Items with no
``created_at`` (``NaN``) get ``boost = 0``. The multiplicative form suits non-negative scores
(probabilities); for logits or other signed scores use ``mode="add"``, since multiplying a
negative score by ``1 + weight * boost`` makes it worse.

>>> from recfunnel.core.rerank import RerankContext, Slate
>>> s = Slate.from_lists(["old", "new"], [1.0, 0.8], created_at=[0.0, 3600.0])
>>> r = FreshnessBoost(half_life=3600.0, weight=1.0).rerank(s, RerankContext(now=3600.0))
>>> r.ids(), r.scores.tolist()      # old: 1 * (1 + 0.5) ; new: 0.8 * (1 + 1)
(['new', 'old'], [1.6, 1.5])
"""

from __future__ import annotations

import numpy as np

from recfunnel.core.errors import ConfigError
from recfunnel.core.rerank import RerankContext, Reranker, Slate
from recfunnel.rerank.filters import time_column


class FreshnessBoost(Reranker):
    """Exponential-decay freshness boost (see the module docstring for the formula)."""

    name = "freshness"

    def __init__(
        self,
        half_life: float = 86_400.0,
        weight: float = 0.2,
        mode: str = "multiply",
        attribute: str = "created_at",
    ) -> None:
        self.half_life = half_life
        self.weight = weight
        self.mode = mode
        self.attribute = attribute

    def _check_params(self) -> None:
        if not self.half_life > 0:
            raise ConfigError(f"half_life must be > 0 seconds, got {self.half_life}")
        if self.mode not in ("multiply", "add"):
            raise ConfigError(f"mode must be 'multiply' or 'add', got {self.mode!r}")

    def boost(self, slate: Slate, now: float) -> np.ndarray:
        """``2 ** (-age / half_life)`` per item (0 where the creation time is unknown)."""
        created = time_column(slate, self.attribute)
        if created is None:
            return np.zeros(len(slate))
        age = np.maximum(float(now) - created, 0.0)
        out = np.exp2(-age / float(self.half_life))
        return np.where(np.isnan(out), 0.0, out)

    def rerank(self, slate: Slate, context: RerankContext) -> Slate:
        self._check_params()
        if not len(slate) or self.weight == 0:
            return slate
        b = float(self.weight) * self.boost(slate, context.now)
        scores = slate.scores * (1.0 + b) if self.mode == "multiply" else slate.scores + b
        return slate.with_scores(scores).sorted_by_score()
