"""The ``CandidateGenerator`` contract: the first stage of the funnel.

A generator is fitted on an :class:`InteractionMatrix`, then answers batches: ``recommend`` for
users, ``similar_items`` for items. Implementations provide four things only:
``_fit``, ``_score_users``, ``_score_similar`` and their learned arrays (``_state`` /
``_set_state``); conveniences (ranking, exclusion of seen items, persistence) live here once.
Artefacts are a directory with ``manifest.json`` and ``arrays.npz`` (never pickles).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recfunnel.core.artifact import read_arrays, read_manifest_file, staged_directory, write_arrays
from recfunnel.core.errors import ConfigError, NotFittedError
from recfunnel.core.graph import SocialGraph
from recfunnel.core.ids import IdIndex
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.core.params import Params
from recfunnel.core.topk import topk

ARTIFACT_FORMAT = "recfunnel.CandidateGenerator"
ARTIFACT_VERSION = 1
#: Dense score cells computed at once by the default pair scoring and top-k (~64 MB).
_DENSE_CELLS = 1 << 24


@dataclass(frozen=True)
class SideInfo:
    """Optional inputs to ``fit`` beyond the training interactions."""

    valid: InteractionMatrix | None = None
    user_features: pd.DataFrame | None = None
    item_features: pd.DataFrame | None = None
    #: The social graph (friendships), for social sources; its users are matched to the
    #: interactions' users by id.
    graph: SocialGraph | None = None


@dataclass(frozen=True)
class ScoredList:
    """A ranked list of external ids with their scores (best first)."""

    ids: tuple[str, ...]
    scores: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.ids)


#: A hyper-parameter search space: name -> ("int" | "float", low, high, "log" | "linear") or
#: ("categorical", [choices]). Tuners (e.g. Optuna) translate it; core stays library-free.
SearchSpace = dict[str, tuple[Any, ...]]


class CandidateGenerator(Params, ABC):
    """Base class of every candidate generator.

    Hyper-parameters are the ``__init__`` keyword arguments, stored unchanged under the same
    names; learned state ends in ``_``.
    """

    #: Registry name, e.g. ``"itemknn"``; used in artefacts and on the command line.
    name: ClassVar[str]
    #: The key hyper-parameters worth tuning on validation data, and their ranges.
    search_space: ClassVar[SearchSpace] = {}

    users_: IdIndex
    items_: IdIndex
    seen_: sp.csr_matrix

    # ---- the contract -------------------------------------------------------------------
    @abstractmethod
    def _fit(self, interactions: InteractionMatrix, side: SideInfo) -> None:
        """Learn from ``interactions`` (``users_``, ``items_`` and ``seen_`` are already set).

        ``side`` carries what some models use and others ignore: validation interactions
        (early stopping), user / item attribute tables (feature-based models) and the social
        graph (social sources)."""

    @abstractmethod
    def _score_users(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Scores of every item for each user index: ``B x n_items``, higher is better."""

    @abstractmethod
    def _score_similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Similarity of every item to each item index: ``B x n_items``."""

    @abstractmethod
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        """The learned arrays to persist (besides the id indexes and ``seen_``)."""

    @abstractmethod
    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        """Restore what :meth:`_state` returned."""

    # ---- parameters (scikit-learn conventions) -----------------------------------------

    # ---- derived behaviour --------------------------------------------------------------
    def fit(
        self,
        interactions: InteractionMatrix,
        *,
        valid: InteractionMatrix | None = None,
        user_features: pd.DataFrame | None = None,
        item_features: pd.DataFrame | None = None,
        graph: SocialGraph | None = None,
    ) -> Self:
        """Learn from ``interactions``; returns ``self``.

        ``valid`` (same indexes) is only used by models that early-stop on it; never pass test
        data. ``user_features`` / ``item_features`` are attribute tables keyed by ``user_id`` /
        ``item_id`` columns, used by feature-based models. ``graph`` is the social graph
        (friendships), used by social sources (e.g. ``friends_items``) and ignored by the
        others.
        """
        if len(interactions) == 0:
            raise ConfigError(f"{type(self).__name__}.fit: no interactions to learn from")
        if valid is not None and (
            valid.users != interactions.users or valid.items != interactions.items
        ):
            raise ConfigError("valid must share the user and item indexes of the training data")
        self.users_ = interactions.users
        self.items_ = interactions.items
        self.seen_ = interactions.to_csr(binary=True)
        self._fit(interactions, SideInfo(valid, user_features, item_features, graph))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "seen_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    def score_users(self, users: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Scores of every item (``B x n_items``) for a batch of user indices."""
        self._check_fitted()
        idx = np.asarray(users, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.users_)):
            raise ConfigError(f"user indices out of range 0..{len(self.users_) - 1}")
        return self._score_users(idx)

    def score_pairs(self, users: npt.ArrayLike, items: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Score of ``items[j]`` for ``users[j]`` (indices, same length): what
        ``score_users(users)[j, items[j]]`` holds, computed without scoring the whole catalogue
        where the model can (embedding models: one inner product per pair).

        >>> from recfunnel.candidates import make_generator
        >>> m = InteractionMatrix.from_arrays(list("aabbc"), list("xyxzx"))
        >>> make_generator("pop").fit(m).score_pairs([0, 2], [0, 1]).tolist()
        [3.0, 1.0]
        """
        self._check_fitted()
        u = np.asarray(users, dtype=np.int64).ravel()
        i = np.asarray(items, dtype=np.int64).ravel()
        if len(u) != len(i):
            raise ConfigError(f"score_pairs: {len(u)} users but {len(i)} items")
        if u.size and (u.min() < 0 or u.max() >= len(self.users_)):
            raise ConfigError(f"user indices out of range 0..{len(self.users_) - 1}")
        if i.size and (i.min() < 0 or i.max() >= len(self.items_)):
            raise ConfigError(f"item indices out of range 0..{len(self.items_) - 1}")
        return np.asarray(self._score_pairs(u, i), dtype=np.float32)

    def _score_pairs(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        """Default: dense scores of the distinct users (in chunks of at most ~16M cells),
        gathered. Models that can score a pair directly override this."""
        out = np.empty(len(users), np.float32)
        uniq, inverse = np.unique(users, return_inverse=True)
        step = max(1, _DENSE_CELLS // max(len(self.items_), 1))
        for a in range(0, len(uniq), step):
            sel = (inverse >= a) & (inverse < a + step)
            dense = self._score_users(uniq[a : a + step])
            out[sel] = dense[inverse[sel] - a, items[sel]]
        return out

    def top_unblocked(
        self, users: npt.ArrayLike, k: int, blocked: sp.csr_matrix
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Each user's ``k`` best items outside row ``r`` of ``blocked`` (``B x n_items``,
        e.g. seen plus excluded items): item indices and scores, ``B x k``, best first, ties to
        the lower index, padded with ``-1`` / ``-inf`` where fewer items are left.

        >>> from recfunnel.candidates import make_generator
        >>> m = InteractionMatrix.from_arrays(list("aabbc"), list("xyxzx"))
        >>> g = make_generator("pop").fit(m)
        >>> g.top_unblocked([2], 2, sp.csr_matrix(([1.0], ([0], [0])), shape=(1, 3)))[0]
        array([[1, 2]])
        """
        self._check_fitted()
        u = np.asarray(users, dtype=np.int64).ravel()
        if k <= 0:
            raise ConfigError(f"k must be positive, got {k}")
        if blocked.shape != (len(u), len(self.items_)):
            raise ConfigError(f"blocked must be {len(u)} x {len(self.items_)}, got {blocked.shape}")
        if u.size and (u.min() < 0 or u.max() >= len(self.users_)):
            raise ConfigError(f"user indices out of range 0..{len(self.users_) - 1}")
        return self._top_unblocked(u, int(k), blocked.tocsr())

    def _top_unblocked(
        self, users: npt.NDArray[np.int64], k: int, blocked: sp.csr_matrix
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Default: dense scores, blocked cells set to ``-inf``, exact top-k (in chunks)."""
        idx = np.full((len(users), k), -1, np.int64)
        val = np.full((len(users), k), -np.inf, np.float32)
        step = max(1, _DENSE_CELLS // max(len(self.items_), 1))
        for a in range(0, len(users), step):
            scores = np.array(self._score_users(users[a : a + step]), np.float32, copy=True)
            part = blocked[a : a + step]
            rows = np.repeat(np.arange(part.shape[0]), np.diff(part.indptr))
            scores[rows, part.indices] = -np.inf
            idx[a : a + step], val[a : a + step] = topk(scores, k)
        return idx, val

    def recommend(
        self, user_ids: Sequence[str], n: int = 10, *, exclude_seen: bool = True
    ) -> list[ScoredList]:
        """Top ``n`` items for each user id (unknown ids raise ``UnknownIdError``)."""
        if n <= 0:
            raise ConfigError(f"n must be positive, got {n}")
        self._check_fitted()
        users = self.users_.encode(user_ids)
        scores = np.array(self._score_users(users), dtype=np.float32, copy=True)
        if exclude_seen:
            seen = self.seen_[users]
            rows = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
            scores[rows, seen.indices] = -np.inf
        return self._to_lists(scores, n)

    def similar_items(self, item_ids: Sequence[str], n: int = 10) -> list[ScoredList]:
        """The ``n`` items most similar to each item id, the item itself excluded."""
        if n <= 0:
            raise ConfigError(f"n must be positive, got {n}")
        self._check_fitted()
        items = self.items_.encode(item_ids)
        scores = np.array(self._score_similar(items), dtype=np.float32, copy=True)
        scores[np.arange(len(items)), items] = -np.inf
        return self._to_lists(scores, n)

    def _to_lists(self, scores: npt.NDArray[np.float32], n: int) -> list[ScoredList]:
        idx, val = topk(scores, n)
        out = []
        for row_idx, row_val in zip(idx, val, strict=True):
            keep = row_idx >= 0
            out.append(
                ScoredList(
                    tuple(self.items_.decode(row_idx[keep]).tolist()),
                    tuple(float(v) for v in row_val[keep]),
                )
            )
        return out

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model to directory ``path`` atomically (arrays + JSON manifest)."""
        self._check_fitted()
        target = Path(path)
        arrays = dict(self._state())
        arrays["seen_indptr"] = self.seen_.indptr
        arrays["seen_indices"] = self.seen_.indices
        target.parent.mkdir(parents=True, exist_ok=True)
        with staged_directory(target) as tmp:
            manifest = {
                "format": ARTIFACT_FORMAT,
                "format_version": ARTIFACT_VERSION,
                "model": self.name,
                "params": self.get_params(),
                **write_arrays(tmp, arrays),
                "users": self.users_.to_manifest(),
                "items": self.items_.to_manifest(),
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        return target

    @classmethod
    def _from_artifact(cls, path: Path, manifest: dict[str, Any]) -> Self:
        model = cls(**manifest.get("params", {}))
        arrays = read_arrays(path, manifest)
        model.users_ = IdIndex.from_manifest(manifest["users"], source=str(path))
        model.items_ = IdIndex.from_manifest(manifest["items"], source=str(path))
        indptr = arrays.pop("seen_indptr")
        indices = arrays.pop("seen_indices")
        model.seen_ = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr),
            shape=(len(model.users_), len(model.items_)),
        )
        model._set_state(arrays)
        return model


@runtime_checkable
class EmbeddingModel(Protocol):
    """A generator whose scores are inner products of user and item vectors.

    ``score(u, i) = user_vectors([u]) @ item_vectors()[i]`` (after normalisation when
    ``metric == "cosine"``), which lets a vector index replace the dense scoring.
    """

    metric: str  # "dot" or "cosine"

    def user_vectors(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """``B x d`` vectors of known users."""
        ...

    def item_vectors(self) -> npt.NDArray[np.float32]:
        """``n_items x d`` vectors, row = item index."""
        ...


def pair_dot(
    user_vectors: npt.NDArray[np.floating],
    item_vectors: npt.NDArray[np.floating],
    users: npt.NDArray[np.int64],
    items: npt.NDArray[np.int64],
) -> npt.NDArray[np.float32]:
    """``user_vectors[users[j]] · item_vectors[items[j]]`` for each pair, in float64 rounded to
    float32 (as the dense scoring of the embedding models computes it)."""
    u = user_vectors[users].astype(np.float64)
    v = item_vectors[items].astype(np.float64)
    out: npt.NDArray[np.float32] = np.einsum("ij,ij->i", u, v).astype(np.float32)
    return out


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a saved generator, checked for format and version."""
    return read_manifest_file(
        path, format=ARTIFACT_FORMAT, version=ARTIFACT_VERSION, what="candidate generator artefact"
    )
