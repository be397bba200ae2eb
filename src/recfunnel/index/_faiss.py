"""FAISS plumbing shared by the backends: threads, id maps, search, persistence, memory.

Every backend stores int64 *labels* (assigned by :class:`~recfunnel.core.index.VectorIndex`)
in FAISS, either natively (IVF) or through ``IndexIDMap2``; external string ids never reach
FAISS. All metrics are inner products (``METRIC_INNER_PRODUCT``); cosine is inner product on
normalised vectors (the base class normalises).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ArtifactError, ConfigError
from recfunnel.core.index import VectorIndex

#: Bytes per entry of ``IndexIDMap2``: the int64 id array plus the ``unordered_map`` reverse
#: map (key, value, node pointer, bucket; libstdc++), an estimate.
IDMAP2_BYTES_PER_ITEM = 8 + 40


def set_threads(n: int) -> None:
    """Set FAISS's OpenMP thread count (process-wide) if it differs.

    One thread by default: single-query latency is then stable and does not fight other
    work for cores; batch builds may use more (``build_threads``).
    """
    if faiss.omp_get_max_threads() != n:
        faiss.omp_set_num_threads(n)


def check_threads(value: int | None, name: str) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


class FaissIndex(VectorIndex):
    """A :class:`VectorIndex` over one FAISS index object (``self._index``)."""

    build_threads: int | None
    _index: Any

    def __init__(
        self, *, metric: str = "dot", threads: int = 1, build_threads: int | None = None
    ) -> None:
        super().__init__(metric=metric, threads=threads)
        check_threads(build_threads, "build_threads")
        self.build_threads = build_threads

    # ---- helpers for subclasses ----------------------------------------------------------
    def _build_threads(self) -> int:
        return self.build_threads or self.threads

    @property
    def faiss_index(self) -> Any:
        """The FAISS object searched (to time FAISS itself against this wrapper)."""
        self._check_built()
        return self._index

    def _configure(self) -> None:
        """(Re-)apply search-time parameters to ``self._index`` (after create and read)."""

    # ---- hooks ---------------------------------------------------------------------------
    def _add(self, vectors: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]) -> None:
        set_threads(self._build_threads())
        self._index.add_with_ids(vectors, labels)

    def _remove(self, labels: npt.NDArray[np.int64]) -> None:
        self._index.remove_ids(labels)

    def _search(
        self, queries: npt.NDArray[np.float32], k: int, widen: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        set_threads(self.threads)
        scores, labels = self._index.search(queries, k)
        return labels, scores

    def _ntotal(self) -> int:
        return int(self._index.ntotal)

    def _write(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    def _read(self, path: Path) -> None:
        try:
            self._index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise ArtifactError(f"{path}: FAISS cannot read this index: {exc}") from exc
        self._after_read(path)

    def _after_read(self, path: Path) -> None:
        self._configure()


class IdMappedIndex(FaissIndex):
    """Backends whose FAISS index has no ids of its own: wrapped in ``IndexIDMap2``.

    ``IndexIDMap2.remove_ids`` is correct only over indexes that delete by shifting the
    remaining entries down (flat, LSH); HNSW cannot delete at all (tombstones instead).
    """

    def _wrap(self, inner: Any) -> None:
        self._inner = inner
        self._index = faiss.IndexIDMap2(inner)

    def _after_read(self, path: Path) -> None:
        if not isinstance(self._index, faiss.IndexIDMap2):
            raise ArtifactError(f"{path}: expected an IndexIDMap2-wrapped FAISS index")
        self._inner = faiss.downcast_index(self._index.index)
        self._configure()

    def _id_map(self) -> npt.NDArray[np.int64]:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)

    def _id_map_bytes(self) -> int:
        return IDMAP2_BYTES_PER_ITEM * int(self._index.ntotal)
