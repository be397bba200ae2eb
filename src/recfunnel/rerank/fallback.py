"""Fallback chain: fill the slate up to ``n`` from backup sources when the funnel gives too few.

An unknown user gets nothing from personalised generators; a heavily filtered slate may end up
short. :class:`FallbackChain` keeps the slate it is given (truncated to ``n``) and then asks each
source in turn, e.g. :class:`PopularInContext` (most popular items for the request's country)
then :class:`StaticSource` (an editorial or global-popular list), for candidates. Each source's
candidates go through the chain's ``filters`` (by default seen, blocked and expired, the same
steps a funnel starts with), items already in the slate are skipped, and the first ones fill the
free slots. ``Slate.sources`` names, per slot, who filled it: ``primary`` for the slate's own
items (unless they already carry a source) and the source's ``name`` for the others.

>>> from recfunnel.core.rerank import RerankContext, Slate
>>> chain = FallbackChain(sources=[
...     PopularInContext({"FR": ["f1", "f2", "seen-1"]}, key="country"),
...     StaticSource("editorial", ["f1", "e1", "e2", "e3"])], n=5)
>>> ctx = RerankContext(now=0.0, seen={"seen-1"}, attributes={"country": "FR"})
>>> out = chain.rerank(Slate.from_lists(["r1"]), ctx)
>>> for item, source in zip(out.ids(), out.sources):
...     print(item, source)
r1 primary
f1 popular_in_context
f2 popular_in_context
e1 editorial
e2 editorial
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from recfunnel.core.errors import ConfigError
from recfunnel.core.rerank import RerankContext, Reranker, Slate


@runtime_checkable
class SlateSource(Protocol):
    """Something that proposes candidates for a request (best first); ``n`` is a hint."""

    name: str

    def candidates(self, context: RerankContext, n: int) -> Slate: ...


class StaticSource:
    """The same ranked list for every request (an editorial pick, global popularity)."""

    def __init__(
        self,
        name: str,
        item_ids: Sequence[str],
        scores: Sequence[float] | None = None,
        **attributes: Sequence[Any],
    ) -> None:
        self.name = name
        self.item_ids = item_ids
        self.scores = scores
        self.attributes = attributes

    def candidates(self, context: RerankContext, n: int) -> Slate:
        if not hasattr(self, "slate_"):
            self.slate_ = Slate.from_lists(list(self.item_ids), self.scores, **self.attributes)
        return self.slate_

    def __repr__(self) -> str:
        return f"StaticSource({self.name!r}, {len(self.item_ids)} items)"


class PopularInContext:
    """Most popular items for the value of ``context.attributes[key]``, else overall.

    ``table`` maps a context value (``"FR"``) to its ranked item ids, or to a ready
    :class:`Slate` (with ``created_at`` / ``expires_at`` so the expiry filter applies);
    ``default`` is used for unknown values and requests without the key. Build one from an
    interactions table with :meth:`from_interactions`.
    """

    def __init__(
        self,
        table: Mapping[str, Sequence[str] | Slate],
        key: str = "country",
        default: Sequence[str] | Slate = (),
        name: str = "popular_in_context",
    ) -> None:
        self.table = table
        self.key = key
        self.default = default
        self.name = name

    def candidates(self, context: RerankContext, n: int) -> Slate:
        value = context.attributes.get(self.key)
        chosen = self.table.get(str(value), self.default) if value is not None else self.default
        return chosen if isinstance(chosen, Slate) else Slate.from_lists(list(chosen))

    @classmethod
    def from_interactions(
        cls,
        interactions: pd.DataFrame,
        key: str,
        *,
        items: pd.DataFrame | None = None,
        top: int = 100,
        name: str = "popular_in_context",
    ) -> PopularInContext:
        """Count interactions per (context value, item); keep the ``top`` items per value.

        Ties go to the smaller item id. ``items`` (``item_id``, ``created_at``,
        ``expires_at``) adds the time columns, so expired popular items are filtered out.
        """
        if key not in interactions.columns:
            raise ConfigError(f"interactions have no context column {key!r}")

        def ranked(frame: pd.DataFrame) -> Slate:
            counts = frame.groupby("item_id", sort=True).size()
            counts = counts.sort_values(ascending=False, kind="stable").head(top)
            ids = counts.index.astype(str).tolist()
            attrs: dict[str, Any] = {}
            if items is not None:
                meta = items.drop_duplicates("item_id").set_index(items["item_id"].astype(str))
                meta = meta.drop(columns="item_id")
                for col in ("created_at", "expires_at"):
                    if col in meta.columns:
                        attrs[col] = meta[col].reindex(ids).to_numpy(np.float64)
            return Slate.from_lists(ids, counts.to_numpy(np.float64), **attrs)

        table = {str(v): ranked(g) for v, g in interactions.groupby(key, sort=True)}
        return cls(table, key=key, default=ranked(interactions), name=name)


class FallbackChain(Reranker):
    """Fill the slate to ``n`` (default ``context.n``) from ``sources``, in order.

    ``filters``: reranker names (or instances) applied to every source's candidates.
    ``primary``: the source name recorded for the slate's own items.
    """

    name = "fallback"

    def __init__(
        self,
        sources: Sequence[SlateSource] = (),
        n: int | None = None,
        filters: Sequence[str | Reranker] = ("seen", "blocked", "expired"),
        primary: str = "primary",
    ) -> None:
        self.sources = sources
        self.n = n
        self.filters = filters
        self.primary = primary

    def rerank(self, slate: Slate, context: RerankContext) -> Slate:
        n = self.n if self.n is not None else context.n
        if n is None:
            raise ConfigError("FallbackChain needs a slate size: pass n= or set context.n")
        out = slate.head(n)
        if out.sources is None:
            out = out.with_sources(self.primary)
        parts = [out]
        have = set(out.ids())
        missing = n - len(out)
        filters = self._filters()
        for source in self.sources:
            if missing <= 0:
                break
            cand = source.candidates(context, missing)
            for step in filters:
                cand = step.rerank(cand, context)
            fresh = np.fromiter((i not in have for i in cand.item_ids.tolist()), bool, len(cand))
            cand = cand.take(np.flatnonzero(fresh)[:missing]).with_sources(source.name)
            have.update(cand.ids())
            parts.append(cand)
            missing -= len(cand)
        return Slate.concat(parts) if len(parts) > 1 else out

    def _filters(self) -> list[Reranker]:
        # Built once per filter specification: checking a reranker's parameters costs ~0.2 ms,
        # which every request would otherwise pay.
        spec = tuple(self.filters)
        cached = self.__dict__.get("_built")
        if cached is None or cached[0] != spec:
            from recfunnel.rerank import make_reranker

            built = [f if isinstance(f, Reranker) else make_reranker(f) for f in spec]
            cached = self.__dict__["_built"] = (spec, built)
        return cached[1]
