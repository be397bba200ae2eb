"""Compressed search: FAISS ``IndexIVFPQ`` (inverted file + product quantisation).

Vectors are assigned to one of ``nlist`` coarse centroids (k-means) and stored as PQ codes
of ``m`` bytes (``nbits`` = 8): ``m + 8`` bytes per item (code + id) instead of ``4·d``, e.g.
24 bytes instead of 256 for 64-d with ``m = 16``. A query scans the ``nprobe`` closest lists
and ranks by *approximate* inner products, so recall is capped by the quantisation error even
with ``nprobe = nlist``. Pick it when the catalogue does not fit in memory as floats.

Building trains k-means for the lists and the PQ codebooks on (a sample of ``max_train`` of)
the vectors; items added later are encoded with the trained codebooks, which degrade if the
item distribution drifts (rebuild then). Ids are native to IVF (no id map); removal is native
(``remove_ids`` drops entries from their lists).

A search that comes back short after exclusion is repeated with ``nprobe`` doubled each
time, finally with ``nprobe = nlist`` (all lists: the exhaustive fallback).
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ArtifactError, ConfigError, DataError
from recfunnel.index._faiss import FaissIndex, set_threads

#: Vectors per centroid k-means wants at least (FAISS warns below 39).
MIN_POINTS_PER_CENTROID = 39


def default_m(d: int) -> int:
    """PQ sub-quantisers: the divisor of ``d`` closest to ``d / 4`` (4 dims per byte code).

    >>> default_m(64), default_m(100), default_m(7)
    (16, 25, 1)
    """
    divisors = [m for m in range(1, d + 1) if d % m == 0]
    return min(divisors, key=lambda m: (abs(m - d / 4), -m))


class IVFPQIndex(FaissIndex):
    """Approximate search over PQ-compressed vectors in ``nlist`` inverted lists.

    ``nlist`` (default ``≈ √n``, at most ``n / 39``) and ``m`` (default: the divisor of ``d``
    nearest ``d / 4``) are resolved at ``build`` into ``nlist_`` and ``m_``.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)
    >>> index = IVFPQIndex(nbits=6).build(x, range(2000))
    >>> (index.nlist_, index.m_, index.memory_bytes(include_ids=False) < x.nbytes)
    (45, 4, True)
    """

    kind = "ivfpq"
    exact = False
    removal = "native"

    def __init__(
        self,
        *,
        metric: str = "dot",
        nlist: int | None = None,
        m: int | None = None,
        nbits: int = 8,
        nprobe: int = 16,
        max_train: int = 100_000,
        seed: int = 1234,
        threads: int = 1,
        build_threads: int | None = None,
    ) -> None:
        super().__init__(metric=metric, threads=threads, build_threads=build_threads)
        for name, value in (("nlist", nlist), ("m", m)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"ivfpq: {name} must be a positive integer, got {value!r}")
        if not isinstance(nbits, int) or not 1 <= nbits <= 16:
            raise ConfigError(f"ivfpq: nbits must be an integer in 1..16, got {nbits!r}")
        if not isinstance(nprobe, int) or nprobe < 1:
            raise ConfigError(f"ivfpq: nprobe must be a positive integer, got {nprobe!r}")
        if not isinstance(max_train, int) or max_train < 1:
            raise ConfigError(f"ivfpq: max_train must be a positive integer, got {max_train!r}")
        self.nlist = nlist
        self.m = m
        self.nbits = nbits
        self.nprobe = nprobe
        self.max_train = max_train
        self.seed = seed

    def _create(self, vectors: npt.NDArray[np.float32]) -> None:
        n, d = vectors.shape
        m = self.m if self.m is not None else default_m(d)
        if d % m:
            raise ConfigError(f"ivfpq: m={m} must divide the dimension {d}")
        nlist = self.nlist
        if nlist is None:
            nlist = max(1, min(round(math.sqrt(n)), n // MIN_POINTS_PER_CENTROID))
        train_n = min(n, self.max_train)
        if train_n < nlist or train_n < 2**self.nbits:
            raise DataError(
                f"ivfpq: training needs at least max(nlist={nlist}, 2**nbits={2**self.nbits}) "
                f"vectors, got {train_n}; lower nlist/nbits or use exact/hnsw for tiny catalogues"
            )
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFPQ(quantizer, d, nlist, m, self.nbits, faiss.METRIC_INNER_PRODUCT)
        # Keep the quantiser alive as long as the index (SWIG does not own it otherwise).
        self._quantizer = quantizer
        index.cp.seed = self.seed
        index.pq.cp.seed = self.seed + 1
        # FAISS prints a warning on stderr for every sub-quantiser when it has fewer than 39
        # training points per code; a small catalogue is accepted knowingly (the codebooks are
        # then as good as the data allows, which recall@k reports), so ask for what we have.
        index.pq.cp.min_points_per_centroid = max(1, min(39, train_n // 2**self.nbits))
        if train_n < n:
            rng = np.random.default_rng(self.seed)
            sample = vectors[np.sort(rng.choice(n, size=train_n, replace=False))]
        else:
            sample = vectors
        set_threads(self._build_threads())
        index.train(np.ascontiguousarray(sample))
        self._index = index
        self._configure()

    def _after_read(self, path: Path) -> None:
        if not isinstance(self._index, faiss.IndexIVFPQ):
            raise ArtifactError(f"{path}: expected a FAISS IndexIVFPQ")
        self._configure()

    def _configure(self) -> None:
        index = self._index
        self.nlist_ = int(index.nlist)
        self.m_ = int(index.pq.M)
        index.nprobe = self._nprobe_applied = min(self.nprobe, self.nlist_)

    def _search(
        self, queries: npt.NDArray[np.float32], k: int, widen: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        if widen == 0:
            # `index.nprobe = 32` takes effect on the next search.
            if self._nprobe_applied != min(self.nprobe, self.nlist_):
                self._index.nprobe = self._nprobe_applied = min(int(self.nprobe), self.nlist_)
            return super()._search(queries, k, widen)
        return self._search_nprobe(queries, k, min(self.nlist_, self.nprobe << widen))

    def _search_exhaustive(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        return self._search_nprobe(queries, k, self.nlist_)

    def _search_nprobe(
        self, queries: npt.NDArray[np.float32], k: int, nprobe: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        set_threads(self.threads)
        params = faiss.SearchParametersIVF()
        params.nprobe = nprobe
        scores, labels = self._index.search(queries, k, params=params)
        return labels, scores

    def _structure_bytes(self) -> int:
        index = self._index
        d = int(index.d)
        codes = int(index.ntotal) * (int(index.code_size) + 8)  # code + int64 id per entry
        coarse = 4 * self.nlist_ * d
        codebooks = 4 * (1 << int(index.pq.nbits)) * d
        return codes + coarse + codebooks
