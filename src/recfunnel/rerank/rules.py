"""Business rules: boost or bury items by an attribute, and pin items to positions.

A :class:`Rule` matches an item by one attribute: ``predicate(value)`` when a predicate is
given, otherwise ``value == rule.value``, or ``rule.value in value`` when the item's value is a
collection (a genre set). A matching item's score becomes ``score * factor``
(``mode="multiply"``) or ``score + factor`` (``mode="add"``): a factor above 1 (above 0) boosts,
below 1 (below 0) buries. Rules apply in order, then the slate is re-sorted by score (stable).
Multiplying suits non-negative scores; for signed scores use ``add``.

Pins then move items to fixed 0-based positions (``{"promo-1": 0}``), in ascending position
order, each inserted at ``min(position, current length)``; the other items keep their order.
A pinned item that is not in the slate is not added: it may have been filtered (seen, blocked,
expired), and a pin must not bring it back.

>>> from recfunnel.core.rerank import RerankContext, Slate
>>> s = Slate.from_lists(["a", "b", "c", "d"], [4.0, 3.0, 2.0, 1.0],
...                      genres=[{"drama"}, {"news"}, {"drama", "kids"}, {"kids"}])
>>> rules = BusinessRules(rules=[Rule("genres", "kids", factor=3.0),
...                              Rule("genres", "news", factor=0.1)], pins={"b": 0})
>>> rules.rerank(s, RerankContext(now=0)).ids()   # c: 6, a: 4, d: 3, b: 0.3, then b pinned
['b', 'c', 'a', 'd']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recfunnel.core.errors import ConfigError
from recfunnel.core.rerank import RerankContext, Reranker, Slate


@dataclass(frozen=True)
class Rule:
    """Boost (``factor`` > 1, or > 0 when adding) or bury items whose ``attribute`` matches."""

    attribute: str
    value: Any = None
    factor: float = 1.0
    mode: str = "multiply"
    predicate: Callable[[Any], bool] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("multiply", "add"):
            raise ConfigError(f"rule mode must be 'multiply' or 'add', got {self.mode!r}")

    def matches(self, values: Sequence[Any]) -> np.ndarray:
        """A boolean mask: which of ``values`` (one per item) this rule applies to."""
        return np.fromiter((self._match(v) for v in values), bool, len(values))

    def _match(self, v: Any) -> bool:
        if self.predicate is not None:
            return bool(self.predicate(v))
        if isinstance(v, set | frozenset | list | tuple):
            return self.value in v
        return bool(v == self.value)


class BusinessRules(Reranker):
    """Attribute rules (boost / bury) followed by pins; see the module docstring."""

    name = "rules"

    def __init__(self, rules: Sequence[Rule] = (), pins: Mapping[str, int] | None = None) -> None:
        self.rules = rules
        self.pins = pins

    def rerank(self, slate: Slate, context: RerankContext) -> Slate:
        if not len(slate):
            return slate
        out = slate
        if self.rules:
            scores = slate.scores.copy()
            for rule in self.rules:
                column = slate.attributes.get(rule.attribute)
                if column is None:
                    continue  # the attribute is unknown for these items: nothing matches
                hit = rule.matches(column.tolist())
                if rule.mode == "multiply":
                    scores[hit] *= float(rule.factor)
                else:
                    scores[hit] += float(rule.factor)
            out = slate.with_scores(scores).sorted_by_score()
        return self._pin(out) if self.pins else out

    def _pin(self, slate: Slate) -> Slate:
        pins = dict(self.pins or {})
        if any(int(p) < 0 for p in pins.values()):
            raise ConfigError(f"pin positions must be >= 0, got {pins}")
        ids = slate.ids()
        where = {item: i for i, item in enumerate(ids)}
        pinned = sorted(
            ((int(pos), where[item]) for item, pos in pins.items() if item in where),
        )
        if not pinned:
            return slate
        moved = {row for _, row in pinned}
        order = [i for i in range(len(ids)) if i not in moved]
        for pos, row in pinned:
            order.insert(min(pos, len(order)), row)
        return slate.take(np.asarray(order, np.intp))
