"""The ``FriendGenerator`` contract: candidate generation over *users* ("people you may know").

It is the :class:`~recfunnel.core.generator.CandidateGenerator` idea with users on both sides:
fitted on a :class:`~recfunnel.core.graph.SocialGraph`, it answers batches of users with other
users. Implementations provide ``_fit`` and ``_candidates`` (a sparse, scored candidate set per
user — graph heuristics never score all users) and, when they learn arrays, ``_state`` /
``_set_state``. Here, once: exclusion of the user themself, their friends, pending requests and
blocks (either direction); top-n; a dense ``score_users`` for the full-ranking harness; online
graph updates (:meth:`FriendGenerator.attach`, no retraining); artefacts as ``manifest.json`` +
``arrays.npz`` (the graph is data, not part of the artefact: attach it after ``load``).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recfunnel.core.artifact import read_arrays, read_manifest_file, staged_directory, write_arrays
from recfunnel.core.errors import ArtifactError, ConfigError, NotFittedError
from recfunnel.core.generator import ScoredList, SearchSpace
from recfunnel.core.graph import SocialGraph
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.core.params import Params

ARTIFACT_FORMAT = "recfunnel.FriendGenerator"
ARTIFACT_VERSION = 1
#: Dense score of a user who is not among the candidates (finite, so excluded users at
#: ``-inf`` still rank below it).
NOT_A_CANDIDATE = np.float32(-1e30)


@dataclass(frozen=True)
class FriendSide:
    """Optional inputs to ``fit`` beyond the graph."""

    #: Profile attributes keyed by ``user_id`` (age group, location, interests, ...).
    user_features: pd.DataFrame | None = None
    #: Content interactions (users x items), for co-engagement sources and features.
    interactions: InteractionMatrix | None = None
    #: Held-out friendships (rows = graph users) for early stopping; never test data.
    valid: sp.csr_matrix | None = None


@dataclass(frozen=True)
class Candidates:
    """Scored candidate users per query user, CSR-like: row ``r`` is
    ``index[indptr[r]:indptr[r+1]]`` with ``score[...]`` (higher is better; any real)."""

    indptr: npt.NDArray[np.int64]
    index: npt.NDArray[np.int64]
    score: npt.NDArray[np.float32]

    @classmethod
    def from_csr(cls, m: sp.csr_matrix) -> Candidates:
        m = sp.csr_matrix(m)
        return cls(m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data.astype(np.float32))

    @classmethod
    def from_dense(cls, idx: npt.NDArray[np.int64], val: npt.NDArray[np.floating]) -> Candidates:
        """From ``B x k`` index/score arrays where ``-1`` / ``-inf`` mark empty slots."""
        keep = (idx >= 0) & np.isfinite(val)
        indptr = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=indptr[1:])
        return cls(indptr, idx[keep].astype(np.int64), val[keep].astype(np.float32))

    def __len__(self) -> int:
        return len(self.indptr) - 1


class FriendGenerator(Params, ABC):
    """Base class of every generator of user candidates. Hyper-parameters are the
    ``__init__`` keyword arguments, stored unchanged; learned state ends in ``_``."""

    name: ClassVar[str]
    search_space: ClassVar[SearchSpace] = {}
    graph_: SocialGraph

    # ---- the contract -------------------------------------------------------------------
    @abstractmethod
    def _fit(self, graph: SocialGraph, side: FriendSide) -> None:
        """Learn from ``graph`` (``graph_`` is already set)."""

    @abstractmethod
    def _candidates(self, users: npt.NDArray[np.int64], n: int) -> Candidates:
        """Scored candidates for each user row. Return at least ``n`` per user where the graph
        allows; excluded users (self, friends, requests, blocks) may be included — the base
        class removes them."""

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        """The learned arrays to persist (none for pure graph heuristics)."""
        return {}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        """Restore what :meth:`_state` returned."""

    def _attach(self, graph: SocialGraph) -> None:
        """React to a new or updated graph (e.g. drop caches). Default: nothing."""

    # ---- derived behaviour --------------------------------------------------------------
    def fit(
        self,
        graph: SocialGraph,
        *,
        user_features: pd.DataFrame | None = None,
        interactions: InteractionMatrix | None = None,
        valid: sp.csr_matrix | None = None,
    ) -> Self:
        """Learn from the friendships in ``graph`` (which may still be empty: a new
        deployment); returns ``self``."""
        self.graph_ = graph
        self._fit(graph, FriendSide(user_features, interactions, valid))
        return self

    def attach(self, graph: SocialGraph) -> Self:
        """Serve from ``graph`` from now on (same users first; more may have joined), without
        retraining. A graph updated in place with ``add_edges`` needs no call at all."""
        self.graph_ = graph
        self._attach(graph)
        return self

    def add_profiles(self, user_features: pd.DataFrame) -> Self:
        """Register (or update) profiles of users — e.g. members who joined after fit — keyed
        by ``user_id``. Sources that use profiles override this; the default ignores them."""
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "graph_"):
            raise NotFittedError(
                f"{type(self).__name__} has no graph: call fit() or load() then attach()"
            )

    def candidates(
        self, users: npt.ArrayLike, n: int, *, exclude: sp.csr_matrix | None = None
    ) -> Candidates:
        """Top ``n`` scored candidates per user row, excluded users removed (the graph's
        exclusions, plus ``exclude``: extra ``B x n_users`` ones, e.g. already-shown)."""
        if n <= 0:
            raise ConfigError(f"n must be positive, got {n}")
        self._check_fitted()
        idx = np.asarray(users, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.graph_.n_users):
            raise ConfigError(f"user rows out of range 0..{self.graph_.n_users - 1}")
        banned = self.graph_.excluded_rows(idx)
        if exclude is not None:
            banned = banned + sp.csr_matrix(exclude, shape=banned.shape)
        per_row = np.diff(banned.indptr)
        raw = self._candidates(idx, n + int(per_row.max(initial=0)))
        indptr = np.zeros(len(idx) + 1, dtype=np.int64)
        out_i: list[npt.NDArray[np.int64]] = []
        out_s: list[npt.NDArray[np.float32]] = []
        for r in range(len(idx)):
            lo, hi = raw.indptr[r], raw.indptr[r + 1]
            cand, score = raw.index[lo:hi], raw.score[lo:hi]
            ban = banned.indices[banned.indptr[r] : banned.indptr[r + 1]]
            keep = ~np.isin(cand, ban) & np.isfinite(score)
            cand, score = cand[keep], score[keep]
            if len(cand) > n:
                top = np.argpartition(-score, n - 1)[:n]
                cand, score = cand[top], score[top]
            order = np.lexsort((cand, -score))
            out_i.append(cand[order])
            out_s.append(score[order])
            indptr[r + 1] = indptr[r] + len(order)
        return Candidates(
            indptr,
            np.concatenate(out_i) if out_i else np.zeros(0, np.int64),
            np.concatenate(out_s) if out_s else np.zeros(0, np.float32),
        )

    def recommend(
        self, user_ids: Sequence[str], n: int = 10, *, exclude: Sequence[Sequence[str]] = ()
    ) -> list[ScoredList]:
        """Top ``n`` users for each user id (unknown ids raise ``UnknownIdError``); ``exclude``
        gives, per user, more ids never to suggest."""
        self._check_fitted()
        users = self.graph_.encode(user_ids)
        extra = None
        if exclude:
            rows, cols = [], []
            for r, ids in enumerate(exclude):
                enc = self.graph_.encode(ids, missing="ignore")
                enc = enc[enc >= 0]
                rows.extend([r] * len(enc))
                cols.extend(enc.tolist())
            extra = sp.csr_matrix(
                (np.ones(len(rows), np.float32), (rows, cols)),
                shape=(len(users), self.graph_.n_users),
            )
        cand = self.candidates(users, n, exclude=extra)
        out = []
        for r in range(len(cand)):
            lo, hi = cand.indptr[r], cand.indptr[r + 1]
            out.append(
                ScoredList(
                    tuple(self.graph_.decode(cand.index[lo:hi]).tolist()),
                    tuple(float(s) for s in cand.score[lo:hi]),
                )
            )
        return out

    def score_users(self, users: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Dense ``B x n_users`` scores for the full-ranking harness: a user's candidates keep
        their scores; everyone else scores :data:`NOT_A_CANDIDATE` (after every candidate, before
        the harness's exclusions at ``-inf``). Exclusions are the harness's job (pass the
        training graph as ``train``)."""
        self._check_fitted()
        idx = np.asarray(users, dtype=np.int64)
        raw = self._candidates(idx, self.dense_depth)
        out = np.full((len(idx), self.graph_.n_users), NOT_A_CANDIDATE, dtype=np.float32)
        rows = np.repeat(np.arange(len(idx)), np.diff(raw.indptr))
        out[rows, raw.index] = raw.score
        out[np.arange(len(idx)), idx] = -np.inf  # never suggest users to themselves
        return out

    #: How many candidates per user ``score_users`` asks for (full ranking needs the
    #: top of the list only; metrics at k <= 100 are exact when this is >= 100 + degree).
    dense_depth: ClassVar[int] = 1000

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write parameters and learned arrays to directory ``path`` atomically."""
        self._check_fitted()
        target = Path(path)
        arrays = dict(self._state())
        target.parent.mkdir(parents=True, exist_ok=True)
        with staged_directory(target) as tmp:
            manifest = {
                "format": ARTIFACT_FORMAT,
                "format_version": ARTIFACT_VERSION,
                "model": self.name,
                "params": self.get_params(),
                **write_arrays(tmp, arrays),
                "graph_users": self.graph_.n_users,
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], graph: SocialGraph) -> Self:
        """Read an artefact written by :meth:`save` and attach ``graph`` to it."""
        p = Path(path)
        manifest = read_manifest(p)
        if manifest.get("model") != cls.name:
            raise ArtifactError(f"{p}: a {manifest.get('model')!r} model, not {cls.name!r}")
        model = cls(**manifest.get("params", {}))
        model._set_state(read_arrays(p, manifest))
        return model.attach(graph)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a saved friend generator, checked for format and version."""
    return read_manifest_file(
        path, format=ARTIFACT_FORMAT, version=ARTIFACT_VERSION, what="friend generator artefact"
    )
