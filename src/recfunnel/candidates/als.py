"""Alternating least squares for implicit feedback, with fold-in of new or changed users.

Hu, Koren & Volinsky 2008, "Collaborative Filtering for Implicit Feedback Datasets" (ICDM '08):
every (user, item) cell has preference p = 1 if the user interacted with the item, else 0, and
confidence c = 1 + alpha · r (r = 1 for an interaction, 0 otherwise); ALS minimises

    Σ_u,i c_ui (p_ui − x_uᵀ y_i)² + λ (Σ_u ‖x_u‖² + Σ_i ‖y_i‖²)

by alternately solving for all user vectors and all item vectors. The ``implicit`` library
(Frederickson, Takács et al.'s conjugate-gradient ALS) does the fitting; fold-in is the exact
user step written here in numpy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse as sp

from recfunnel.core.errors import ConfigError
from recfunnel.core.generator import (
    CandidateGenerator,
    ScoredList,
    SearchSpace,
    SideInfo,
    pair_dot,
)
from recfunnel.core.matrix import InteractionMatrix

#: Item histories of users to fold in: one list of item ids per user, or a users x items sparse
#: matrix over the model's item index (nonzeros are interactions).
Histories: TypeAlias = Sequence[Sequence[str]] | sp.spmatrix | sp.sparray

#: ``regularization="auto"`` sets λ to this times the mean number of interactions per (active)
#: user. Tuned on validation data: the best λ on MovieLens-100k (85 per user) was ~30 and on
#: MovieLens-1M (133 per user) ~45; an absolute λ that suits them swamps the data of a small
#: log (with 4 interactions per user λ = 30 shrinks every vector to noise).
AUTO_REG_PER_INTERACTION = 0.35


class ALS(CandidateGenerator):
    """score(u, i) = x_uᵀ y_i with ``factors``-dimensional user and item vectors.

    ``regularization`` is λ, or ``"auto"``: 0.35 x the mean number of interactions per user
    (:data:`AUTO_REG_PER_INTERACTION`), as the best λ grows with the data per user; the λ used
    is ``regularization_``. ``alpha`` scales the confidence of observed interactions (c = 1 +
    alpha; alpha = 0 weighs them like the unobserved cells: plain least squares on the binary
    matrix). ``use_cg`` picks implicit's conjugate-gradient solver (3 steps per vector and
    iteration, warm-started; fast) over its exact Cholesky solver. ``num_threads`` 0 uses
    every core. Interactions are binary: repeats and values are ignored.

    :meth:`fold_in` computes vectors for users from their item histories without refitting,
    and :meth:`recommend_new` recommends from such histories for users the model never saw.
    ``similar_items`` ranks by the cosine of item vectors.

    >>> m = InteractionMatrix.from_arrays(list("aabbcc"), list("xyxyzw"))
    >>> model = ALS(factors=2, iterations=10).fit(m)
    >>> model.recommend_new([["x"]], n=1)[0].ids
    ('y',)
    """

    name: ClassVar[str] = "als"
    metric: ClassVar[str] = "dot"
    search_space: ClassVar[SearchSpace] = {
        "factors": ("int", 16, 512, "log"),
        "regularization": ("float", 1e-2, 1e3, "log"),
        "alpha": ("float", 0.1, 100.0, "log"),
    }

    def __init__(
        self,
        factors: int = 64,
        regularization: float | str = "auto",
        alpha: float = 2.0,
        iterations: int = 15,
        use_cg: bool = True,
        seed: int = 0,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.use_cg = use_cg
        self.seed = seed
        self.num_threads = num_threads

    # ---- the contract -------------------------------------------------------------------
    def _fit(self, interactions: InteractionMatrix, side: SideInfo) -> None:
        self._check_params()
        reg = self._regularization_for(self.seen_)
        from implicit.cpu.als import AlternatingLeastSquares

        confidence = self.seen_.astype(np.float32)
        # implicit reads the matrix values as the confidence c itself (with its own alpha = 1);
        # giving it 1 + alpha·r makes alpha mean what it means in Hu et al.
        confidence.data = 1.0 + np.float32(self.alpha) * confidence.data
        with _one_blas_thread():
            engine = AlternatingLeastSquares(
                factors=self.factors,
                regularization=reg,
                alpha=1.0,
                dtype=np.float32,
                use_cg=self.use_cg,
                iterations=self.iterations,
                num_threads=self.num_threads,
                random_state=self.seed,
            )
            engine.fit(confidence, show_progress=False)
        self.regularization_ = reg
        self.user_factors_ = np.ascontiguousarray(engine.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(engine.item_factors, dtype=np.float32)

    def _check_params(self) -> None:
        for pname in ("factors", "iterations"):
            value = getattr(self, pname)
            if not isinstance(value, int | np.integer) or value <= 0:
                raise ConfigError(f"ALS.{pname} must be a positive integer, got {value!r}")
        reg = self.regularization
        valid_reg = reg == "auto" if isinstance(reg, str) else _is_number(reg) and float(reg) >= 0
        if not valid_reg:
            raise ConfigError(f"ALS.regularization must be a number >= 0 or 'auto', got {reg!r}")
        if not (_is_number(self.alpha) and self.alpha >= 0):
            raise ConfigError(f"ALS.alpha must be a number >= 0, got {self.alpha!r}")
        if not isinstance(self.num_threads, int | np.integer) or self.num_threads < 0:
            raise ConfigError(
                f"ALS.num_threads must be >= 0 (0: all cores), got {self.num_threads}"
            )

    def _regularization_for(self, seen: sp.csr_matrix) -> float:
        if self.regularization != "auto":
            return float(self.regularization)
        active = max(int((np.diff(seen.indptr) > 0).sum()), 1)
        return float(AUTO_REG_PER_INTERACTION * seen.nnz / active)

    def _score_users(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return _dot(self.user_factors_[users], self.item_factors_)

    def _score_pairs(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        return pair_dot(self.user_factors_, self.item_factors_, users, items)

    def _score_similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        # Cosine, as implicit's similar_items: raw inner products favour the long vectors of
        # popular items whatever the query.
        norms = np.linalg.norm(self.item_factors_.astype(np.float64), axis=1)
        unit = self.item_factors_ / np.maximum(norms, 1e-12)[:, None]
        return _dot(unit[items], unit)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
            "regularization": np.array(self.regularization_, dtype=np.float64),
        }

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]
        self.regularization_ = float(arrays["regularization"])

    # ---- EmbeddingModel -------------------------------------------------------------------
    def user_vectors(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """``B x factors`` vectors of known users (by index)."""
        self._check_fitted()
        return self.user_factors_[np.asarray(users, dtype=np.int64)]

    def item_vectors(self) -> npt.NDArray[np.float32]:
        """``n_items x factors`` item vectors, row = item index."""
        self._check_fitted()
        return self.item_factors_

    # ---- fold-in ------------------------------------------------------------------------------
    def fold_in(self, histories: Histories) -> npt.NDArray[np.float32]:
        """Vectors (``B x factors``) of users with the given item histories, item vectors fixed.

        This is the exact ALS user step, x_u = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u, so a new user, or a
        known one whose history changed, gets the vector a refit would give them before the
        item vectors move. ``histories`` is one list of item ids per user (ids unknown to the
        model are skipped: they have no vector) or a sparse users x items matrix over the
        model's item index. An empty history gives the zero vector.
        """
        self._check_fitted()
        rows = self._history_matrix(histories)
        y = self.item_factors_.astype(np.float64)
        k = y.shape[1]
        base = y.T @ y + self.regularization_ * np.eye(k)
        out = np.zeros((rows.shape[0], k), dtype=np.float32)
        c_obs = 1.0 + float(self.alpha)
        for u in range(rows.shape[0]):
            idx = rows.indices[rows.indptr[u] : rows.indptr[u + 1]]
            if not len(idx):
                continue
            yu = y[idx]
            # YᵀC_uY = YᵀY + Yᵤᵀ(C_u − I)Yᵤ: only the user's own items differ from c = 1.
            a = base + (c_obs - 1.0) * (yu.T @ yu)
            b = c_obs * yu.sum(axis=0)
            out[u] = scipy.linalg.solve(a, b, assume_a="pos")
        return out

    def recommend_new(
        self, histories: Histories, n: int = 10, *, exclude_seen: bool = True
    ) -> list[ScoredList]:
        """Top ``n`` items for users known only by their item histories (see :meth:`fold_in`);
        with ``exclude_seen`` the history's own items are left out."""
        if n <= 0:
            raise ConfigError(f"n must be positive, got {n}")
        self._check_fitted()
        rows = self._history_matrix(histories)
        scores = _dot(self.fold_in(rows), self.item_factors_)
        if exclude_seen:
            scores[
                np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr)), rows.indices
            ] = -np.inf
        return self._to_lists(scores, n)

    def _history_matrix(self, histories: Histories) -> sp.csr_matrix:
        """Binary users x items CSR over the model's item index."""
        n_items = len(self.items_)
        if sp.issparse(histories):
            rows = sp.csr_matrix(histories, dtype=np.float32)
            if rows.shape[1] != n_items:
                raise ConfigError(
                    f"history matrix has {rows.shape[1]} columns, the model has {n_items} items"
                )
            rows.eliminate_zeros()
        else:
            if isinstance(histories, str):
                raise ConfigError("histories must be one list of item ids per user, not a string")
            if any(isinstance(h, str) for h in histories):
                raise ConfigError("each history must be a list of item ids, not a string")
            lists = [[str(i) for i in h] for h in histories]
            idx = self.items_.encode([i for h in lists for i in h], missing="ignore")
            user = np.repeat(np.arange(len(lists)), [len(h) for h in lists])
            keep = idx >= 0
            rows = sp.csr_matrix(
                (np.ones(int(keep.sum()), np.float32), (user[keep], idx[keep])),
                shape=(len(lists), n_items),
            )
        rows.sum_duplicates()
        rows.data[:] = 1.0
        rows.sort_indices()
        return rows


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def _dot(
    queries: npt.NDArray[np.float32], items: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """``queries @ items.T`` in float64, rounded to float32.

    A float32 BLAS product rounds differently with the batch size (matrix-matrix vs.
    matrix-vector kernels), so a user's scores, and the order of near-ties, would depend on who
    else is in the batch; float64 errors are far below float32 resolution.
    """
    return (queries.astype(np.float64) @ items.T.astype(np.float64)).astype(np.float32)


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """implicit parallelises over users itself; a multi-threaded BLAS inside each of its threads
    oversubscribes the cores (implicit warns of up to 10x slowdowns)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # implicit depends on it, but only warns without it
        yield
        return
    with threadpool_limits(1, "blas"):
        yield
