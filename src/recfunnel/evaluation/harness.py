"""Full-ranking evaluation: score every item for every test user, mask what the user has
already seen, rank deterministically, and compute per-user metrics.

The protocol is RecBole's ``mode: full``: a user's training items (and, when testing, their
validation items, passed in ``exclude``) can never be recommended; users with no test item are
skipped; a metric's value is the plain mean over the remaining users.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recfunnel.core.errors import ConfigError
from recfunnel.core.generator import CandidateGenerator
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.core.topk import topk
from recfunnel.evaluation.bootstrap import bootstrap_ci
from recfunnel.evaluation.metrics import MetricOptions, parse_metric, ranking_metrics

Scorer = CandidateGenerator | Callable[[npt.NDArray[np.int64]], npt.NDArray[np.floating]]
TieRule = Literal["index", "trec", "optimistic", "pessimistic"]

DEFAULT_METRICS = ("ndcg", "recall", "mrr", "hit", "precision", "map")
CURVE_METRICS = ("ndcg", "recall", "precision", "hit")
#: Score-matrix cells per batch (float32): 16M cells = 64 MB.
BATCH_CELLS = 1 << 24


@dataclass
class EvaluationResult:
    """Per-user metric values of one model on one target set."""

    users: npt.NDArray[np.int64]
    per_user: dict[str, npt.NDArray[np.float64]]
    coverage: dict[str, float]
    curves: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    seconds: float = 0.0

    def mean(self) -> dict[str, float]:
        """Plain mean over evaluated users of each metric."""
        return {k: float(v.mean()) if len(v) else float("nan") for k, v in self.per_user.items()}

    def ci95(self, *, n_resamples: int = 1000, seed: int = 0) -> dict[str, tuple[float, float]]:
        """Percentile bootstrap 95% interval of each mean, resampling users."""
        return {
            k: bootstrap_ci(v, n_resamples=n_resamples, seed=seed) for k, v in self.per_user.items()
        }


def _as_scorer(model: Scorer) -> Callable[[npt.NDArray[np.int64]], npt.NDArray[np.floating]]:
    if isinstance(model, CandidateGenerator):
        return model.score_users
    if callable(model):
        return model
    raise ConfigError(f"cannot evaluate {type(model).__name__}: need a generator or a callable")


def _tie_priority(rule: str, test: InteractionMatrix) -> npt.NDArray[np.int64] | None:
    if rule == "index":
        return None
    if rule == "trec":
        # trec_eval: score descending, then document id descending (string comparison).
        return np.argsort(test.items.ids.astype(str))[::-1].astype(np.int64)
    raise ConfigError(f"unknown tie rule {rule!r}: use index, trec, optimistic or pessimistic")


def _rank_relevance_aware(
    scores: npt.NDArray[np.float32], rel: npt.NDArray[np.float32], k: int, rule: str
) -> npt.NDArray[np.int64]:
    """Top-k where ties put relevant items last (pessimistic) or first (optimistic)."""
    b, n = scores.shape
    relkey = (rel > 0).astype(np.int8)
    if rule == "optimistic":
        relkey = 1 - relkey
    cols = np.broadcast_to(np.arange(n), (b, n))
    order = np.lexsort((cols, relkey, -scores.astype(np.float64)), axis=1)[:, :k]
    finite = np.isfinite(np.take_along_axis(scores, order, axis=1))
    return np.where(finite, order, -1).astype(np.int64)


def evaluate(
    model: Scorer,
    *,
    test: InteractionMatrix,
    train: InteractionMatrix | None = None,
    exclude: Sequence[InteractionMatrix] = (),
    ks: Sequence[int] = (10, 20),
    metrics: Sequence[str] = DEFAULT_METRICS,
    options: MetricOptions | None = None,
    ties: TieRule = "index",
    relevance: Literal["binary", "value"] = "binary",
    batch_size: int | None = None,
    curves_to: int = 0,
    progress: bool = False,
) -> EvaluationResult:
    """Full-ranking evaluation of ``model`` on the users of ``test``.

    ``train`` and every matrix in ``exclude`` are masked out of each user's ranking. ``metrics``
    are base names (``"ndcg"``) evaluated at every k in ``ks``, or full names (``"ndcg@5"``).
    ``ties`` chooses how equal scores are ordered: ``"index"`` (lower item index first; the
    default), ``"trec"`` (item id descending, as trec_eval), ``"pessimistic"`` / ``"optimistic"``
    (relevant items last / first among ties: bounds on the effect of ties). ``relevance`` is
    ``"binary"`` (every test interaction relevant) or ``"value"`` (graded by the test value).
    ``curves_to`` > 0 also records mean ndcg/recall/precision/hit at k = 1..curves_to.

    >>> train = InteractionMatrix.from_arrays(["a", "b"], ["x", "y"])
    >>> test = InteractionMatrix.from_arrays(["a", "b"], ["y", "x"], users=train.users,
    ...                                      items=train.items)
    >>> scores = lambda u: np.tile(np.array([[0.0, 1.0]], np.float32), (len(u), 1))
    >>> evaluate(scores, test=test, train=train, ks=[1], metrics=["hit"]).mean()
    {'hit@1': 1.0}
    """
    started = time.perf_counter()
    opts = options or MetricOptions()
    if not ks or min(ks) <= 0:
        raise ConfigError(f"ks must be positive integers, got {list(ks)}")
    names: list[str] = []
    for m in metrics:
        if "@" in m:
            parse_metric(m)
            names.append(m.lower())
        else:
            for k in ks:
                names.append(f"{m.lower()}@{k}")
    for nm in names:
        parse_metric(nm)
    kmax = max([parse_metric(n)[1] for n in names] + [curves_to, max(ks)])
    parts = [test] + ([train] if train is not None else []) + list(exclude)
    for part in parts[1:]:
        if part.items != test.items or part.users != test.users:
            raise ConfigError("train/exclude/test must share the same user and item indexes")
    n_items = test.n_items
    score = _as_scorer(model)
    priority = _tie_priority(ties, test) if ties in ("index", "trec") else None

    target = test.to_csr(binary=relevance == "binary")
    if relevance == "value":
        target.data = np.maximum(target.data, 0)
    masked: sp.csr_matrix = sp.csr_matrix(target.shape, dtype=np.float32)
    for part in parts[1:]:
        masked = masked + part.to_csr(binary=True)
    masked = masked.tocsr()
    n_rel_all = np.diff((target > 0).astype(np.float32).tocsr().indptr)
    users = np.flatnonzero(n_rel_all > 0).astype(np.int64)

    bsz = batch_size or max(1, BATCH_CELLS // max(n_items, 1))
    chunks: dict[str, list[npt.NDArray[np.float64]]] = {n: [] for n in names}
    curve_names = [f"{m}@{k}" for m in CURVE_METRICS for k in range(1, curves_to + 1)]
    curve_sums = dict.fromkeys(curve_names, 0.0)
    covered = {k: np.zeros(n_items, dtype=bool) for k in ks}
    batches = range(0, len(users), bsz)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="evaluating", unit="batch", leave=False)
    for start in batches:
        ub = users[start : start + bsz]
        s = np.array(score(ub), dtype=np.float32, copy=True)
        if s.shape != (len(ub), n_items):
            raise ConfigError(
                f"scorer returned shape {s.shape}, expected {(len(ub), n_items)} (users x items)"
            )
        if np.isnan(s).any():
            raise ConfigError("scorer returned NaN scores")
        m = masked[ub]
        s[np.repeat(np.arange(len(ub)), np.diff(m.indptr)), m.indices] = -np.inf
        rel_dense = target[ub].toarray()
        if ties in ("optimistic", "pessimistic"):
            idx = _rank_relevance_aware(s, rel_dense, kmax, ties)
        else:
            idx, _ = topk(s, kmax, tie_priority=priority)
        valid = idx >= 0
        ranked = np.where(valid, np.take_along_axis(rel_dense, np.maximum(idx, 0), axis=1), 0.0)
        n_rel = n_rel_all[ub]
        ideal = None
        if relevance == "value":
            ideal = -np.sort(-rel_dense, axis=1)[:, :kmax]
        kw: dict[str, Any] = {
            "ideal_rel": ideal,
            "n_returned": valid.sum(axis=1),
            "options": opts,
        }
        vals = ranking_metrics(ranked, n_rel, names, **kw)
        for n in names:
            chunks[n].append(vals[n])
        if curve_names:
            for n, v in ranking_metrics(ranked, n_rel, curve_names, **kw).items():
                curve_sums[n] += float(v.sum())
        for k in ks:
            top = idx[:, :k]
            covered[k][top[top >= 0]] = True
    per_user = {
        n: np.concatenate(chunks[n]) if chunks[n] else np.zeros(0, np.float64) for n in names
    }
    curves = {
        m: np.array([curve_sums[f"{m}@{k}"] / max(len(users), 1) for k in range(1, curves_to + 1)])
        for m in CURVE_METRICS
        if curves_to
    }
    return EvaluationResult(
        users=users,
        per_user=per_user,
        coverage={f"coverage@{k}": float(c.mean()) if n_items else 0.0 for k, c in covered.items()},
        curves=curves,
        seconds=time.perf_counter() - started,
    )
