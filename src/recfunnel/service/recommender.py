"""The seam between the HTTP service and whatever produces ranked lists.

The service talks to a :class:`Recommender` only: :class:`RetrievalRecommender` serves one
saved candidate generator (optionally behind a vector index) with a popularity fallback for
users the model does not know; :class:`~recfunnel.service.funnel_recommender.FunnelRecommender`
serves a saved ranking funnel (retrieve → rank → rerank). The registry picks by artefact.

What the retrieval recommender does, per user:

* **known to the model** (and not deleted since): the generator's top ``n``, leaving out the
  items the model saw for them, their stored ``history`` and ``exclude``. With a vector
  index (an :class:`~recfunnel.core.generator.EmbeddingModel` published with ``index=``),
  the user vector is searched in the index instead of scoring every item;
* **unknown** (a new user, or one deleted since training): a two-tower model embeds them from
  their stored ``history`` when they have one (cold start without retraining); otherwise the
  fallback, items by training popularity, minus ``history`` and ``exclude``.

New items: a two-tower model trained with item features embeds items posted with attributes
and adds them to its catalogue (and to the index), so they are recommendable at once. Other
models know only their training items: a new item reaches users after the next training
that sees interactions with it (until then it is in neither the model nor the popularity
fallback).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError
from recfunnel.core.generator import CandidateGenerator, EmbeddingModel, ScoredList

if TYPE_CHECKING:
    from recfunnel.core.index import VectorIndex

#: One ranked list: ``(item_id, score)`` pairs, best first.
Scored = list[tuple[str, float]]
#: ``stage("retrieve")`` times a block (``ServiceMetrics.stage``); the default does nothing.
StageTimer = Callable[[str], AbstractContextManager[Any]]


def _no_timer(name: str) -> AbstractContextManager[None]:
    return nullcontext()


@runtime_checkable
class Recommender(Protocol):
    """What the service needs from a recommender. Batch-first: one user is a batch of one.

    Implementations must be safe to call from several threads at once, and must not change
    what ``version`` names after construction (the service swaps whole recommenders).
    """

    #: The registry version that produced the answers.
    version: str
    #: A short name of the model kind, for metrics (``als``, ``two_tower``, ``funnel``).
    model_name: str

    @property
    def accepts_new_items(self) -> bool:
        """Whether :meth:`add_items` can make new items recommendable."""
        ...

    def recommend(
        self,
        user_ids: Sequence[str],
        n: int,
        *,
        context: Mapping[str, str] | None = None,
        exclude: Sequence[Collection[str]] | None = None,
        history: Sequence[Sequence[str]] | None = None,
        request_ids: Sequence[str] | None = None,
    ) -> list[Scored]:
        """Top ``n`` items per user. ``exclude[r]``: items never to return for row r;
        ``history[r]``: the user's recent stored items (excluded too, and usable to embed
        a user the model does not know); ``context``: request context (device, …);
        ``request_ids[r]``: the id the response carries (for feature logging).
        Unknown users get a fallback, never an error."""
        ...

    def similar_items(self, item_ids: Sequence[str], n: int) -> list[Scored]:
        """The ``n`` items most like each item; an unknown item raises ``UnknownIdError``."""
        ...

    def add_items(self, items: Sequence[Mapping[str, Any]]) -> int:
        """Make new items (``item_id``, ``attributes``) recommendable if the model can;
        returns how many it took in (0 when it cannot)."""
        ...

    def forget_users(self, user_ids: Iterable[str]) -> None:
        """Stop using anything the recommender holds about these users (deletion)."""
        ...


class RetrievalRecommender:
    """A :class:`Recommender` over one fitted candidate generator.

    ``index`` (optional) holds the generator's item vectors under their item ids; it must
    come from an :class:`EmbeddingModel`. ``stage`` times ``retrieve`` / ``fallback`` /
    ``similar``.

    >>> from recfunnel.candidates import make_generator
    >>> from recfunnel.core.matrix import InteractionMatrix
    >>> m = InteractionMatrix.from_arrays(list("aabbc"), list("xyxzx"))
    >>> rec = RetrievalRecommender(make_generator("pop").fit(m), version="v1")
    >>> rec.recommend(["c", "newcomer"], n=2, history=[[], ["x"]])
    [[('y', 1.0), ('z', 1.0)], [('y', 1.0), ('z', 1.0)]]
    """

    def __init__(
        self,
        generator: CandidateGenerator,
        *,
        version: str,
        index: VectorIndex | None = None,
        stage: StageTimer | None = None,
    ) -> None:
        if index is not None and not isinstance(generator, EmbeddingModel):
            raise ConfigError(
                f"a vector index needs an embedding model; {generator.name} has no vectors"
            )
        self.generator = generator
        self.version = version
        self.model_name = generator.name
        self.index = index
        self.stage = stage or _no_timer
        self._forgotten: set[str] = set()
        self._lock = threading.Lock()  # guards the two-tower catalogue while items are added
        counts = np.asarray(generator.seen_.sum(axis=0), dtype=np.float64).ravel()
        # Most popular first; ties by item index, so the order is deterministic.
        self._popular = np.lexsort((np.arange(len(counts)), -counts))
        self._popular_scores = counts[self._popular]
        self._item_ids = generator.items_.ids

    @property
    def accepts_new_items(self) -> bool:
        """A two-tower model trained with item attributes takes new items: its item tower
        embeds them from their attributes (without attributes it has nothing to go on)."""
        encoder = getattr(self.generator, "item_encoder_", None)
        return hasattr(self.generator, "add_items") and bool(getattr(encoder, "fields", ()))

    # ---- recommend ----------------------------------------------------------------------------
    def recommend(
        self,
        user_ids: Sequence[str],
        n: int,
        *,
        context: Mapping[str, str] | None = None,
        exclude: Sequence[Collection[str]] | None = None,
        history: Sequence[Sequence[str]] | None = None,
        request_ids: Sequence[str] | None = None,
    ) -> list[Scored]:
        if n <= 0:
            raise ConfigError(f"n must be positive, got {n}")
        b = len(user_ids)
        excl = [set(exclude[r]) if exclude else set() for r in range(b)]
        hist = [list(history[r]) if history else [] for r in range(b)]
        for r in range(b):
            excl[r].update(hist[r])
        users = self.generator.users_
        out: list[Scored] = [[] for _ in range(b)]
        known = [r for r, u in enumerate(user_ids) if u in users and u not in self._forgotten]
        if known:
            with self.stage("retrieve"):
                lists = self._known([user_ids[r] for r in known], n, [excl[r] for r in known])
            for r, lst in zip(known, lists, strict=True):
                out[r] = lst
        unknown = sorted(set(range(b)) - set(known))
        if unknown:
            with self.stage("fallback"):
                for r in unknown:
                    out[r] = self._unknown(n, excl[r], hist[r])
        return out

    def _known(self, user_ids: list[str], n: int, excl: list[set[str]]) -> list[Scored]:
        g = self.generator
        if self.accepts_new_items and len(getattr(g, "extra_item_ids_", ())):
            with self._lock:
                lists = g.recommend_catalogue(user_ids, n + max(map(len, excl)))  # type: ignore[attr-defined]
            return [_cut(lst, n, e) for lst, e in zip(lists, excl, strict=True)]
        if self.index is not None:
            assert isinstance(g, EmbeddingModel)
            idx = g.users_.encode(user_ids)
            seen = g.seen_
            rows = [
                set(self._item_ids[seen.indices[seen.indptr[u] : seen.indptr[u + 1]]].tolist()) | e
                for u, e in zip(idx.tolist(), excl, strict=True)
            ]
            ids, scores = self.index.search(g.user_vectors(idx), n, exclude=rows)
            return [_pairs(i, s) for i, s in zip(ids, scores, strict=True)]
        lists = g.recommend(user_ids, n + max(map(len, excl)), exclude_seen=True)
        return [_cut(lst, n, e) for lst, e in zip(lists, excl, strict=True)]

    def _unknown(self, n: int, excl: set[str], history: list[str]) -> Scored:
        g = self.generator
        if history and getattr(g, "history", False) and hasattr(g, "recommend_new_users"):
            with self._lock:
                lists = g.recommend_new_users(None, n + len(excl), history=[history])
            if lists and len(lists[0]):
                return _cut(lists[0], n, excl)
        return self._popular_top(n, excl)

    def _popular_top(self, n: int, excl: set[str]) -> Scored:
        out: Scored = []
        # Walk the popularity order; at most n + |excl| steps.
        for pos in range(min(len(self._popular), n + len(excl))):
            item = str(self._item_ids[self._popular[pos]])
            if item not in excl:
                out.append((item, float(self._popular_scores[pos])))
                if len(out) == n:
                    break
        return out

    # ---- similar ------------------------------------------------------------------------------
    def similar_items(self, item_ids: Sequence[str], n: int) -> list[Scored]:
        if n <= 0:
            raise ConfigError(f"n must be positive, got {n}")
        g = self.generator
        with self.stage("similar"):
            if self.accepts_new_items:
                with self._lock:
                    lists = g.similar_catalogue(item_ids, n)  # type: ignore[attr-defined]
            else:
                lists = g.similar_items(item_ids, n)
        return [_cut(lst, n, set()) for lst in lists]

    # ---- updates ------------------------------------------------------------------------------
    def add_items(self, items: Sequence[Mapping[str, Any]]) -> int:
        if not self.accepts_new_items:
            return 0
        import pandas as pd

        g = self.generator
        rows = [
            {**(it.get("attributes") or {}), "item_id": str(it["item_id"])}
            for it in items
            if it.get("attributes") and str(it["item_id"]) not in g.items_
        ]
        if not rows:
            return 0
        frame = pd.DataFrame.from_records(list({r["item_id"]: r for r in rows}.values()))
        with self._lock:
            g.add_items(frame)  # type: ignore[attr-defined]
        return len(frame)

    def forget_users(self, user_ids: Iterable[str]) -> None:
        self._forgotten.update(user_ids)

    def __repr__(self) -> str:
        index = f", index={self.index.kind}" if self.index is not None else ""
        return f"RetrievalRecommender({self.model_name}, version={self.version!r}{index})"


def _cut(lst: ScoredList, n: int, excl: set[str]) -> Scored:
    out: Scored = []
    for item, score in zip(lst.ids, lst.scores, strict=True):
        if item not in excl and math.isfinite(score):
            out.append((item, score))
            if len(out) == n:
                break
    return out


def _pairs(ids: npt.NDArray[np.object_], scores: npt.NDArray[np.float32]) -> Scored:
    return [
        (str(i), float(s))
        for i, s in zip(ids.tolist(), scores.tolist(), strict=True)
        if i is not None and math.isfinite(s)
    ]
