"""EASE: a closed-form linear item-item autoencoder.

Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data" (WWW '19). The weights solve

    min_B ‖X − X B‖²_F + λ ‖B‖²_F   subject to diag(B) = 0,

whose closed form is B = I − P · diag(1 / diag(P)) with P = (XᵀX + λI)⁻¹ (diag(B) set to 0).
Same model and default λ as RecBole's ``EASE``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.linalg

from recfunnel.candidates._gram import item_gram, mirror_upper
from recfunnel.core.errors import ConfigError
from recfunnel.core.generator import CandidateGenerator, SearchSpace, SideInfo
from recfunnel.core.matrix import InteractionMatrix


class EASE(CandidateGenerator):
    """score(u, ·) = x_u B, with B the dense ``n_items x n_items`` EASE weight matrix.

    ``reg`` is λ, the L2 penalty on B. As λ grows, B tends to XᵀX / λ off the diagonal: raw
    co-occurrence counts, which favour popular items.
    ``max_items`` bounds the catalogue size: fitting needs about ``n² · 4`` bytes at its peak
    with float32 (the dense Gram matrix, inverted and turned into B in place; ``n² · 12`` with
    float64, whose B is then copied to float32), so a larger
    catalogue is refused before anything is allocated; ``max_items=None`` lifts the bound.
    ``similar_items(i)`` ranks by row i of B: the scores of a user who has only item i.
    ``dtype``: precision of the Gram matrix and its Cholesky inverse. ``"float32"`` (default)
    halves memory and time; on MovieLens it changes B by at most ~5e-6 relative to ``"float64"``
    and leaves NDCG@10 identical (XᵀX + λI is well conditioned for λ ≥ ~10: its eigenvalues are
    ≥ λ). Use ``"float64"`` for a small λ with very popular items.

    >>> m = InteractionMatrix.from_arrays(list("aabbc"), list("xyxyx"))
    >>> EASE(reg=1.0).fit(m).recommend(["c"], n=1)[0].ids
    ('y',)
    """

    name: ClassVar[str] = "ease"
    search_space: ClassVar[SearchSpace] = {"reg": ("float", 10.0, 10_000.0, "log")}

    def __init__(
        self, reg: float = 250.0, max_items: int | None = 50_000, dtype: str = "float32"
    ) -> None:
        self.reg = reg
        self.max_items = max_items
        self.dtype = dtype

    def _fit(self, interactions: InteractionMatrix, side: SideInfo) -> None:
        if not self.reg > 0:
            # λ = 0 leaves XᵀX singular whenever two items share the same users (or one has none).
            raise ConfigError(f"EASE.reg must be > 0, got {self.reg}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"EASE.dtype must be 'float32' or 'float64', got {self.dtype!r}")
        n = interactions.n_items
        single = self.dtype == "float32"
        if self.max_items is not None and n > self.max_items:
            gib = n * n * (4 if single else 12) / 2**30
            raise ConfigError(
                f"EASE needs a dense {n:,} x {n:,} item-item matrix (about {gib:,.1f} GiB to fit), "
                f"above max_items={self.max_items:,}; filter rare items first, or pass "
                "max_items=None if the machine has the memory"
            )
        gram = item_gram(self.seen_, np.float32 if single else np.float64)
        gram[np.diag_indices(n)] += self.reg
        # Cholesky inverse (potrf + potri): half the flops of a general inverse, as XᵀX + λI is
        # symmetric positive definite. ``gram`` holds the upper triangle in C order; its
        # transpose is the same numbers in Fortran order, where they are the *lower* triangle,
        # which LAPACK then overwrites in place instead of copying.
        potrf, potri = (
            (scipy.linalg.lapack.spotrf, scipy.linalg.lapack.spotri)
            if single
            else (scipy.linalg.lapack.dpotrf, scipy.linalg.lapack.dpotri)
        )
        chol, info = potrf(gram.T, lower=True, overwrite_a=True)
        if info != 0:
            raise ConfigError(f"EASE: XᵀX + λI is not positive definite (LAPACK info {info})")
        del gram
        inv, info = potri(chol, lower=True, overwrite_c=True)
        if info != 0:
            raise ConfigError(f"EASE: inverting XᵀX + λI failed (LAPACK info {info})")
        p = mirror_upper(inv.T)  # C order again; the inverse is in its upper triangle
        # B_ij = -P_ij / P_jj off the diagonal, 0 on it.
        p /= -np.diag(p)[None, :]
        p[np.diag_indices(n)] = 0.0
        # C order: similar_items reads rows.
        self.weights_ = np.ascontiguousarray(p, dtype=np.float32)

    def warm_up(self) -> EASE:
        """Compile, or load from numba's on-disk cache, the Gram kernel now (a few tenths of a
        second once per process), so that the first large :meth:`fit` does not pay for it."""
        from recfunnel.candidates._gram_numba import warm_up

        warm_up()
        return self

    def _score_users(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.asarray(self.seen_[users] @ self.weights_, dtype=np.float32)

    def _score_similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return self.weights_[items]

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"weights": self.weights_}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.weights_ = arrays["weights"]
