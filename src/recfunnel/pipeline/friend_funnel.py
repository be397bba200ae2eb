"""The friend-suggestion funnel: graph, GNN and cold-start sources -> LightGBM -> diversity.

Stages, for each query user:

1. **Retrieval** from several :class:`~recfunnel.core.friends.FriendGenerator` sources, each
   with a quota (friends-of-friends, Adamic-Adar, personalised PageRank, GraphSAGE, profile
   similarity, popular-in-community, content co-engagement). The base class has already
   removed the user, their friends, pending requests and blocked users.
2. **Features** of each (user, candidate) pair: every source's score and rank (missing when a
   source did not propose the pair) and the number of sources that did; mutual friends,
   Adamic-Adar and Jaccard computed for *every* pair; both users' degrees; the candidate's
   **reciprocity** (smoothed share of requests they received that they accepted, i.e. the
   probability that the other side accepts); embedding similarity from GNN sources; profile
   agreement (same value of each categorical attribute, Jaccard of multi-valued ones such as
   interests, the candidate's numeric attributes such as activity); content co-engagement
   (cosine of the two users' item-interaction rows).
3. **Ranking** by LightGBM LambdaMART, trained inside :meth:`FriendFunnel.fit` on the
   training graph alone: the friendships of the last ``label_fraction`` of training time are
   held out as labels, the sources are fitted on the earlier graph, and the ranker learns
   which candidates became friends. Afterwards the sources are re-pointed at the whole
   training graph (graph heuristics refit in milliseconds; inductive GNN sources only
   *attach* — their embeddings follow the new edges without retraining).
4. **Re-ranking**: maximal marginal relevance over the candidates' communities
   (``diversity`` > 0 trades relevance for variety across communities), then top ``n``.

The funnel is itself a ``FriendGenerator``, so link-prediction evaluation, the service and
the CLI treat it like any single source.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recfunnel.core.artifact import read_manifest_file, staged_directory
from recfunnel.core.errors import ArtifactError, ConfigError
from recfunnel.core.friends import Candidates, FriendGenerator, FriendSide
from recfunnel.core.graph import SocialGraph
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.core.ranker import LabelledFeatures, RankerFeatures

FUNNEL_FORMAT = "recfunnel.FriendFunnel"
FUNNEL_VERSION = 1

#: Default sources and quotas: graph proximity first, the GNN and cold-start sources after.
DEFAULT_SOURCES: tuple[tuple[str, int], ...] = (
    ("mutual_friends", 100),
    ("adamic_adar", 50),
    ("ppr", 50),
    ("graphsage", 100),
    ("profile_similarity", 30),
    ("community_popular", 20),
    ("co_engagement", 30),
)


def _make_source(name: str, params: Mapping[str, Any]) -> FriendGenerator:
    from recfunnel.candidates.friends import make_friend_generator

    return make_friend_generator(name, **dict(params))


class FriendFunnel(FriendGenerator):
    """Retrieval from several friend sources -> LightGBM LambdaMART -> community MMR.

    ``sources``: ``(registry name, quota)`` pairs; ``source_params``: per-name constructor
    arguments; ``ranker_params``: :class:`~recfunnel.ranking.lightgbm_ranker.LightGBMRanker`
    arguments; ``label_fraction``: the latest share of training friendships held out to label
    the ranker's training rows (random when friendships have no times); ``max_train_users``:
    users sampled for ranker training; ``diversity`` in [0, 1): MMR weight on community
    variety (0 = pure ranker order); ``community_column``: the user attribute that defines
    communities (also a feature); ``profile_columns``: attributes compared pairwise (default:
    every column of ``user_features`` but ``user_id``); ``seed``.
    """

    name: ClassVar[str] = "friend_funnel"
    dense_depth: ClassVar[int] = 300

    sources_: dict[str, FriendGenerator]
    ranker_: Any
    feature_names_: tuple[str, ...]

    def __init__(
        self,
        sources: Sequence[tuple[str, int]] | Sequence[list[Any]] = DEFAULT_SOURCES,
        source_params: Mapping[str, Mapping[str, Any]] | None = None,
        ranker_params: Mapping[str, Any] | None = None,
        label_fraction: float = 0.2,
        max_train_users: int = 5000,
        diversity: float = 0.0,
        community_column: str | None = "community",
        profile_columns: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        self.sources = sources
        self.source_params = source_params
        self.ranker_params = ranker_params
        self.label_fraction = label_fraction
        self.max_train_users = max_train_users
        self.diversity = diversity
        self.community_column = community_column
        self.profile_columns = profile_columns
        self.seed = seed

    # ---- configuration ----------------------------------------------------------------------
    def _quotas(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for entry in self.sources:
            name, quota = str(entry[0]), int(entry[1])
            if quota <= 0:
                raise ConfigError(f"source {name!r}: quota must be positive, got {quota}")
            if name in out:
                raise ConfigError(f"source {name!r} listed twice")
            out[name] = quota
        if not out:
            raise ConfigError("a friend funnel needs at least one source")
        if not 0.0 < self.label_fraction < 1.0:
            raise ConfigError(f"label_fraction must be in (0, 1), got {self.label_fraction}")
        if not 0.0 <= self.diversity < 1.0:
            raise ConfigError(f"diversity must be in [0, 1), got {self.diversity}")
        return out

    def _new_ranker(self) -> Any:
        from recfunnel.ranking.lightgbm_ranker import LightGBMRanker

        # Small trees and large leaves: link labels are noisy (a few positives among hundreds
        # of candidates), and deep trees memorise them (in-sample NDCG@10 0.47, out of sample
        # below personalised PageRank alone). Rounds stop on held-out training users.
        params: dict[str, Any] = {
            "objective": "lambdarank",
            "n_estimators": 500,
            "learning_rate": 0.05,
            "num_leaves": 7,
            "min_child_samples": 200,
            "categorical": False,
            "early_stopping_rounds": 30,
            "seed": self.seed,
        }
        params.update(self.ranker_params or {})
        return LightGBMRanker(**params)

    # ---- fitting ----------------------------------------------------------------------------
    def _fit(self, graph: SocialGraph, side: FriendSide) -> None:
        quotas = self._quotas()
        a, b, t = graph.friendship_pairs()
        if len(a) < 10:
            raise ConfigError(f"the graph has {len(a)} friendships; the funnel needs >= 10")
        rng = np.random.default_rng(self.seed)
        if np.isnan(t).any():
            held = rng.random(len(a)) < self.label_fraction
        else:
            cut = float(np.quantile(t, 1.0 - self.label_fraction, method="higher"))
            held = t >= cut
        early = SocialGraph.from_pairs(
            graph.id_index(),
            a[~held],
            b[~held],
            t[~held],
            requests=graph.pending_requests(),
            blocks=graph.blocked_pairs(),
        )
        self._fit_side(early, side)
        self.sources_ = {}
        for name in quotas:
            params = dict((self.source_params or {}).get(name, {}))
            if name == "community_popular" and self.community_column:
                params.setdefault("column", self.community_column)
            self.sources_[name] = _make_source(name, params).fit(
                early, user_features=side.user_features, interactions=side.interactions
            )
        self.graph_ = early
        # Training rows: warm users with held-out friendships.
        warm = early.degree() > 0
        la, lb = a[held], b[held]
        keep = warm[la] & warm[lb]
        la, lb = la[keep], lb[keep]
        label_users = np.unique(np.concatenate([la, lb]))
        if len(label_users) > self.max_train_users:
            label_users = np.sort(rng.choice(label_users, self.max_train_users, replace=False))
        n = graph.n_users
        positives = sp.csr_matrix(
            (np.ones(2 * len(la), np.float32), (np.r_[la, lb], np.r_[lb, la])), shape=(n, n)
        )
        feats, labels, groups = [], [], []
        for lo in range(0, len(label_users), 256):
            batch = label_users[lo : lo + 256]
            cand, f = self._featurize(batch, self._total_quota())
            pos = positives[batch]
            for r in range(len(batch)):
                c = cand.index[cand.indptr[r] : cand.indptr[r + 1]]
                y = np.isin(c, pos.indices[pos.indptr[r] : pos.indptr[r + 1]])
                if len(c) == 0 or not y.any():
                    continue
                rows = np.arange(cand.indptr[r], cand.indptr[r + 1])
                feats.append(f[rows])
                labels.append(y.astype(np.float64))
                groups.append(len(c))
        if not groups:
            raise ConfigError(
                "no training user had a held-out friendship among their candidates; the "
                "graph is too small or too sparse for the ranker (raise label_fraction?)"
            )
        dense = np.concatenate(feats).astype(np.float32)
        y = np.concatenate(labels)
        sizes = np.asarray(groups)
        ranker = self._new_ranker()
        # A fifth of the training users (whole groups) for early stopping, when there are
        # enough of them.
        valid = None
        fit_rows = np.arange(len(y))
        fit_sizes = sizes
        if getattr(ranker, "early_stopping_rounds", None) and len(sizes) >= 50:
            held = rng.random(len(sizes)) < 0.2
            owner = np.repeat(np.arange(len(sizes)), sizes)
            v_rows = np.flatnonzero(held[owner])
            fit_rows = np.flatnonzero(~held[owner])
            fit_sizes = sizes[~held]
            valid = LabelledFeatures(
                RankerFeatures(dense=dense[v_rows], dense_names=self.feature_names_),
                y[v_rows],
                sizes[held],
            )
        elif getattr(ranker, "early_stopping_rounds", None):
            ranker.set_params(early_stopping_rounds=None, n_estimators=150)
        self.ranker_ = ranker.fit(
            RankerFeatures(dense=dense[fit_rows], dense_names=self.feature_names_),
            y[fit_rows],
            groups=fit_sizes,
            valid=valid,
        )
        self.training_rows_ = len(dense)
        self.training_groups_ = len(groups)
        # Serve from the whole training graph.
        self._repoint(graph, side)

    def _repoint(self, graph: SocialGraph, side: FriendSide) -> None:
        self._fit_side(graph, side)
        for gen in self.sources_.values():
            if hasattr(gen, "embed"):  # inductive: new edges flow in, no retraining
                gen.attach(graph)
            else:
                gen.fit(graph, user_features=side.user_features, interactions=side.interactions)
        self.graph_ = graph

    def _attach(self, graph: SocialGraph) -> None:
        for gen in getattr(self, "sources_", {}).values():
            gen.attach(graph)
        if hasattr(self, "profile_codes_"):
            self._extend_profiles(graph)

    def _total_quota(self) -> int:
        return sum(self._quotas().values())

    # ---- side information aligned with graph rows -----------------------------------------
    def _fit_side(self, graph: SocialGraph, side: FriendSide) -> None:
        """Profile and engagement arrays aligned with the graph's rows; the graph's clock."""
        n = graph.n_users
        latest = graph.latest_time()
        self.now_ = latest if np.isfinite(latest) else 0.0
        ids = graph.user_ids().astype(str)
        uf = side.user_features
        self.profile_kinds_: dict[str, str] = {}
        self.vocab_: dict[str, dict[str, int]] = {}
        if uf is not None:
            if "user_id" not in uf.columns:
                raise ConfigError("user_features needs a user_id column")
            columns = list(self.profile_columns or [c for c in uf.columns if c != "user_id"])
            for col in columns:
                if col not in uf.columns:
                    raise ConfigError(f"profile column {col!r} is not in user_features")
                if col == self.community_column:
                    continue  # compared through same_community
                s = uf[col]
                if pd.api.types.is_numeric_dtype(s):
                    self.profile_kinds_[col] = "numeric"
                elif s.dropna().astype(str).str.contains("|", regex=False).any():
                    self.profile_kinds_[col] = "multi"
                else:
                    self.profile_kinds_[col] = "categorical"
                self.vocab_[col] = {}
            if self.community_column and self.community_column in uf.columns:
                self.vocab_[self.community_column] = {}
        kinds = self.profile_kinds_
        self.profile_codes_ = np.full((n, _count(kinds, "categorical")), -1, np.int64)
        self.profile_numeric_ = np.full((n, _count(kinds, "numeric")), np.nan, np.float32)
        self.profile_multi_ = [
            sp.lil_matrix((n, 64), dtype=np.float32) for _ in range(_count(kinds, "multi"))
        ]
        self.community_ = np.full(n, -1, dtype=np.int64)
        if uf is not None:
            self._write_profiles(uf, graph)
        inter = side.interactions
        if inter is not None:
            rows = pd.Index(ids).get_indexer(pd.Index(inter.users.ids.astype(str)))
            m = inter.to_csr(binary=True).tocoo()
            keep = rows[m.row] >= 0
            eng = sp.csr_matrix(
                (np.ones(int(keep.sum()), np.float32), (rows[m.row][keep], m.col[keep])),
                shape=(n, inter.n_items),
            )
            eng.data[:] = 1.0
            norms = np.sqrt(np.asarray(eng.sum(axis=1)).ravel())
            self.engagement_ = sp.diags(1.0 / np.maximum(norms, 1e-12)).tocsr() @ eng
        else:
            self.engagement_ = sp.csr_matrix((n, 1), dtype=np.float32)
        names = [f"{s}_score" for s in self._quotas()] + [f"{s}_rank" for s in self._quotas()]
        names += [
            "n_sources",
            "mutual_friends",
            "adamic_adar",
            "jaccard",
            "newest_mutual_age",
            "user_last_friend_age",
            "candidate_last_friend_age",
            "user_degree",
            "candidate_degree",
            "candidate_reciprocity",
            "embedding_similarity",
            "same_community",
            "co_engagement",
        ]
        names += [f"same_{c}" for c, k in kinds.items() if k == "categorical"]
        names += [f"{c}_jaccard" for c, k in kinds.items() if k == "multi"]
        names += [f"candidate_{c}" for c, k in kinds.items() if k == "numeric"]
        self.feature_names_ = tuple(names)

    def _write_profiles(self, frame: pd.DataFrame, graph: SocialGraph) -> None:
        """Encode ``frame``'s rows (``user_id`` + profile columns) into the profile arrays;
        values never seen get new codes (equality stays meaningful), users not in the graph
        are ignored."""
        frame = frame.drop_duplicates("user_id", keep="last")
        rows = graph.encode(frame["user_id"].astype(str).tolist(), missing="ignore")
        ok = rows >= 0
        frame, rows = frame[ok], rows[ok]
        if len(rows) and rows.max() >= len(self.community_):
            self._extend_profiles(graph)
        c_i = m_i = n_i = 0
        for col, kind in self.profile_kinds_.items():
            values = frame[col] if col in frame.columns else None
            if kind == "numeric":
                if values is not None:
                    self.profile_numeric_[rows, n_i] = values.to_numpy(np.float32, na_value=np.nan)
                n_i += 1
            elif kind == "multi":
                if values is not None:
                    self.profile_multi_[m_i] = self._encode_multi(
                        self.profile_multi_[m_i], self.vocab_[col], rows, values
                    )
                m_i += 1
            else:
                if values is not None:
                    self.profile_codes_[rows, c_i] = _codes(self.vocab_[col], values)
                c_i += 1
        if self.community_column and self.community_column in frame.columns:
            vocab = self.vocab_.setdefault(self.community_column, {})
            self.community_[rows] = _codes(vocab, frame[self.community_column])
        self.profile_multi_ = [sp.csr_matrix(m) for m in self.profile_multi_]

    @staticmethod
    def _encode_multi(
        m: sp.spmatrix, vocab: dict[str, int], rows: npt.NDArray[np.int64], values: pd.Series
    ) -> sp.csr_matrix:
        lil = sp.lil_matrix(m)
        for r, text in zip(rows.tolist(), values.fillna("").astype(str), strict=True):
            cols = sorted({vocab.setdefault(v, len(vocab)) for v in text.split("|") if v})
            if cols and cols[-1] >= lil.shape[1]:
                lil.resize((lil.shape[0], max(2 * lil.shape[1], cols[-1] + 1)))
            lil.rows[r] = cols
            lil.data[r] = [1.0] * len(cols)
        return sp.csr_matrix(lil)

    def add_profiles(self, profiles: pd.DataFrame) -> None:
        """Register or update profiles (``user_id`` + attributes) of users — e.g. a member
        who just joined — in the funnel and in every source that keeps profiles."""
        self._check_fitted()
        self._write_profiles(profiles, self.graph_)
        for gen in self.sources_.values():
            add = getattr(gen, "add_profiles", None)
            if add is not None:
                add(profiles)

    def _extend_profiles(self, graph: SocialGraph) -> None:
        """Make room for users who joined after fit (unknown profile, no engagement yet)."""
        extra = graph.n_users - len(self.community_)
        if extra <= 0:
            return
        self.profile_codes_ = np.vstack(
            [self.profile_codes_, np.full((extra, self.profile_codes_.shape[1]), -1)]
        )
        self.profile_numeric_ = np.vstack(
            [
                self.profile_numeric_,
                np.full((extra, self.profile_numeric_.shape[1]), np.nan, np.float32),
            ]
        )
        self.profile_multi_ = [
            sp.vstack([m, sp.csr_matrix((extra, m.shape[1]), dtype=np.float32)], format="csr")
            for m in self.profile_multi_
        ]
        self.community_ = np.concatenate([self.community_, np.full(extra, -1, np.int64)])
        self.engagement_ = sp.vstack(
            [self.engagement_, sp.csr_matrix((extra, self.engagement_.shape[1]), dtype=np.float32)],
            format="csr",
        )

    # ---- features ----------------------------------------------------------------------------
    def _featurize(
        self, users: npt.NDArray[np.int64], per_source: int | None = None
    ) -> tuple[Candidates, npt.NDArray[np.float32]]:
        """Union of every source's candidates for ``users`` and their feature rows."""
        quotas = self._quotas()
        graph = self.graph_
        if graph.n_users > len(self.community_):
            self._extend_profiles(graph)
        B = len(users)
        found: list[dict[int, int]] = [{} for _ in range(B)]
        order: list[list[int]] = [[] for _ in range(B)]
        per: dict[str, Candidates] = {}
        for name, quota in quotas.items():
            cand = self.sources_[name].candidates(users, quota)
            per[name] = cand
            for r in range(B):
                for v in cand.index[cand.indptr[r] : cand.indptr[r + 1]].tolist():
                    if v not in found[r]:
                        found[r][v] = len(order[r])
                        order[r].append(v)
        indptr = np.zeros(B + 1, dtype=np.int64)
        np.cumsum([len(o) for o in order], out=indptr[1:])
        cand_idx = np.fromiter((v for o in order for v in o), np.int64, int(indptr[-1]))
        owner = np.repeat(np.arange(B), np.diff(indptr))
        u = users[owner]
        m = len(cand_idx)
        n_src = len(quotas)
        F = np.full((m, len(self.feature_names_)), np.nan, dtype=np.float32)
        for s, cand in enumerate(per.values()):
            for r in range(B):
                lo, hi = cand.indptr[r], cand.indptr[r + 1]
                pos = indptr[r] + np.fromiter(
                    (found[r][v] for v in cand.index[lo:hi].tolist()), np.int64, hi - lo
                )
                F[pos, s] = cand.score[lo:hi]
                F[pos, n_src + s] = np.arange(hi - lo, dtype=np.float32)
        col = 2 * n_src
        F[:, col] = np.isfinite(F[:, :n_src]).sum(axis=1)
        if m:
            F[:, col + 1 : col + 7] = self._proximity(users, owner, cand_idx)
            deg_u = graph.degree(users)[owner]
            deg_v = graph.degree(cand_idx)
            _, got = graph.request_counts(cand_idx)
            F[:, col + 7] = np.log1p(deg_u)
            F[:, col + 8] = np.log1p(deg_v)
            F[:, col + 9] = (deg_v + 1.0) / (deg_v + got + 2.0)
            F[:, col + 10] = self._embedding_similarity(u, cand_idx)
            cu, cv = self.community_[u], self.community_[cand_idx]
            F[:, col + 11] = np.where((cu >= 0) & (cv >= 0), (cu == cv), np.nan)
            F[:, col + 12] = np.asarray(
                self.engagement_[u].multiply(self.engagement_[cand_idx]).sum(axis=1)
            ).ravel()
            c = col + 13
            for j in range(self.profile_codes_.shape[1]):
                a, b = self.profile_codes_[u, j], self.profile_codes_[cand_idx, j]
                F[:, c] = np.where((a >= 0) & (b >= 0), a == b, np.nan)
                c += 1
            for mm in self.profile_multi_:
                inter = np.asarray(mm[u].multiply(mm[cand_idx]).sum(axis=1)).ravel()
                size_u = np.asarray(mm[u].sum(axis=1)).ravel()
                size_v = np.asarray(mm[cand_idx].sum(axis=1)).ravel()
                union = size_u + size_v - inter
                F[:, c] = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
                c += 1
            for j in range(self.profile_numeric_.shape[1]):
                F[:, c] = self.profile_numeric_[cand_idx, j]
                c += 1
        return Candidates(indptr, cand_idx, np.zeros(m, np.float32)), F

    def _proximity(
        self,
        users: npt.NDArray[np.int64],
        owner: npt.NDArray[np.int64],
        cand: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.float32]:
        """Mutual friends, Adamic-Adar, Jaccard, the age of the newest wedge through a
        mutual friend, and how long ago each side last made a friend, per pair."""
        graph = self.graph_
        ru = graph.rows(users)
        uniq, inv = np.unique(cand, return_inverse=True)
        rv = graph.rows(uniq)
        both = ru[owner].multiply(rv[inv]).tocsr()
        mutual = np.asarray(both.sum(axis=1)).ravel()
        mid = np.unique(both.indices)
        w = np.zeros(graph.n_users, dtype=np.float64)
        deg_mid = graph.degree(mid).astype(np.float64)
        w[mid] = 1.0 / np.log(np.maximum(deg_mid, 2.0))
        aa = both @ w
        du = graph.degree(users)[owner].astype(np.float64)
        dv = graph.degree(cand).astype(np.float64)
        union = du + dv - mutual
        jac = np.where(union > 0, mutual / np.maximum(union, 1.0), 0.0)
        # Recency: how long ago the newest wedge u - z - v formed (the later of its two
        # friendships), and how long ago each side last made a friend. Times are shifted to
        # be positive so that sparse products keep every entry; unknown times count as old.
        latest = graph.latest_time()
        now = latest if np.isfinite(latest) else self.now_
        tu, tv = graph.since_rows(users), graph.since_rows(uniq)
        t0 = float(np.nanmin(np.r_[tu.data, tv.data, now]))
        for m in (tu, tv):
            m.data = np.nan_to_num(m.data - t0 + 1.0, nan=0.5)
        wedge = tu[owner].maximum(tv[inv]).multiply(both).tocsr()
        newest = np.asarray(wedge.max(axis=1).todense()).ravel()
        wedge_age = np.where(newest > 0, now - (newest + t0 - 1.0), np.nan)
        last_u = np.asarray(tu.max(axis=1).todense()).ravel()[owner]
        last_v = np.asarray(tv.max(axis=1).todense()).ravel()[inv]
        age_u = np.where(last_u >= 1.0, now - (last_u + t0 - 1.0), np.nan)
        age_v = np.where(last_v >= 1.0, now - (last_v + t0 - 1.0), np.nan)
        return np.stack([mutual, aa, jac, wedge_age, age_u, age_v], axis=1).astype(np.float32)

    def _embedding_similarity(
        self, u: npt.NDArray[np.int64], v: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        for gen in self.sources_.values():
            vectors = getattr(gen, "user_vectors", None)
            if vectors is None:
                continue
            uniq, inv = np.unique(np.concatenate([u, v]), return_inverse=True)
            emb = np.asarray(vectors(uniq), dtype=np.float32)
            eu, ev = emb[inv[: len(u)]], emb[inv[len(u) :]]
            return np.einsum("ij,ij->i", eu, ev).astype(np.float32)
        return np.full(len(u), np.nan, dtype=np.float32)

    # ---- serving ------------------------------------------------------------------------------
    def _candidates(self, users: npt.NDArray[np.int64], n: int) -> Candidates:
        cand, feats = self._featurize(users)
        if len(cand.index) == 0:
            return cand
        scores = self.ranker_.predict(RankerFeatures(dense=feats, dense_names=self.feature_names_))
        scores = np.asarray(scores, dtype=np.float32)
        if self.diversity > 0.0:
            scores = self._diversify(cand, scores, n)
        return Candidates(cand.indptr, cand.index, scores)

    def _diversify(
        self, cand: Candidates, scores: npt.NDArray[np.float32], n: int
    ) -> npt.NDArray[np.float32]:
        """Per user: MMR over community one-hots; the first ``n`` picks get descending
        scores above every other candidate (whose ranker order is kept)."""
        from recfunnel.rerank.diversity import mmr_select

        out = scores.copy()
        for r in range(len(cand)):
            lo, hi = cand.indptr[r], cand.indptr[r + 1]
            if hi - lo < 2:
                continue
            s = scores[lo:hi].astype(np.float64)
            rel = (s - s.min()) / max(float(s.max() - s.min()), 1e-12)
            comm = self.community_[cand.index[lo:hi]]
            labels, codes = np.unique(comm, return_inverse=True)
            onehot = np.zeros((hi - lo, len(labels)), np.float32)
            onehot[np.arange(hi - lo), codes] = 1.0
            onehot[comm < 0] = 0.0  # unknown community: similar to nobody
            k = min(n, hi - lo)
            picked, _ = mmr_select(onehot, rel, k, 1.0 - self.diversity, "jaccard")
            top = float(s.max()) + 1.0
            block = out[lo:hi]
            block[picked] = top + (k - np.arange(k)).astype(np.float32)
        return out

    # ---- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Sources and ranker as sub-artefacts, profile arrays, one manifest."""
        self._check_fitted()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with staged_directory(target) as tmp:
            for name, gen in self.sources_.items():
                gen.save(tmp / "sources" / name)
            self.ranker_.save(tmp / "ranker")
            manifest = {
                "format": FUNNEL_FORMAT,
                "format_version": FUNNEL_VERSION,
                "model": self.name,
                "params": self.get_params(),
                "feature_names": list(self.feature_names_),
                "training_rows": self.training_rows_,
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, default=list), "utf-8")
        return target

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        graph: SocialGraph,
        *,
        user_features: pd.DataFrame | None = None,
        interactions: InteractionMatrix | None = None,
    ) -> Self:
        """Read a saved funnel and attach the current graph, profiles and interactions (the
        same profile columns as in training; the feature names are checked)."""
        from recfunnel.candidates.friends import friend_generator_named
        from recfunnel.ranking import load_ranker

        p = Path(path)
        manifest = read_manifest_file(
            p, format=FUNNEL_FORMAT, version=FUNNEL_VERSION, what="friend funnel artefact"
        )
        funnel = cls(**manifest["params"])
        funnel.sources_ = {}
        for name in funnel._quotas():
            source = friend_generator_named(name)
            funnel.sources_[name] = source.load(p / "sources" / name, graph)
        funnel.ranker_ = load_ranker(p / "ranker")
        funnel.training_rows_ = int(manifest.get("training_rows", 0))
        funnel._fit_side(graph, FriendSide(user_features, interactions))
        if tuple(manifest["feature_names"]) != funnel.feature_names_:
            raise ArtifactError(
                f"{p}: the profile columns differ from training "
                f"({manifest['feature_names']} vs {list(funnel.feature_names_)})"
            )
        funnel.graph_ = graph
        return funnel


def _codes(vocab: dict[str, int], values: pd.Series) -> npt.NDArray[np.int64]:
    """Integer codes of ``values`` (new values get new codes; missing -> -1)."""
    return np.fromiter(
        (-1 if pd.isna(v) else vocab.setdefault(str(v), len(vocab)) for v in values),
        np.int64,
        len(values),
    )


def _count(kinds: Mapping[str, str], kind: str) -> int:
    return sum(1 for k in kinds.values() if k == kind)
