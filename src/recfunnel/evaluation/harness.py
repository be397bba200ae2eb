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
from recfunnel.core.friends import FriendGenerator
from recfunnel.core.generator import CandidateGenerator
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.evaluation._kernels import masked_topk, warm_up
from recfunnel.evaluation.bootstrap import bootstrap_ci
from recfunnel.evaluation.metrics import MetricOptions, parse_metric, ranking_metrics

Scorer = (
    CandidateGenerator
    | FriendGenerator
    | Callable[[npt.NDArray[np.int64]], npt.NDArray[np.floating]]
)
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
    if isinstance(model, CandidateGenerator | FriendGenerator):
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


def _ideal_grades(rows: sp.csr_matrix, k: int) -> npt.NDArray[np.float64]:
    """Each row's k largest stored values, descending, zero-padded (B x k)."""
    counts = np.diff(rows.indptr)
    row_of = np.repeat(np.arange(rows.shape[0]), counts)
    order = np.lexsort((-rows.data, row_of))
    rank = np.arange(len(order)) - np.repeat(rows.indptr[:-1], counts)
    out = np.zeros((rows.shape[0], k))
    keep = rank < k
    out[row_of[keep], rank[keep]] = rows.data[order][keep]
    return out


class FullRanking:
    """A fixed evaluation protocol: target users and items, what is masked, how relevance is
    graded. Build it once per split and evaluate many models (or many epochs) with it; the
    masks and lookups are prepared here, not on every call.

    ``train`` and every matrix in ``exclude`` are masked out of each user's ranking; users
    without a target item are skipped. ``relevance`` is ``"binary"`` (every target interaction
    is relevant) or ``"value"`` (graded by its value).
    """

    def __init__(
        self,
        test: InteractionMatrix,
        *,
        train: InteractionMatrix | None = None,
        exclude: Sequence[InteractionMatrix] = (),
        relevance: Literal["binary", "value"] = "binary",
    ) -> None:
        parts = ([train] if train is not None else []) + list(exclude)
        for part in parts:
            if part.items != test.items or part.users != test.users:
                raise ConfigError("train/exclude/test must share the same user and item indexes")
        if relevance not in ("binary", "value"):
            raise ConfigError(f"relevance must be 'binary' or 'value', got {relevance!r}")
        self.test = test
        self.n_items = test.n_items
        self.relevance = relevance
        target = test.to_csr(binary=relevance == "binary")
        target.data = np.maximum(target.data, 0).astype(np.float64)
        target.eliminate_zeros()
        target.sort_indices()
        self.target = target
        if parts:
            both = np.concatenate([p.user for p in parts]), np.concatenate([p.item for p in parts])
            masked = sp.csr_matrix((np.ones(len(both[0]), np.float32), both), shape=target.shape)
            masked.sum_duplicates()
            masked.sort_indices()
        else:
            masked = sp.csr_matrix(target.shape, dtype=np.float32)
        self.masked = masked
        self._mask = (masked.indptr.astype(np.int64), masked.indices.astype(np.int64))
        self._target = (
            target.indptr.astype(np.int64),
            target.indices.astype(np.int64),
            target.data,
        )
        self.n_relevant = np.diff(target.indptr)
        self.users = np.flatnonzero(self.n_relevant > 0).astype(np.int64)
        warm_up()

    def evaluate(
        self,
        model: Scorer,
        *,
        ks: Sequence[int] = (10, 20),
        metrics: Sequence[str] = DEFAULT_METRICS,
        options: MetricOptions | None = None,
        ties: TieRule = "index",
        batch_size: int | None = None,
        curves_to: int = 0,
        progress: bool = False,
    ) -> EvaluationResult:
        """Evaluate ``model``; see :func:`evaluate` for the arguments."""
        started = time.perf_counter()
        opts = options or MetricOptions()
        if not ks or min(ks) <= 0:
            raise ConfigError(f"ks must be positive integers, got {list(ks)}")
        names: list[str] = []
        for m in metrics:
            names.extend([m.lower()] if "@" in m else [f"{m.lower()}@{k}" for k in ks])
        kmax = max([parse_metric(n)[1] for n in names] + [curves_to, max(ks)])
        if ties not in ("index", "trec", "optimistic", "pessimistic"):
            raise ConfigError(
                f"unknown tie rule {ties!r}: use index, trec, optimistic or pessimistic"
            )
        n_items = self.n_items
        score = _as_scorer(model)
        priority = _tie_priority(ties, self.test) if ties in ("index", "trec") else None
        users = self.users
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
            s = np.asarray(score(ub))
            if s.shape != (len(ub), n_items):
                raise ConfigError(
                    f"scorer returned shape {s.shape}, expected {(len(ub), n_items)} "
                    "(users x items)"
                )
            if ties in ("optimistic", "pessimistic"):
                idx, ranked = self._rank_relevance_aware(s, ub, kmax, ties)
            else:
                idx, ranked, has_nan = masked_topk(
                    s, kmax, ub, self._mask, self._target, order=priority
                )
                if has_nan:
                    raise ConfigError("scorer returned NaN scores")
            valid = idx >= 0
            n_rel = self.n_relevant[ub]
            kw: dict[str, Any] = {
                "ideal_rel": (
                    _ideal_grades(self.target[ub], kmax) if self.relevance == "value" else None
                ),
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
            m: np.array(
                [curve_sums[f"{m}@{k}"] / max(len(users), 1) for k in range(1, curves_to + 1)]
            )
            for m in CURVE_METRICS
            if curves_to
        }
        return EvaluationResult(
            users=users,
            per_user=per_user,
            coverage={
                f"coverage@{k}": float(c.mean()) if n_items else 0.0 for k, c in covered.items()
            },
            curves=curves,
            seconds=time.perf_counter() - started,
        )

    def _rank_relevance_aware(
        self, scores: npt.NDArray[np.floating], ub: npt.NDArray[np.int64], k: int, rule: str
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Top-k where ties put relevant items last (pessimistic) or first (optimistic)."""
        s = np.array(scores, dtype=np.float64, copy=True)
        if np.isnan(s).any():
            raise ConfigError("scorer returned NaN scores")
        m = self.masked[ub]
        s[np.repeat(np.arange(len(ub)), np.diff(m.indptr)), m.indices] = -np.inf
        rel = self.target[ub].toarray()
        b, n = s.shape
        relkey = (rel > 0).astype(np.int8)
        if rule == "optimistic":
            relkey = 1 - relkey
        cols = np.broadcast_to(np.arange(n), (b, n))
        order = np.lexsort((cols, relkey, -s), axis=1)[:, :k]
        finite = np.isfinite(np.take_along_axis(s, order, axis=1))
        idx = np.where(finite, order, -1).astype(np.int64)
        ranked = np.where(finite, np.take_along_axis(rel, order, axis=1), 0.0)
        if idx.shape[1] < k:
            pad = k - idx.shape[1]
            idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
            ranked = np.pad(ranked, ((0, 0), (0, pad)))
        return idx, ranked


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
    To evaluate several models on one split, build a :class:`FullRanking` once.

    >>> train = InteractionMatrix.from_arrays(["a", "b"], ["x", "y"])
    >>> test = InteractionMatrix.from_arrays(["a", "b"], ["y", "x"], users=train.users,
    ...                                      items=train.items)
    >>> scores = lambda u: np.tile(np.array([[0.0, 1.0]], np.float32), (len(u), 1))
    >>> evaluate(scores, test=test, train=train, ks=[1], metrics=["hit"]).mean()
    {'hit@1': 1.0}
    """
    protocol = FullRanking(test, train=train, exclude=exclude, relevance=relevance)
    return protocol.evaluate(
        model,
        ks=ks,
        metrics=metrics,
        options=options,
        ties=ties,
        batch_size=batch_size,
        curves_to=curves_to,
        progress=progress,
    )
