"""Item-based k-nearest-neighbours with cosine similarity and shrinkage.

Sarwar et al. 2001, "Item-based collaborative filtering recommendation algorithms"; the
shrunk cosine and per-item top-k pruning follow Aiolli 2013 as implemented in RecBole's
``ItemKNN``, so the two agree up to ties at the k-th neighbour.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recfunnel.candidates._gram import item_gram, mirror_upper
from recfunnel.core.errors import ConfigError
from recfunnel.core.generator import CandidateGenerator, SearchSpace, SideInfo
from recfunnel.core.matrix import InteractionMatrix

#: Up to this many items the dense co-occurrence matrix is built whole (4096² float32 = 64 MiB);
#: above it, in column blocks of ``block_size``.
DENSE_MAX_ITEMS = 4096


def _top_neighbours(sim: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.bool_]:
    """Per row, the ``k`` largest positive entries (ties at the k-th value: lower column first,
    as :func:`recfunnel.core.topk.topk` breaks them), as a mask.

    Zero similarities are never neighbours, so only rows whose k-th value is positive and tied
    need the (costly) tie-break; the others keep everything above the k-th value.

    >>> _top_neighbours(np.array([[0.5, 0.9, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0]], np.float32), 2)
    array([[ True,  True, False, False],
           [False, False,  True, False]])
    """
    n = sim.shape[1]
    if k >= n:
        return sim > 0
    # The k-th largest value per row (0 for rows with at most k positive entries, which keep
    # them all): a numba kernel that partitions only the positive entries for large inputs.
    if sim.size >= 1_000_000 and sim.dtype == np.float32 and sim.flags.c_contiguous:
        from recfunnel.candidates._gram_numba import kth_largest_positive

        kth = kth_largest_positive(sim, k)
    else:
        kth = np.maximum(np.partition(sim, n - k, axis=1)[:, n - k], 0)
    # Rows with a positive k-th value: everything >= it, unless more ties than places remain.
    chosen = sim >= np.where(kth > 0, kth, np.inf)[:, None]
    chosen |= sim > np.maximum(kth, 0.0)[:, None]
    over = np.flatnonzero((kth > 0) & (chosen.sum(axis=1) > k))
    if len(over):
        sub = sim[over]
        at = sub == kth[over, None]
        need = k - (sub > kth[over, None]).sum(axis=1)
        chosen[over] = (sub > kth[over, None]) | (at & (np.cumsum(at, axis=1) <= need[:, None]))
    return chosen


class ItemKNN(CandidateGenerator):
    """score(u, j) = sum over items i the user has of sim(i, j), keeping for each target item
    j only its ``k`` most similar items.

    sim(i, j) = |U_i ∩ U_j| / (‖i‖ ‖j‖ + shrink + 1e-6) on the binary user-item matrix, with
    sim(i, i) = 0. ``shrink`` damps similarities resting on few co-occurrences.

    >>> m = InteractionMatrix.from_arrays(list("aabbcc"), list("xyxyzz"))
    >>> ItemKNN(k=1).fit(m).similar_items(["x"], n=1)[0].ids
    ('y',)
    """

    name: ClassVar[str] = "itemknn"
    search_space: ClassVar[SearchSpace] = {
        "k": ("int", 10, 1000, "log"),
        "shrink": ("float", 0.0, 100.0, "linear"),
    }

    def __init__(self, k: int = 100, shrink: float = 0.0, block_size: int = 1024) -> None:
        self.k = k
        self.shrink = shrink
        self.block_size = block_size

    def _fit(self, interactions: InteractionMatrix, side: SideInfo) -> None:
        if self.k <= 0:
            raise ConfigError(f"ItemKNN.k must be positive, got {self.k}")
        if self.shrink < 0:
            raise ConfigError(f"ItemKNN.shrink must be >= 0, got {self.shrink}")
        x = self.seen_.tocsc().astype(np.float32)
        n = x.shape[1]
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        k = min(self.k, n)
        if n <= DENSE_MAX_ITEMS:
            self.similarity_ = self._fit_dense(norms, k)
            return
        xt = x.T.tocsr()
        rows: list[npt.NDArray[np.int64]] = []
        vals: list[npt.NDArray[np.float32]] = []
        counts: list[npt.NDArray[np.int64]] = []
        # Column blocks of the item-item Gram matrix keep memory at n x block_size.
        for start in range(0, n, self.block_size):
            stop = min(start + self.block_size, n)
            gram = (xt @ x[:, start:stop]).toarray()  # n x b: co-occurrence counts
            block = np.arange(start, stop)
            gram[block, np.arange(stop - start)] = 0.0
            denom = norms[:, None] * norms[None, start:stop] + self.shrink + 1e-6
            sim = np.ascontiguousarray((gram / denom).T, dtype=np.float32)  # row = target j
            chosen = _top_neighbours(sim, k)
            j, i = np.nonzero(chosen)  # by target j, then neighbour i: W's CSC order
            rows.append(i)
            vals.append(sim[j, i])
            counts.append(np.bincount(j, minlength=stop - start))
        # W[i, j] = sim(i, j) if i is among the k neighbours of j.
        indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
        self.similarity_ = sp.csc_matrix(
            (np.concatenate(vals), np.concatenate(rows), indptr), shape=(n, n), dtype=np.float32
        ).tocsr()

    def warm_up(self) -> ItemKNN:
        """Compile, or load from numba's on-disk cache, the co-occurrence kernel now (once per
        process), so that the first :meth:`fit` of a small catalogue does not pay for it."""
        from recfunnel.candidates._gram_numba import warm_up

        warm_up()
        return self

    def _fit_dense(self, norms: npt.NDArray[np.float32], k: int) -> sp.csr_matrix:
        """Small catalogues: the whole co-occurrence matrix at once (one Gram kernel pass,
        then one selection), instead of column blocks of sparse products."""
        n = len(norms)
        sim = mirror_upper(item_gram(self.seen_, np.float32))  # co-occurrence counts
        np.fill_diagonal(sim, 0.0)
        # Symmetric: row j holds sim(·, j), so rows are the targets.
        sim /= (norms[:, None] * norms[None, :] + self.shrink + 1e-6).astype(np.float32)
        chosen = _top_neighbours(sim, k)
        j, i = np.nonzero(chosen)  # by target j, then neighbour i: W's CSC order
        indptr = np.concatenate([[0], np.cumsum(np.bincount(j, minlength=n))])
        return sp.csc_matrix((sim[j, i], i, indptr), shape=(n, n), dtype=np.float32).tocsr()

    def _score_users(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return np.asarray((self.seen_[users] @ self.similarity_).toarray(), dtype=np.float32)

    def _score_similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        # Row i of W^T: the items j that keep i among their neighbours, symmetric before pruning.
        sim_t = self.similarity_.T.tocsr()
        return np.asarray(sim_t[items].toarray(), dtype=np.float32)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        w = self.similarity_
        return {"w_data": w.data, "w_indices": w.indices, "w_indptr": w.indptr}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        n = len(arrays["w_indptr"]) - 1
        self.similarity_ = sp.csr_matrix(
            (arrays["w_data"], arrays["w_indices"], arrays["w_indptr"]), shape=(n, n)
        )
