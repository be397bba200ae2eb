r"""Vector indexes for embedding retrieval: one FAISS backend per module, and the registry.

| kind  | FAISS structure        | search            | bytes/item (64-d) | add    | remove      |
|-------|------------------------|-------------------|-------------------|--------|-------------|
| exact | IndexFlatIP + IDMap2   | exact, O(n)       | 256 + id map      | native | native      |
| hnsw  | IndexHNSWFlat + IDMap2 | graph walk        | 256 + 8·M + id map| native | tombstone * |
| ivfpq | IndexIVFPQ             | nprobe lists, PQ  | m + 8 (24 at m=16)| native | native      |
| lsh   | IndexLSH + IDMap2      | Hamming, O(n)     | nbits/8 + id map  | native | native      |

\* FAISS's HNSW cannot delete: removed items are tombstones, filtered out at search time,
until ``compact()`` rebuilds the graph. ``lsh`` is cosine-only. The id map (``IndexIDMap2``)
costs about 48 B per item, and the Python side keeps the external id strings. Measured
trade-offs: :mod:`recfunnel.index.selection`.

The registry maps a kind to ``"module:Class"`` and imports lazily, so importing this package
does not import FAISS.

>>> import numpy as np
>>> index = make_index("exact", metric="cosine")
>>> index.build(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]), ["x", "y", "z"])
ExactIndex(metric='cosine', threads=1, build_threads=None, n=3)
>>> index.search([[1.0, 0.2]], 2, exclude=[["x"]])[0].tolist()
[['z', 'y']]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from recfunnel.core.errors import ArtifactError
from recfunnel.core.index import VectorIndex, read_index_manifest
from recfunnel.core.registry import construct, resolve

#: Kind -> "module:Class". Manifests name their kind here; nothing is imported by a path that
#: a file supplies.
REGISTRY: dict[str, str] = {
    "exact": "recfunnel.index.exact:ExactIndex",
    "hnsw": "recfunnel.index.hnsw:HNSWIndex",
    "ivfpq": "recfunnel.index.ivfpq:IVFPQIndex",
    "lsh": "recfunnel.index.lsh:LSHIndex",
}


def index_class(kind: str) -> type[VectorIndex]:
    """The class registered under ``kind``."""
    cls: type[VectorIndex] = resolve(REGISTRY, kind, "index kind")
    return cls


def make_index(kind: str, *, metric: str = "dot", **params: Any) -> VectorIndex:
    """A new, empty index of ``kind`` (exact, hnsw, ivfpq, lsh); ``params`` are the backend's
    keyword arguments (e.g. ``M``, ``ef_search`` for hnsw; ``nlist``, ``m``, ``nbits``,
    ``nprobe`` for ivfpq; ``nbits`` for lsh; ``threads`` for all).

    >>> make_index("hnsw", M=16, ef_search=64)
    HNSWIndex(metric='dot', M=16, ef_construction=40, ef_search=64, threads=1, build_threads=None)
    >>> make_index("hnsw", efSearch=64)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.ConfigError: hnsw index has no parameter(s) ['efSearch']; it takes [...]
    """
    cls = index_class(kind)
    index: VectorIndex = construct(cls, {"metric": metric, **params}, label=f"{cls.kind} index")
    return index


def load_index(path: str | os.PathLike[str]) -> VectorIndex:
    """Load a saved index of any registered kind (see ``VectorIndex.save``)."""
    manifest = read_index_manifest(path)
    kind = manifest.get("kind", "")
    if kind not in REGISTRY:
        raise ArtifactError(f"{path}: unknown index kind {kind!r}")
    return index_class(kind)._from_artifact(Path(path), manifest)


__all__ = ["REGISTRY", "VectorIndex", "index_class", "load_index", "make_index"]
