"""Link prediction on a temporal split of friendships: the evaluation of "people you may know".

:func:`temporal_edge_split` trains on friendships formed before a cut-off time ``t`` and
predicts those formed after it:

* **warm users** — users with at least one friendship before ``t``: their targets are their
  friendships after ``t`` with users who also existed before ``t``, ranked among *all* users
  (full ranking, the user themself and their training friends masked);
* **new members** — users whose friendships all lie after ``t``: the split keeps them in the
  user index with no training edges; :meth:`EdgeSplit.new_member_graph` reveals the first
  ``k`` of their friendships (by time) online — the "given only their profile and first 1-3
  edges" protocol — and their remaining friendships are the targets.

Every number goes through the foundation's full-ranking harness, so Recall/NDCG/MRR have the
same definitions, bootstrap CIs and paired tests as item recommendation.

>>> import pandas as pd
>>> edges = pd.DataFrame({"src_user_id": list("aabbcd"), "dst_user_id": list("bcacda"),
...                       "timestamp": [1.0, 2, 1, 9, 9, 9]})
>>> edges = pd.concat([edges, edges.rename(columns={"src_user_id": "dst_user_id",
...                                                 "dst_user_id": "src_user_id"})])
>>> g = SocialGraph.from_edges(edges)
>>> split = temporal_edge_split(g, cutoff=5.0)
>>> split.train.n_friendships, len(split.test)
(2, 2)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError
from recfunnel.core.friends import FriendGenerator
from recfunnel.core.graph import SocialGraph
from recfunnel.core.ids import IdIndex
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.evaluation.harness import FullRanking
from recfunnel.evaluation.report import EvaluationReport, ModelEntry

DEFAULT_METRICS = ("recall", "ndcg", "mrr", "hit")


def _pairs_matrix(
    users: IdIndex, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], t: npt.NDArray[Any]
) -> InteractionMatrix:
    """Both directions of each pair as user x user interactions (items = the same users)."""
    return InteractionMatrix(
        users=users,
        items=users,
        user=np.concatenate([a, b]).astype(np.int32),
        item=np.concatenate([b, a]).astype(np.int32),
        value=np.ones(2 * len(a), np.float32),
        timestamp=np.concatenate([t, t]).astype(np.float64),
    )


@dataclass
class EdgeSplit:
    """A temporal split of friendships (see the module doc)."""

    cutoff: float
    #: Friendships before the cut-off, over every user (new members have no edges here).
    train: SocialGraph
    #: Warm users' friendships after the cut-off with users known before it (both directions).
    test: InteractionMatrix
    #: Rows of users whose friendships all come after the cut-off.
    new_members: npt.NDArray[np.int64]
    #: Each new member's friendships after the cut-off as ``(partner rows, times)``, by time.
    new_member_edges: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = field(
        default_factory=dict
    )

    @property
    def train_matrix(self) -> InteractionMatrix:
        """The training friendships as a user x user matrix (what the harness masks)."""
        a, b, t = self.train.friendship_pairs()
        return _pairs_matrix(self.train.users, a, b, t)

    def new_member_graph(
        self, k: int, *, min_targets: int = 1
    ) -> tuple[SocialGraph, InteractionMatrix, npt.NDArray[np.int64]]:
        """The training graph plus each new member's first ``k`` friendships (by time), the
        targets (their later friendships) and the members evaluated (those with at least
        ``min_targets`` targets left)."""
        if k < 0:
            raise ConfigError(f"k must be >= 0, got {k}")
        a, b, t = self.train.friendship_pairs()
        add_a, add_b, add_t, tgt_a, tgt_b, tgt_t, members = [], [], [], [], [], [], []
        for u in self.new_members.tolist():
            partners, times = self.new_member_edges[u]
            if len(partners) - k < min_targets:
                continue
            members.append(u)
            add_a.append(np.full(k, u))
            add_b.append(partners[:k])
            add_t.append(times[:k])
            tgt_a.append(np.full(len(partners) - k, u))
            tgt_b.append(partners[k:])
            tgt_t.append(times[k:])

        def cat(parts: list[npt.NDArray[Any]], dtype: Any) -> npt.NDArray[Any]:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        graph = SocialGraph.from_pairs(
            self.train.users,
            np.concatenate([a, cat(add_a, np.int64)]),
            np.concatenate([b, cat(add_b, np.int64)]),
            np.concatenate([t, cat(add_t, np.float64)]),
        )
        ta, tb = cat(tgt_a, np.int64), cat(tgt_b, np.int64)
        # Targets are one-directional here: the member's own list of future friends.
        targets = InteractionMatrix(
            users=self.train.users,
            items=self.train.users,
            user=ta.astype(np.int32),
            item=tb.astype(np.int32),
            value=np.ones(len(ta), np.float32),
            timestamp=cat(tgt_t, np.float64),
        )
        return graph, targets, np.asarray(members, dtype=np.int64)


def temporal_edge_split(
    graph: SocialGraph, *, test_fraction: float = 0.2, cutoff: float | None = None
) -> EdgeSplit:
    """Split ``graph``'s friendships at ``cutoff`` (default: the time quantile leaving
    ``test_fraction`` of friendships after it). Friendships without a time are refused."""
    a, b, t = graph.friendship_pairs()
    if len(a) == 0:
        raise ConfigError("the graph has no friendships to split")
    if np.isnan(t).any():
        raise ConfigError(
            f"{int(np.isnan(t).sum())} friendships have no timestamp; a temporal split needs "
            "every friendship's time"
        )
    if cutoff is None:
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
        cutoff = float(np.quantile(t, 1.0 - test_fraction, method="higher"))
    before = t < cutoff
    n = graph.n_users
    users = graph.id_index()
    train = SocialGraph.from_pairs(
        users,
        a[before],
        b[before],
        t[before],
        requests=graph.pending_requests(),
        blocks=graph.blocked_pairs(),
    )
    warm = np.zeros(n, dtype=bool)
    warm[a[before]] = True
    warm[b[before]] = True
    fa, fb, ft = a[~before], b[~before], t[~before]
    both = warm[fa] & warm[fb]
    test = _pairs_matrix(users, fa[both], fb[both], ft[both])
    has_later = np.zeros(n, dtype=bool)
    has_later[fa] = True
    has_later[fb] = True
    new = np.flatnonzero(has_later & ~warm)
    # A new member's partners (warm or new), ordered by time.
    edges: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}
    src = np.concatenate([fa, fb])
    dst = np.concatenate([fb, fa])
    tt = np.concatenate([ft, ft])
    is_new = ~warm[src]
    src, dst, tt = src[is_new], dst[is_new], tt[is_new]
    order = np.lexsort((dst, tt, src))
    src, dst, tt = src[order], dst[order], tt[order]
    bounds = np.flatnonzero(np.r_[True, src[1:] != src[:-1], True]) if len(src) else []
    for lo, hi in itertools.pairwise(bounds):
        edges[int(src[lo])] = (dst[lo:hi], tt[lo:hi])
    return EdgeSplit(float(cutoff), train, test, new.astype(np.int64), edges)


@dataclass
class LinkPredictionRun:
    """Fitted generators and their results on one split."""

    report: EvaluationReport
    fitted: dict[str, FriendGenerator]


def evaluate_link_prediction(
    generators: Mapping[str, FriendGenerator],
    split: EdgeSplit,
    *,
    user_features: Any = None,
    interactions: InteractionMatrix | None = None,
    ks: Sequence[int] = (10, 20),
    metrics: Sequence[str] = DEFAULT_METRICS,
    dataset: str = "graph",
    seed: int = 0,
    n_bootstrap: int = 1000,
    fit: bool = True,
    max_users: int | None = None,
    progress: bool = False,
) -> LinkPredictionRun:
    """Fit each generator on ``split.train`` (unless ``fit=False``: already fitted) and
    evaluate it on the warm users' future friendships (full ranking over all users)."""
    test = split.test
    if max_users is not None and test.n_users and len(np.unique(test.user)) > max_users:
        rng = np.random.default_rng(seed)
        keep_users = rng.choice(np.unique(test.user), size=max_users, replace=False)
        test = test.subset(np.isin(test.user, keep_users))
    protocol = FullRanking(test, train=split.train_matrix)
    report = EvaluationReport(
        dataset=dataset,
        split=f"temporal-edges@{split.cutoff:.0f}",
        seed=seed,
        protocol={
            "task": "link-prediction",
            "ranking": "full (all users)",
            "ks": list(ks),
            "masked": "the user and their training friends",
            "targets": "friendships formed after the cut-off between warm users",
        },
        data={
            "users": split.train.n_users,
            "train_friendships": split.train.n_friendships,
            "test_targets": len(test),
            "test_users": len(np.unique(test.user)),
            "new_members": len(split.new_members),
        },
        n_bootstrap=n_bootstrap,
        primary_metric=f"ndcg@{ks[0]}",
    )
    fitted: dict[str, FriendGenerator] = {}
    for name, gen in generators.items():
        t0 = time.perf_counter()
        if fit:
            gen.fit(split.train, user_features=user_features, interactions=interactions)
        seconds = time.perf_counter() - t0
        result = protocol.evaluate(
            gen, ks=ks, metrics=metrics, progress=progress, curves_to=max(ks)
        )
        report.models[name] = ModelEntry(result, seconds, gen.get_params())
        fitted[name] = gen
    return LinkPredictionRun(report, fitted)


@dataclass
class LinkPredictionReports:
    """The warm-user report and one new-member report per number of revealed edges."""

    warm: EvaluationReport
    new_members: dict[int, EvaluationReport]
    split: EdgeSplit

    def to_dict(self) -> dict[str, Any]:
        return {
            "warm": self.warm.to_dict(),
            "new_members": {str(k): r.to_dict() for k, r in self.new_members.items()},
        }


def make_friend_models(
    names: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, FriendGenerator]:
    """Friend generators (and the ``friend_funnel``) by registry name."""
    from recfunnel.candidates.friends import make_friend_generator

    out: dict[str, FriendGenerator] = {}
    for name in names:
        kwargs = dict((params or {}).get(name, {}))
        if name == "friend_funnel":
            from recfunnel.pipeline.friend_funnel import FriendFunnel

            out[name] = FriendFunnel(**kwargs)
        else:
            out[name] = make_friend_generator(name, **kwargs)
    return out


def run_link_prediction(
    graph: SocialGraph,
    models: Sequence[str],
    *,
    model_params: Mapping[str, Mapping[str, Any]] | None = None,
    user_features: Any = None,
    interactions: InteractionMatrix | None = None,
    test_fraction: float = 0.2,
    ks: Sequence[int] = (10, 20),
    new_member_edges: Sequence[int] = (1, 2, 3),
    dataset: str = "graph",
    seed: int = 0,
    n_bootstrap: int = 1000,
    max_users: int | None = None,
    progress: bool = False,
) -> LinkPredictionReports:
    """Split ``graph`` in time, fit ``models`` on the past, evaluate warm users and then new
    members given their first ``k`` edges (the fitted models only *attach* the graph with
    those edges: nothing is retrained)."""
    split = temporal_edge_split(graph, test_fraction=test_fraction)
    generators = make_friend_models(models, model_params)
    run = evaluate_link_prediction(
        generators,
        split,
        user_features=user_features,
        interactions=interactions,
        ks=ks,
        dataset=dataset,
        seed=seed,
        n_bootstrap=n_bootstrap,
        max_users=max_users,
        progress=progress,
    )
    new_reports: dict[int, EvaluationReport] = {}
    for k in new_member_edges:
        g_k, targets, members = split.new_member_graph(k)
        if len(members) == 0:
            continue
        a, b, t = g_k.friendship_pairs()
        protocol = FullRanking(targets, train=_pairs_matrix(g_k.users, a, b, t))
        report = EvaluationReport(
            dataset=dataset,
            split=f"new-members@{split.cutoff:.0f}+{k}",
            seed=seed,
            protocol={
                "task": "link-prediction (new members)",
                "revealed_edges": k,
                "ranking": "full (all users)",
                "retrained": False,
            },
            data={"members": len(members), "targets": len(targets)},
            n_bootstrap=n_bootstrap,
            primary_metric=f"ndcg@{ks[0]}",
        )
        for name, gen in run.fitted.items():
            gen.attach(g_k)
            t0 = time.perf_counter()
            result = protocol.evaluate(gen, ks=ks, metrics=DEFAULT_METRICS)
            result.seconds = time.perf_counter() - t0
            report.models[name] = ModelEntry(result, 0.0, gen.get_params())
        new_reports[k] = report
    for gen in run.fitted.values():
        gen.attach(split.train)
    return LinkPredictionReports(run.report, new_reports, split)
