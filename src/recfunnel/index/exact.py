"""Exact search: FAISS ``IndexFlatIP`` (brute force, BLAS) behind ``IndexIDMap2``.

Every query scans every vector, so results equal numpy's ``queries @ vectors.T`` top-k (ties
aside) and latency grows linearly with the catalogue. Memory: ``4·d`` bytes per item plus the
id map. Adding appends; removing is native (``remove_ids`` shifts the remaining vectors,
``O(n)`` per call).
"""

from __future__ import annotations

import faiss
import numpy as np
import numpy.typing as npt

from recfunnel.index._faiss import IdMappedIndex


class ExactIndex(IdMappedIndex):
    """Brute-force inner-product search (the reference every other kind is measured by).

    >>> import numpy as np
    >>> index = ExactIndex().build(np.eye(3, dtype=np.float32), ["a", "b", "c"])
    >>> ids, scores = index.search([[0.1, 0.9, 0.5]], 2)
    >>> ids.tolist(), [round(float(s), 2) for s in scores[0]]
    ([['b', 'c']], [0.9, 0.5])
    """

    kind = "exact"
    exact = True
    removal = "native"

    def __init__(
        self, *, metric: str = "dot", threads: int = 1, build_threads: int | None = None
    ) -> None:
        super().__init__(metric=metric, threads=threads, build_threads=build_threads)

    def _create(self, vectors: npt.NDArray[np.float32]) -> None:
        self._wrap(faiss.IndexFlatIP(vectors.shape[1]))

    def _stored(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        n = int(self._inner.ntotal)
        return self._id_map(), self._inner.reconstruct_n(0, n)

    def _structure_bytes(self) -> int:
        return 4 * int(self._inner.ntotal) * int(self._inner.d) + self._id_map_bytes()
