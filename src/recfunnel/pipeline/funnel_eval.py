"""Offline evaluation of a funnel, stage by stage, with the full-ranking protocol.

A funnel returns ranked lists, not scores over the catalogue. For the harness each list is
encoded as a score row: descending finite scores in list order, ``-inf`` for every item not in
the list (the harness never ranks ``-inf`` items). Validation items are passed to the funnel as
per-request exclusions, so its slate is not wasted on items the protocol masks anyway; training
items are the user's history, which the funnel never proposes. One traced pass over the test
users gives the list after every stage, so "retrieval only", "+ light", "+ heavy" and the final
slate are evaluated on the same users and the same run, ready for paired comparisons.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from recfunnel.core.matrix import InteractionMatrix
from recfunnel.data.splits import Split, make_split
from recfunnel.evaluation.harness import DEFAULT_METRICS, EvaluationResult, FullRanking, TieRule
from recfunnel.evaluation.report import EvaluationReport, ModelEntry
from recfunnel.pipeline.funnel import LIST_STAGES, STAGES, Funnel, FunnelContext
from recfunnel.pipeline.funnel_config import FunnelConfig


def funnel_stage_lists(
    funnel: Funnel,
    users: npt.NDArray[np.int64],
    parts: Split,
    n: int,
    *,
    batch_size: int = 512,
) -> tuple[dict[str, dict[int, npt.NDArray[np.int64]]], dict[str, float]]:
    """Each stage's list (item indices of the split) for each user index, and stage seconds."""
    valid = parts.valid.to_csr()
    uindex, iindex = parts.test.users, parts.test.items
    out: dict[str, dict[int, npt.NDArray[np.int64]]] = {s: {} for s in LIST_STAGES}
    seconds = dict.fromkeys(STAGES, 0.0)
    for start in range(0, len(users), batch_size):
        ub = users[start : start + batch_size]
        ids = uindex.decode(ub).tolist()
        exclude = [
            iindex.decode(valid.indices[valid.indptr[u] : valid.indptr[u + 1]]).tolist()
            for u in ub.tolist()
        ]
        trace = funnel.recommend_traced(ids, n, context=FunnelContext(exclude=exclude))
        for stage, lists in trace.lists.items():
            for u, lst in zip(ub.tolist(), lists, strict=True):
                enc = iindex.encode(list(lst.ids[: max(n, 0)]), missing="ignore")
                out[stage][int(u)] = enc[enc >= 0]
        for stage, sec in trace.seconds.items():
            seconds[stage] += sec
    return out, seconds


def list_scorer(
    lists: dict[int, npt.NDArray[np.int64]], n_items: int
) -> Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float32]]:
    """A harness scorer that ranks each user's list first, in order, and nothing else.

    >>> s = list_scorer({0: np.array([2, 0])}, 3)
    >>> s(np.array([0, 1])).tolist()
    [[1.0, -inf, 2.0], [-inf, -inf, -inf]]
    """

    def score(users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        out = np.full((len(users), n_items), -np.inf, np.float32)
        for r, u in enumerate(np.asarray(users).tolist()):
            items = lists.get(int(u))
            if items is not None and len(items):
                out[r, items] = np.arange(len(items), 0, -1, dtype=np.float32)
        return out

    return score


def evaluate_funnel_stages(
    funnel: Funnel,
    parts: Split,
    *,
    ks: Sequence[int] = (10, 20),
    metrics: Sequence[str] = DEFAULT_METRICS,
    ties: TieRule = "index",
    protocol: FullRanking | None = None,
) -> tuple[dict[str, EvaluationResult], dict[str, float]]:
    """Per-user metrics of every stage's list on the test users of ``parts`` (train and valid
    masked, as :func:`recfunnel.pipeline.experiment.run_experiment`), and the seconds each
    stage took over the whole pass."""
    fr = protocol or FullRanking(parts.test, train=parts.train, exclude=[parts.valid])
    n = max(ks)
    started = time.perf_counter()
    lists, seconds = funnel_stage_lists(funnel, fr.users, parts, n)
    pass_seconds = time.perf_counter() - started
    results = {}
    for stage in LIST_STAGES:
        if stage in ("light", "heavy") and getattr(funnel, f"{stage}_", None) is None:
            continue
        res = fr.evaluate(
            list_scorer(lists[stage], fr.n_items),
            ks=ks,
            metrics=metrics,
            ties=ties,
            curves_to=max(max(ks), 20),
        )
        res.seconds = pass_seconds
        results[stage] = res
    return results, seconds


def add_funnel_to_report(
    report: EvaluationReport,
    interactions: InteractionMatrix,
    config: FunnelConfig,
    *,
    split: str,
    seed: int,
    ks: Sequence[int] = (10, 20),
    ties: TieRule = "index",
    log: Callable[[str], None] | None = None,
) -> Funnel:
    """Fit the funnel on the train part of the report's split and add it as model ``funnel``,
    next to ``funnel:<generator>`` for each retrieval model it uses (fitted as in the funnel,
    evaluated by the same protocol). Returns the fitted funnel."""
    parts = make_split(interactions, split, seed=seed)
    fr = FullRanking(parts.test, train=parts.train, exclude=[parts.valid])
    started = time.perf_counter()
    funnel = Funnel(config).fit(parts.train, valid=parts.valid, log=log)
    fit_seconds = time.perf_counter() - started
    for name, gen in funnel.generators_.items():
        res = fr.evaluate(gen, ks=ks, ties=ties, curves_to=max(max(ks), 20))
        params: dict[str, Any] = {"model": gen.name, **gen.get_params()}
        report.models[f"funnel:{name}"] = ModelEntry(res, 0.0, params)
    results, _ = evaluate_funnel_stages(funnel, parts, ks=ks, ties=ties, protocol=fr)
    report.models["funnel"] = ModelEntry(results["rerank"], fit_seconds, config.to_dict())
    return funnel


__all__ = [
    "add_funnel_to_report",
    "evaluate_funnel_stages",
    "funnel_stage_lists",
    "list_scorer",
]
