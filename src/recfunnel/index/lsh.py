"""Binary hashing: FAISS ``IndexLSH`` (random-rotation sign bits, Hamming distance).

Each vector becomes ``nbits`` sign bits of random projections (SimHash); a query scans every
code by Hamming distance (fast popcounts, but still linear in the catalogue). The fraction of
differing bits estimates the angle between query and item, so scores are reported as the
estimated cosine ``cos(π · hamming / nbits)`` (higher is better).

Quality trade-off: LSH only sees *angles*, never norms, so it supports ``metric="cosine"``
only (for dot-product models, whose item norms carry popularity, it would rank wrongly; use
``hnsw`` / ``ivfpq`` there). Its estimate is coarse (ties are common, recall is well below
HNSW's at equal memory); more bits help slowly (error ∝ ``1/√nbits``). Its merits are a
training-free build, ``nbits / 8`` bytes per item, and native add/remove.
"""

from __future__ import annotations

import faiss
import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError
from recfunnel.index._faiss import IdMappedIndex


class LSHIndex(IdMappedIndex):
    """Random-hyperplane LSH over ``nbits`` bits per vector (default ``4·d``), cosine only.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    >>> index = LSHIndex(metric="cosine").build(x, range(100))
    >>> index.search(x[7], 1)[0].tolist()
    [['7']]
    """

    kind = "lsh"
    exact = False
    removal = "native"
    metrics = ("cosine",)

    def __init__(
        self,
        *,
        metric: str = "cosine",
        nbits: int | None = None,
        threads: int = 1,
        build_threads: int | None = None,
    ) -> None:
        if metric == "dot":
            raise ConfigError(
                "lsh supports metric='cosine' only: sign-bit hashes see angles, not norms, so "
                "they cannot rank by inner product; use hnsw or ivfpq for dot-product models"
            )
        super().__init__(metric=metric, threads=threads, build_threads=build_threads)
        if nbits is not None and (not isinstance(nbits, int) or nbits < 1):
            raise ConfigError(f"lsh: nbits must be a positive integer, got {nbits!r}")
        self.nbits = nbits

    def _create(self, vectors: npt.NDArray[np.float32]) -> None:
        d = vectors.shape[1]
        nbits = self.nbits if self.nbits is not None else 4 * d
        inner = faiss.IndexLSH(d, nbits, True, False)  # rotate_data, no trained thresholds
        inner.train(vectors[: min(len(vectors), 1000)])  # only initialises the rotation
        self._wrap(inner)
        self._configure()

    def _configure(self) -> None:
        self.nbits_ = int(self._inner.nbits)

    def _search(
        self, queries: npt.NDArray[np.float32], k: int, widen: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        labels, hamming = super()._search(queries, k, widen)
        # Hamming distance -> estimated cosine: higher is better, like every other kind.
        scores = np.cos(np.pi * hamming / self.nbits_).astype(np.float32)
        return labels, scores

    def _structure_bytes(self) -> int:
        inner = self._inner
        codes = int(inner.ntotal) * int(inner.code_size)
        rotation = 4 * int(inner.d) * self.nbits_
        return codes + rotation + self._id_map_bytes()
