"""Filters: drop items the user must not get (already seen, blocked, not live at request time).

Filters only remove rows; the order and scores of what remains are unchanged. They come first in
a chain, so later steps never spend work on items that cannot be shown, and the fallback chain
applies the same filters to whatever it adds.

>>> from recfunnel.core.rerank import RerankContext, Slate
>>> s = Slate.from_lists(["a", "b", "c", "d"], created_at=[0.0, 0.0, 50.0, None],
...                      expires_at=[10.0, None, None, 200.0])
>>> ctx = RerankContext(now=20.0, seen={"b"}, blocked={"x"})
>>> ExpiredFilter().rerank(s, ctx).ids()   # a expired at 10, c is created only at 50
['b', 'd']
>>> SeenFilter().rerank(s, ctx).ids()
['a', 'c', 'd']
>>> BlockedFilter(item_ids=("d",)).rerank(s, ctx).ids()
['a', 'b', 'c']
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from recfunnel.core.rerank import RerankContext, Reranker, Slate


def _drop(slate: Slate, excluded: Collection[str]) -> Slate:
    if not excluded or not len(slate):
        return slate
    keep = np.fromiter((i not in excluded for i in slate.item_ids.tolist()), bool, len(slate))
    return slate if keep.all() else slate.take(keep)


class SeenFilter(Reranker):
    """Removes the items in ``context.seen`` (what the user already interacted with)."""

    name = "seen"

    def rerank(self, slate: Slate, context: RerankContext) -> Slate:
        return _drop(slate, context.seen)


class BlockedFilter(Reranker):
    """Removes ``context.blocked`` (per request) and ``item_ids`` (a standing block list)."""

    name = "blocked"

    def __init__(self, item_ids: Collection[str] = ()) -> None:
        self.item_ids = item_ids

    def rerank(self, slate: Slate, context: RerankContext) -> Slate:
        extra = frozenset(str(i) for i in self.item_ids)
        return _drop(slate, context.blocked | extra if extra else context.blocked)


class ExpiredFilter(Reranker):
    """Removes items not live at ``context.now``: ``expires_at <= now`` or ``created_at > now``.

    The bounds are read from the slate's attribute columns ``created_at`` / ``expires_at``
    (epoch seconds, ``NaN`` = unbounded), as :meth:`recfunnel.core.schema.Item.is_live` defines
    them. A slate without those columns passes unchanged.
    """

    name = "expired"

    def rerank(self, slate: Slate, context: RerankContext) -> Slate:
        if not len(slate):
            return slate
        keep = np.ones(len(slate), bool)
        now = float(context.now)
        expires = time_column(slate, "expires_at")
        if expires is not None:
            keep &= ~(expires <= now)  # NaN compares False: no expiry
        created = time_column(slate, "created_at")
        if created is not None:
            keep &= ~(created > now)
        return slate if keep.all() else slate.take(keep)


def time_column(slate: Slate, column: str) -> npt.NDArray[np.float64] | None:
    """Attribute ``column`` as float64 epoch seconds (``None`` -> ``NaN``), or ``None``."""
    values = slate.attributes.get(column)
    if values is None:
        return None
    if values.dtype == object:
        values = np.array([np.nan if v is None else v for v in values.tolist()], np.float64)
    return np.asarray(values, dtype=np.float64)
