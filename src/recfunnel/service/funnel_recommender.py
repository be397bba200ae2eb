"""Serving the whole ranking funnel: a :class:`~recfunnel.service.recommender.Recommender`
over a saved :class:`~recfunnel.pipeline.funnel.Funnel` (retrieve → light rank → heavy rank →
re-rank → fallback).

What a request does: the user's stored ``history`` and the request's ``exclude`` are never
recommended; ``context`` becomes the funnel's request attributes (popular-in-context fallback,
rules). A user the funnel does not know, one without training history, and one deleted since
training get the funnel's fallback (popular items, in the request context when configured).
Each stage's seconds go to the ``observe`` callback (the app feeds
``recfunnel_stage_duration_seconds{stage="funnel_<stage>"}``).

The request time is the funnel's training cut-off (``Funnel.now_``): its time-window
features (popularity over the last 30 days, ...) are computed from the training log, so that
is the time they describe.

**Feature logging** ("log and wait"): with a :class:`~recfunnel.pipeline.feature_log.FeatureLogger`,
every request logs the light stage's candidates under the response's request id: the served
slate (``shown=True``) and a hashed sample of the rest, with the funnel's version and the wall
time of the request, so a ranker can later be trained on exactly the features serving computed
(:func:`recfunnel.pipeline.ranker_data.rows_from_log`).

Similar items come from the first item-to-item generator of the funnel's retrieval (not
``pop`` / ``friends_items``). New items are not taken in: the funnel's generators know their
training catalogue only (``accepts_new_items`` is False).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError
from recfunnel.features.base import FeatureBlock
from recfunnel.pipeline.feature_log import FeatureLogger
from recfunnel.pipeline.funnel import STAGES, Funnel, FunnelContext, FunnelTrace
from recfunnel.service.recommender import Scored, StageTimer, _cut, _no_timer

_log = logging.getLogger("recfunnel.service")
#: ``observe(stage, seconds)``: where per-stage timings go.
Observer = Callable[[str, float], None]
#: Retrieval models that do not rank items by similarity to an item.
_NOT_ITEM_TO_ITEM = frozenset({"pop", "friends_items"})
#: Stands in for a deleted user: an id no funnel knows, so the fallback answers.
_UNKNOWN = "\x00deleted"


class FunnelRecommender:
    """A :class:`~recfunnel.service.recommender.Recommender` over a fitted ``funnel``.

    ``max_passes``: funnel passes run at once in this process (default: one per core; a
    server with several worker processes gives each its share of the cores).

    >>> from recfunnel.core.matrix import InteractionMatrix
    >>> from recfunnel.pipeline.funnel_config import FunnelConfig
    >>> cfg = FunnelConfig.from_dict({"funnel": {"n": 2},
    ...     "retrieval": {"generators": [{"model": "pop", "quota": 3}]}})
    >>> m = InteractionMatrix.from_arrays(list("aabbc"), list("xyxzx"))
    >>> rec = FunnelRecommender(Funnel(cfg).fit(m), version="v1")
    >>> rec.recommend(["a", "newcomer"], n=2, history=[[], ["x"]])
    [[('z', 1.0)], [('y', 1.0), ('z', 1.0)]]
    """

    model_name = "funnel"

    def __init__(
        self,
        funnel: Funnel,
        *,
        version: str,
        stage: StageTimer | None = None,
        observe: Observer | None = None,
        feature_log: FeatureLogger | None = None,
        max_passes: int | None = None,
    ) -> None:
        self.funnel = funnel
        self.version = version
        self.stage = stage or _no_timer
        self.observe = observe
        self.feature_log = feature_log
        self._forgotten: set[str] = set()
        self._lock = threading.Lock()
        # At most one funnel pass per core at a time: the server's thread pool would otherwise
        # run many at once, and they would spend the cores on switching the GIL.
        self._slots = threading.BoundedSemaphore(max(1, max_passes or os.cpu_count() or 1))
        gens = [g for g in funnel.config.retrieval if g.model not in _NOT_ITEM_TO_ITEM]
        first = (gens or list(funnel.config.retrieval))[0]
        self._similar = funnel.generators_[first.name]

    @property
    def accepts_new_items(self) -> bool:
        return False

    def attach_graph(self, graph: Any) -> None:
        """Social sources and features of the funnel read the live graph."""
        self.funnel.attach_graph(graph)

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
        given = {"exclude": exclude, "history": history, "request_ids": request_ids}
        for label, seq in given.items():
            if seq is not None and len(seq) != b:
                raise ConfigError(f"{len(seq)} {label} entries for {b} users")
        blocked = [
            {str(i) for i in (exclude[r] if exclude else ())}
            | {str(i) for i in (history[r] if history else ())}
            for r in range(b)
        ]
        forgotten = self._forgotten
        ids = [_UNKNOWN if str(u) in forgotten else str(u) for u in user_ids]
        ctx = FunnelContext(attributes=dict(context or {}), exclude=blocked)
        log = self.feature_log is not None and request_ids is not None
        with self.stage("funnel"), self._slots:
            trace = self.funnel.recommend_traced(ids, n, context=ctx, keep_features=log)
        if self.observe is not None:
            for name in STAGES:
                if trace.seconds[name] > 0:  # stages that did not run (no heavy stage, ...)
                    self.observe(f"funnel_{name}", trace.seconds[name])
        out = [_cut(lst, n, blocked[r]) for r, lst in enumerate(trace.lists["rerank"])]
        if log:
            assert request_ids is not None
            try:
                self._log(trace, out, ids, request_ids)
            except OSError as exc:  # a flush the logger ran itself failed: the rows stay buffered
                _log.warning("feature log flush failed, will retry: %s", exc)
        return out

    def _log(
        self, trace: FunnelTrace, out: list[Scored], ids: list[str], request_ids: Sequence[str]
    ) -> None:
        frame, block = trace.candidates, trace.features
        if frame is None or block is None or trace.light_scores is None:
            return  # no light stage ran (fallback-only requests): nothing was scored
        assert self.feature_log is not None
        req = frame["request"]
        items = frame["item_id"].astype(str)
        now = time.time()
        versions = {"funnel": self.version}
        for r in np.unique(req).tolist():
            rows = np.flatnonzero(req == r)
            served = {i for i, _ in out[r]}
            # Position = rank by the light stage's score (ties: retrieval order).
            scores = trace.light_scores[rows]
            rank = np.empty(len(rows), np.int64)
            rank[np.argsort(-scores, kind="stable")] = np.arange(len(rows))
            self.feature_log.log(
                request_id=str(request_ids[r]),
                user_id=ids[r],
                stage="light",
                item_ids=items[rows].tolist(),
                features=_take(block, rows),
                timestamp=now,
                shown=[i in served for i in items[rows].tolist()],
                scores=scores,
                positions=rank,
                model_versions=versions,
            )

    def similar_items(self, item_ids: Sequence[str], n: int) -> list[Scored]:
        if n <= 0:
            raise ConfigError(f"n must be positive, got {n}")
        with self.stage("similar"):
            lists = self._similar.similar_items(item_ids, n)
        return [_cut(lst, n, set()) for lst in lists]

    def add_items(self, items: Sequence[Mapping[str, Any]]) -> int:
        return 0

    def forget_users(self, user_ids: Iterable[str]) -> None:
        with self._lock:
            # Replace, not mutate: a request reads the set once without a lock.
            self._forgotten = self._forgotten | {str(u) for u in user_ids}

    def __repr__(self) -> str:
        return f"FunnelRecommender({self.funnel!r}, version={self.version!r})"


def _take(block: FeatureBlock, rows: npt.NDArray[np.int64]) -> FeatureBlock:
    return FeatureBlock(
        block.dense[rows], block.sparse[rows], block.dense_names, block.sparse_names,
        block.n_buckets,
    )  # fmt: skip


__all__ = ["FunnelRecommender"]
