"""The ``Reranker`` contract: the last stage of the funnel, turning a ranked list into a slate.

A :class:`Slate` is one request's candidates in ranked order: external item ids, the scores the
last step ranked by, and optionally per-item attribute columns (``created_at``, ``expires_at``,
``genres``, ...) and embeddings (``n x d``). Its order *is* the ranking; scores need not be
sorted (a pinned item keeps its score). Item ids are unique within a slate. What a reranker
needs to know about the request (the time, the user's seen items, blocked items, the slate size
wanted, request attributes such as country) comes in a :class:`RerankContext`.

A reranker implements one method, ``rerank(slate, context) -> slate``, and must not put into
its output an id that was not in its input, except for steps whose job is to add items (the
fallback chain), which must apply the same filters to what they add. Batches are sequences of
slates (``rerank_batch``): re-ranking steps such as MMR are sequential within one request, so a
request is the natural unit. Hyper-parameters are the ``__init__`` keyword arguments, stored
unchanged (scikit-learn conventions).

>>> s = Slate.from_lists(["a", "b", "c"], [0.2, 0.9, 0.5], genres=[{"x"}, {"y"}, {"x"}])
>>> s.sorted_by_score().ids()
['b', 'c', 'a']
>>> s.take([2, 0]).attributes["genres"].tolist()
[{'x'}, {'x'}]
>>> class Reverse(Reranker):
...     name = "reverse"
...     def rerank(self, slate, context):
...         return slate.take(np.arange(len(slate))[::-1])
>>> Reverse().rerank(s, RerankContext(now=0.0)).ids()
['c', 'b', 'a']
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError
from recfunnel.core.params import Params

FloatArray = npt.NDArray[np.float64]
ObjectArray = npt.NDArray[np.object_]


def _object_array(values: Any) -> ObjectArray:
    """A 1-D object array holding ``values`` as they are (sets stay sets, strings stay str)."""
    if isinstance(values, np.ndarray) and values.dtype == object and values.ndim == 1:
        return values
    seq = list(values)
    out = np.empty(len(seq), dtype=object)
    out[:] = seq
    return out


def _column(values: Any) -> npt.NDArray[Any]:
    """An attribute column: numeric arrays keep their dtype, anything else becomes object."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values
    seq = list(values)

    def number(v: Any) -> bool:
        return isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)

    if any(number(v) for v in seq) and all(v is None or number(v) for v in seq):
        return np.asarray([np.nan if v is None else v for v in seq], dtype=np.float64)
    return _object_array(seq)


@dataclass(frozen=True, eq=False)
class Slate:
    """One request's candidates, best first.

    ``item_ids`` (object array of ``str``, length ``n``, unique), ``scores`` (float64, ``n``),
    ``embeddings`` (float32 ``n x d`` or ``None``), ``attributes`` (name -> array of length
    ``n``; missing times are ``NaN``), ``sources`` (object array of ``str`` naming where each
    item came from, or ``None``; the fallback chain fills it). Construction validates shapes and
    uniqueness; do not mutate the arrays afterwards.
    """

    item_ids: ObjectArray
    scores: FloatArray
    embeddings: npt.NDArray[np.float32] | None = None
    attributes: Mapping[str, npt.NDArray[Any]] = field(default_factory=dict)
    sources: ObjectArray | None = None

    def __post_init__(self) -> None:
        ids = _object_array(self.item_ids)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        n = len(ids)
        if scores.shape != (n,):
            raise ConfigError(f"slate has {n} item ids but {scores.shape[0]} scores")
        if len(set(ids.tolist())) != n:
            values, counts = np.unique(ids.astype(str), return_counts=True)
            dup = values[counts > 1][0]
            raise ConfigError(f"slate item ids must be unique; {dup!r} appears more than once")
        object.__setattr__(self, "item_ids", ids)
        object.__setattr__(self, "scores", scores)
        if self.embeddings is not None:
            emb = np.asarray(self.embeddings, dtype=np.float32)
            if emb.ndim != 2 or emb.shape[0] != n:
                raise ConfigError(f"embeddings must be {n} x d; got shape {emb.shape}")
            object.__setattr__(self, "embeddings", emb)
        attrs = {}
        for key, values in self.attributes.items():
            col = _column(values)
            if col.shape != (n,):
                raise ConfigError(f"attribute {key!r} has shape {col.shape}; expected ({n},)")
            attrs[str(key)] = col
        object.__setattr__(self, "attributes", attrs)
        if self.sources is not None:
            src = _object_array(self.sources)
            if src.shape != (n,):
                raise ConfigError(f"sources has {len(src)} entries for {n} items")
            object.__setattr__(self, "sources", src)

    @classmethod
    def from_lists(
        cls,
        item_ids: Sequence[str],
        scores: Sequence[float] | npt.ArrayLike | None = None,
        *,
        embeddings: npt.ArrayLike | None = None,
        **attributes: Sequence[Any] | npt.ArrayLike,
    ) -> Slate:
        """A slate from plain lists; scores default to ``n, n-1, ..., 1`` (the given order)."""
        n = len(item_ids)
        s = np.arange(n, 0, -1, dtype=np.float64) if scores is None else scores
        emb = None if embeddings is None else np.asarray(embeddings, dtype=np.float32)
        return cls(
            _object_array([str(i) for i in item_ids]),
            np.asarray(s, dtype=np.float64),
            emb,
            {k: _column(v) for k, v in attributes.items()},
        )

    @classmethod
    def empty(cls) -> Slate:
        """A slate with no items."""
        return cls(_object_array([]), np.zeros(0, np.float64))

    def __len__(self) -> int:
        return len(self.item_ids)

    def ids(self) -> list[str]:
        """The item ids as a list, best first."""
        return [str(i) for i in self.item_ids.tolist()]

    def take(self, rows: npt.ArrayLike) -> Slate:
        """The given rows (indices in the new order, or a boolean mask), all columns alike."""
        idx = np.asarray(rows)
        if idx.dtype != bool:
            idx = idx.astype(np.intp, copy=False).reshape(-1)
        return Slate(
            self.item_ids[idx],
            self.scores[idx],
            None if self.embeddings is None else self.embeddings[idx],
            {k: v[idx] for k, v in self.attributes.items()},
            None if self.sources is None else self.sources[idx],
        )

    def with_scores(self, scores: npt.ArrayLike) -> Slate:
        """The same items in the same order with new scores."""
        return Slate(
            self.item_ids, np.asarray(scores), self.embeddings, self.attributes, self.sources
        )

    def with_sources(self, sources: str | Sequence[str]) -> Slate:
        """The same slate with every item's source set (one name for all, or one per item)."""
        src = [sources] * len(self) if isinstance(sources, str) else list(sources)
        return Slate(
            self.item_ids, self.scores, self.embeddings, self.attributes, _object_array(src)
        )

    def sorted_by_score(self) -> Slate:
        """Rows by descending score; ties keep their current order (a stable sort)."""
        return self.take(np.argsort(-self.scores, kind="stable"))

    def head(self, n: int) -> Slate:
        """The first ``n`` items."""
        return self if n >= len(self) else self.take(np.arange(max(n, 0)))

    @classmethod
    def concat(cls, slates: Sequence[Slate]) -> Slate:
        """Slates one after the other (ids must stay unique).

        An attribute missing from some parts is filled with ``NaN`` (numeric columns) or
        ``None``; embeddings are kept when every non-empty part has them with one width;
        sources are kept when any part has them (``""`` where unknown).
        """
        parts = [s for s in slates if len(s)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        keys = list(dict.fromkeys(k for s in parts for k in s.attributes))
        attrs: dict[str, npt.NDArray[Any]] = {}
        for key in keys:
            cols = [s.attributes.get(key) for s in parts]
            numeric = all(c is None or c.dtype.kind in "fiu" for c in cols)
            filled = [
                c if c is not None else _missing(len(s), numeric)
                for c, s in zip(cols, parts, strict=True)
            ]
            attrs[key] = (
                np.concatenate(filled).astype(np.float64)
                if numeric
                else np.concatenate([_object_array(c) for c in filled])
            )
        embs = [s.embeddings for s in parts]
        emb = None
        if (
            all(e is not None for e in embs)
            and len({e.shape[1] for e in embs if e is not None}) == 1
        ):
            emb = np.concatenate([e for e in embs if e is not None])
        sources = None
        if any(s.sources is not None for s in parts):
            sources = np.concatenate(
                [
                    s.sources if s.sources is not None else _object_array([""] * len(s))
                    for s in parts
                ]
            )
        return cls(
            np.concatenate([s.item_ids for s in parts]),
            np.concatenate([s.scores for s in parts]),
            emb,
            attrs,
            sources,
        )


def _missing(n: int, numeric: bool) -> npt.NDArray[Any]:
    return np.full(n, np.nan) if numeric else _object_array([None] * n)


@dataclass(frozen=True)
class RerankContext:
    """What a reranker knows about the request.

    ``now``: epoch seconds of the request. ``seen`` / ``blocked``: item ids the user has
    already seen / must never be shown. ``n``: the slate size wanted (``None``: keep what the
    steps give). ``attributes``: request context (``{"country": "FR", "device": "tv"}``).
    """

    now: float
    request_id: str = ""
    user_id: str | None = None
    seen: frozenset[str] = frozenset()
    blocked: frozenset[str] = frozenset()
    n: int | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seen", frozenset(self.seen))
        object.__setattr__(self, "blocked", frozenset(self.blocked))
        if self.n is not None and self.n < 0:
            raise ConfigError(f"slate size n must be >= 0, got {self.n}")


class Reranker(Params, ABC):
    """Base class of every re-ranking step.

    The only abstract method is :meth:`rerank`; hyper-parameters are the ``__init__`` keyword
    arguments stored unchanged, so ``type(r)(**r.get_params())`` is a copy.
    """

    #: Registry name, e.g. ``"mmr"``.
    name: ClassVar[str]

    @abstractmethod
    def rerank(self, slate: Slate, context: RerankContext) -> Slate:
        """The re-ranked slate of one request."""

    def rerank_batch(
        self, slates: Sequence[Slate], contexts: Sequence[RerankContext]
    ) -> list[Slate]:
        """One re-ranked slate per request."""
        if len(slates) != len(contexts):
            raise ConfigError(f"{len(slates)} slates but {len(contexts)} contexts")
        return [self.rerank(s, c) for s, c in zip(slates, contexts, strict=True)]
