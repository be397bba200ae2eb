"""Graph search: FAISS ``IndexHNSWFlat`` (inner product) behind ``IndexIDMap2``.

HNSW (Malkov & Yashunin) walks a layered proximity graph: sub-millisecond to a few
milliseconds per query at a million items, recall set by ``ef_search`` (candidates kept
during the walk; FAISS uses ``max(ef_search, k)``) and ``M`` (links per node: memory
``≈ 4·d + 8·M`` bytes per item plus the id map). Building is the slow part (``ef_construction``
trades build time for graph quality) and parallelises (``build_threads``).

Adding is native (new nodes are linked into the graph). **Removal is not**: FAISS's HNSW
cannot unlink a node, so ``remove`` leaves a *tombstone*: the item stays in the graph (still
routing searches, still using memory) and is filtered out of results by over-fetching;
``compact()`` rebuilds the graph from the live vectors to reclaim memory and restore recall
once many items are tombstoned (e.g. expired ephemeral items, nightly).

When an over-fetched search still comes back short (heavy exclusion, many tombstones), the
exhaustive fallback scans the flat vector storage under the graph, so results stay correct.
"""

from __future__ import annotations

import faiss
import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError
from recfunnel.index._faiss import IdMappedIndex, set_threads


class HNSWIndex(IdMappedIndex):
    """Approximate search on an HNSW graph (``M``, ``ef_construction``, ``ef_search``).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 8)).astype(np.float32)
    >>> index = HNSWIndex(M=8).build(x, [f"i{j}" for j in range(200)])
    >>> index.search(x[3], 1, exclude=[{"i3"}])[0].shape
    (1, 1)
    >>> index.remove(["i5"]).n_tombstones
    1
    """

    kind = "hnsw"
    exact = False
    removal = "tombstone"

    def __init__(
        self,
        *,
        metric: str = "dot",
        M: int = 32,
        ef_construction: int = 40,
        ef_search: int = 128,
        threads: int = 1,
        build_threads: int | None = None,
    ) -> None:
        super().__init__(metric=metric, threads=threads, build_threads=build_threads)
        for name, value, low in (("M", M, 2), ("ef_construction", ef_construction, 1),
                                 ("ef_search", ef_search, 1)):  # fmt: skip
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"hnsw: {name} must be an integer >= {low}, got {value!r}")
        self.M = M
        self.ef_construction = ef_construction
        self.ef_search = ef_search

    def _create(self, vectors: npt.NDArray[np.float32]) -> None:
        inner = faiss.IndexHNSWFlat(vectors.shape[1], self.M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = self.ef_construction
        self._wrap(inner)
        self._configure()

    def _configure(self) -> None:
        self._inner.hnsw.efSearch = self.ef_search
        self._ef_applied = self.ef_search
        self._storage = faiss.downcast_index(self._inner.storage)

    def _search(
        self, queries: npt.NDArray[np.float32], k: int, widen: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        # `index.ef_search = 256` takes effect on the next search (FAISS: max(ef, k)).
        if self._ef_applied != self.ef_search:
            self._inner.hnsw.efSearch = self._ef_applied = int(self.ef_search)
        return super()._search(queries, k, widen)

    def _search_exhaustive(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        # Brute force over the flat storage under the graph; positions -> labels by id map.
        set_threads(self.threads)
        scores, pos = self._storage.search(queries, k)
        id_map = self._id_map()
        labels = np.where(pos >= 0, id_map[np.maximum(pos, 0)], -1)
        return labels, scores

    def _stored(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        n = int(self._storage.ntotal)
        return self._id_map(), self._storage.reconstruct_n(0, n)

    def _structure_bytes(self) -> int:
        n, d = int(self._inner.ntotal), int(self._inner.d)
        hnsw = self._inner.hnsw
        graph = 4 * hnsw.neighbors.size() + 4 * hnsw.levels.size() + 8 * hnsw.offsets.size()
        return 4 * n * d + int(graph) + self._id_map_bytes()
