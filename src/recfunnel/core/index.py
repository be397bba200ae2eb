"""The ``VectorIndex`` contract: nearest-neighbour search over item vectors by external id.

A vector index answers "which stored vectors score highest against this query?" for a
two-tower / matrix-factorisation model (see :class:`~recfunnel.core.generator.EmbeddingModel`).
Scores are always **higher is better**:

* ``metric="dot"``: maximum inner product search (MIPS), ``score = q · x``;
* ``metric="cosine"``: vectors and queries are L2-normalised, then ``score = q̂ · x̂``
  (zero vectors stay zero rather than becoming NaN).

This module holds everything that does not depend on the search library: id bookkeeping
(external string ids <-> the int64 labels the library stores), input validation, exclusion
of already-seen items by over-fetching, tombstones for backends that cannot delete, and
persistence (a library file next to a checksummed JSON manifest; never pickles).
Backends (``recfunnel.index``) implement a handful of ``_``-prefixed hooks and import their
library (FAISS) themselves, so ``core`` stays free of it.

Exclusion (``search(..., exclude=...)``) works by over-fetching: the first request asks the
backend for ``k + |tombstones| + max |excluded ∩ index|`` results, which is always enough for
an exhaustive backend. Approximate backends can return fewer than asked (an IVF list holds
too few items, a graph walk ends early); rows still short of ``k`` are asked again with the
fetch size doubled and the backend told to widen its search (``widen`` = number of
doublings), and once the fetch would reach the whole index the backend's exhaustive search is
used. So a row has exactly ``k`` ids whenever ``k`` non-excluded items exist, and never an
excluded or removed one.
"""

from __future__ import annotations

import json
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from recfunnel.core.artifact import read_manifest_file, sha256_file, staged_directory
from recfunnel.core.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    NotFittedError,
    UnknownIdError,
)
from recfunnel.core.params import Params

INDEX_FORMAT = "recfunnel.VectorIndex"
INDEX_FORMAT_VERSION = 1
METRICS = ("dot", "cosine")
#: File names inside a saved index directory.
MANIFEST_FILE = "manifest.json"
DATA_FILE = "index.bin"

#: What ``exclude`` may hold per query row: ids (any iterable of str) or nothing.
ExcludeRow = Iterable[str] | npt.NDArray[Any] | None


class VectorIndex(Params, ABC):
    """Base class of every vector index.

    Hyper-parameters are the ``__init__`` keyword arguments, stored under the same names
    (``get_params``); ``metric`` and ``threads`` are common to all. Learned/stored state ends
    in ``_``. Life cycle: ``build`` (replaces the contents) → ``search`` / ``add`` /
    ``remove`` → ``save``; ``load`` restores an index without rebuilding it.
    """

    #: Registry name, e.g. ``"hnsw"``; used in manifests and on the command line.
    kind: ClassVar[str]
    #: True when ``search`` returns the exact top-k (up to ties).
    exact: ClassVar[bool] = False
    #: How ``remove`` works: ``"native"`` (deleted from the structure) or ``"tombstone"``
    #: (hidden at search time; memory reclaimed by ``compact()``).
    removal: ClassVar[str] = "native"
    #: Metrics the backend supports.
    metrics: ClassVar[tuple[str, ...]] = METRICS

    metric: str
    threads: int

    def __init__(self, *, metric: str = "dot", threads: int = 1) -> None:
        if metric not in self.metrics:
            raise ConfigError(
                f"{self.kind} index: metric must be one of {list(self.metrics)}, got {metric!r}"
            )
        if not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be a positive integer, got {threads!r}")
        self.metric = metric
        self.threads = threads
        self._reset()

    # ---- backend hooks -------------------------------------------------------------------
    @abstractmethod
    def _create(self, vectors: npt.NDArray[np.float32]) -> None:
        """Create an empty structure of dimension ``vectors.shape[1]``, trained on
        ``vectors`` if the backend needs training (the vectors are added by ``_add``)."""

    @abstractmethod
    def _add(self, vectors: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]) -> None:
        """Store ``vectors`` under int64 ``labels`` (prepared: float32, C order, normalised
        for cosine)."""

    def _remove(self, labels: npt.NDArray[np.int64]) -> None:
        """Delete ``labels`` (only called when ``removal == "native"``)."""
        raise NotImplementedError

    @abstractmethod
    def _search(
        self, queries: npt.NDArray[np.float32], k: int, widen: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Labels (``-1`` padded) and scores (higher is better, rows sorted best first) of
        up to ``k`` stored vectors per query. ``widen`` > 0 asks for a wider (slower, more
        complete) search, e.g. ``nprobe * 2**widen``."""

    def _search_exhaustive(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Like ``_search`` but considering every stored vector (default: ``_search``)."""
        return self._search(queries, k, 0)

    def _stored(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Every stored label and its (possibly decoded) vector; used by ``compact``."""
        raise NotImplementedError

    @abstractmethod
    def _ntotal(self) -> int:
        """Number of vectors in the structure, tombstoned ones included."""

    @abstractmethod
    def _structure_bytes(self) -> int:
        """Bytes held by the structure (vectors/codes, graph, id map), estimated."""

    @abstractmethod
    def _write(self, path: Path) -> None:
        """Write the structure to the file ``path``."""

    @abstractmethod
    def _read(self, path: Path) -> None:
        """Read what ``_write`` wrote and re-apply search-time parameters."""

    # ---- parameters ----------------------------------------------------------------------
    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        size = f", n={len(self)}" if self.is_built else ""
        return f"{type(self).__name__}({args}{size})"

    # ---- state ---------------------------------------------------------------------------
    def _reset(self) -> None:
        self.dim_: int | None = None
        # label -> external id (None once removed natively); labels are positions here.
        self._label_ids: npt.NDArray[np.object_] = np.empty(0, dtype=object)
        self._lookup: dict[str, int] = {}  # live external id -> label
        self._tombstones: set[int] = set()
        self._tomb_array: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._id_bytes = 0  # running sum of sys.getsizeof of the id strings held

    @property
    def is_built(self) -> bool:
        return self.dim_ is not None

    def _check_built(self) -> int:
        if self.dim_ is None:
            raise NotFittedError(f"{type(self).__name__} is empty: call build() or load() first")
        return self.dim_

    def __len__(self) -> int:
        """Number of live (searchable) items."""
        return len(self._lookup)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._lookup

    @property
    def ids(self) -> list[str]:
        """Live ids in label order (insertion order, removed ones left out)."""
        return [s for s in self._label_ids.tolist() if s is not None]

    @property
    def n_tombstones(self) -> int:
        """Removed items still held by a tombstone backend (0 after ``compact()``)."""
        return len(self._tombstones)

    def memory_bytes(self, *, include_ids: bool = True) -> int:
        """Estimated resident bytes: the backend structure, plus (``include_ids``) the Python
        id bookkeeping (label → id array, id → label dict, the id strings)."""
        self._check_built()
        total = self._structure_bytes()
        if include_ids:
            total += self._label_ids.nbytes + sys.getsizeof(self._lookup) + self._id_bytes
        return int(total)

    # ---- input checks --------------------------------------------------------------------
    def _prepare(self, x: npt.ArrayLike, what: str) -> npt.NDArray[np.float32]:
        arr = np.asarray(x)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise DataError(f"{what} must be a 2-D array (n x d), got shape {arr.shape}")
        if arr.dtype.kind not in "fiub":  # real numbers (bool counts as 0/1)
            raise DataError(f"{what} must be real numbers, got dtype {arr.dtype}")
        if arr.shape[1] == 0:
            raise DataError(f"{what} have dimension 0")
        if self.dim_ is not None and arr.shape[1] != self.dim_:
            raise DataError(
                f"{what} have dimension {arr.shape[1]}, but the index holds {self.dim_}-d vectors"
            )
        out = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(out).all():
            bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
            raise DataError(f"{what} contain NaN or infinite values (first at row {bad})")
        if self.metric == "cosine":
            out = normalize_rows(out)
        return out

    @staticmethod
    def _prepare_ids(ids: Iterable[Any], n: int, what: str = "ids") -> list[str]:
        if isinstance(ids, str):
            raise DataError(f"{what} must be a sequence of ids, not one string")
        out = [str(i) for i in ids]
        if len(out) != n:
            raise DataError(f"got {n} vectors but {len(out)} {what}")
        if len(set(out)) != len(out):
            seen: set[str] = set()
            for s in out:
                if s in seen:
                    raise DataError(f"duplicate id {s!r} in {what}")
                seen.add(s)
        return out

    def _next_labels(self, n: int) -> npt.NDArray[np.int64]:
        start = len(self._label_ids)
        return np.arange(start, start + n, dtype=np.int64)

    def _commit_ids(self, ids: list[str], labels: npt.NDArray[np.int64]) -> None:
        # Called only after the backend stored the vectors, so a failure leaves no orphans.
        new = np.empty(len(ids), dtype=object)
        new[:] = ids  # (np.asarray would turn equal-length strings into a 2-D char array etc.)
        self._label_ids = np.concatenate([self._label_ids, new])
        self._lookup.update(zip(ids, labels.tolist(), strict=True))
        self._id_bytes += sum(sys.getsizeof(s) for s in ids)

    # ---- building and updating -----------------------------------------------------------
    def build(self, vectors: npt.ArrayLike, ids: Iterable[Any]) -> Self:
        """Replace the contents with ``vectors`` (``n x d``) under ``ids`` (``n`` distinct
        ids, converted to ``str``); trains the backend if it needs training. Returns ``self``.
        If building fails, the previous contents are kept."""
        before = dict(self.__dict__)
        try:
            self._reset()  # (the new vectors may have another dimension)
            x = self._prepare(vectors, "vectors")
            new_ids = self._prepare_ids(ids, len(x))
            if len(x) == 0:
                raise DataError("cannot build an index from zero vectors")
            self._create(x)
            labels = self._next_labels(len(new_ids))
            self._add(x, labels)
            self._commit_ids(new_ids, labels)
            self.dim_ = int(x.shape[1])
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        return self

    def add(self, vectors: npt.ArrayLike, ids: Iterable[Any]) -> Self:
        """Add items without a rebuild (new or ephemeral items). An id already in the index
        raises ``DataError``; a removed id may be added again."""
        self._check_built()
        x = self._prepare(vectors, "vectors")
        new = self._prepare_ids(ids, len(x))
        clash = [s for s in new if s in self._lookup]
        if clash:
            raise DataError(f"{len(clash)} id(s) already in the index, e.g. {clash[:5]}")
        if len(x):
            labels = self._next_labels(len(new))
            self._add(x, labels)
            self._commit_ids(new, labels)
        return self

    def remove(self, ids: Iterable[Any]) -> Self:
        """Remove items by id; they are never returned again. Unknown (or already removed)
        ids raise ``UnknownIdError`` and nothing is removed. Tombstone backends keep the
        vectors until ``compact()``."""
        self._check_built()
        if isinstance(ids, str):
            raise DataError("remove() takes a sequence of ids, not one string")
        wanted = list(dict.fromkeys(str(i) for i in ids))
        unknown = [s for s in wanted if s not in self._lookup]
        if unknown:
            raise UnknownIdError(f"{len(unknown)} id(s) not in the index, e.g. {unknown[:5]}")
        labels = np.fromiter((self._lookup[s] for s in wanted), np.int64, len(wanted))
        if not len(labels):
            return self
        if self.removal == "native":
            self._remove(labels)
        else:
            self._tombstones.update(labels.tolist())
            self._tomb_array = np.fromiter(sorted(self._tombstones), np.int64)
        for s in wanted:
            del self._lookup[s]
        # The label keeps no id: it is never returned again (deleted or tombstoned).
        self._label_ids[labels] = None
        self._id_bytes -= sum(sys.getsizeof(s) for s in wanted)
        return self

    def compact(self) -> Self:
        """Rebuild without the tombstoned items, reclaiming their memory (a no-op for
        backends with native removal). Labels are renumbered; ids are kept."""
        self._check_built()
        if not self._tombstones:
            return self
        labels, vectors = self._stored()
        keep = ~np.isin(labels, self._tomb_array)
        labels, vectors = labels[keep], vectors[keep]
        ids = self._label_ids[labels].tolist()
        if not ids:
            raise DataError("compact(): every item was removed; an index cannot be empty")
        # Stored vectors are already normalised for cosine; normalising again is harmless.
        return self.build(vectors, ids)

    # ---- search --------------------------------------------------------------------------
    def search(
        self,
        queries: npt.ArrayLike,
        k: int,
        *,
        exclude: Sequence[ExcludeRow] | None = None,
    ) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.float32]]:
        """The ``k`` best items for each query row: ``(ids, scores)``, both ``B x k``.

        ``ids`` is an object array of external ids, best first; ``scores`` are float32,
        higher is better. ``exclude`` (one entry per query: ids to leave out, e.g. the
        user's seen items; ids not in the index are ignored) is honoured exactly: a row
        holds ``k`` non-excluded ids whenever the index has that many, otherwise it is
        padded with ``None`` / ``-inf``.
        """
        self._check_built()
        k = _check_k(k)
        q = self._prepare(queries, "queries")
        lab, val = self._search_labels(q, k, self._exclusion_labels(exclude, len(q)))
        return self._decode(lab), val

    def search_labels(
        self,
        queries: npt.ArrayLike,
        k: int,
        *,
        exclude_labels: Sequence[npt.ArrayLike] | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """:meth:`search` in labels: ``(labels, scores)``, ``B x k``, labels ``-1`` where a row
        is short. ``exclude_labels`` holds one array of labels per query (from
        :meth:`labels_of`). For callers that keep their own label <-> item mapping (a funnel
        over a fixed index), so no id string is built or looked up per request; labels stay
        fixed until :meth:`compact`.
        """
        self._check_built()
        k = _check_k(k)
        q = self._prepare(queries, "queries")
        excl = None
        if exclude_labels is not None:
            if len(exclude_labels) != len(q):
                raise ConfigError(
                    f"exclude_labels has {len(exclude_labels)} rows but there are {len(q)} queries"
                )
            excl = []
            for row in exclude_labels:
                arr = np.asarray(row, dtype=np.int64)
                excl.append(np.unique(arr[arr >= 0]))
        return self._search_labels(q, k, excl)

    def labels_of(self, ids: Iterable[Any]) -> npt.NDArray[np.int64]:
        """The label of each id (``-1`` for ids not in the index)."""
        get = self._lookup.get
        wanted = [str(s) for s in ids]
        return np.fromiter((get(s, -1) for s in wanted), np.int64, len(wanted))

    def _search_labels(
        self, q: npt.NDArray[np.float32], k: int, excl: list[npt.NDArray[np.int64]] | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        b = len(q)
        ntotal = self._ntotal()
        if b == 0 or ntotal == 0:
            return np.full((b, k), -1, np.int64), np.full((b, k), -np.inf, np.float32)
        max_excl = max((len(e) for e in excl), default=0) if excl is not None else 0
        fetch = min(k + len(self._tombstones) + max_excl, ntotal)
        lab, val = self._search(q, fetch, 0)
        if excl is None and not self._tombstones and fetch == k and (lab >= 0).all():
            # The common serving case: nothing to filter, nothing missing.
            return lab, val

        out_lab = np.full((b, k), -1, dtype=np.int64)
        out_val = np.full((b, k), -np.inf, dtype=np.float32)
        pending = np.arange(b)
        widen = 0
        exhaustive = False
        while True:
            keep = lab >= 0
            if self._tombstones:
                keep &= ~np.isin(lab, self._tomb_array)
            if excl is not None:
                for r, row in enumerate(pending.tolist()):
                    if len(excl[row]):
                        keep[r] &= ~np.isin(lab[r], excl[row])
            # Stable sort on "not kept" moves kept entries first, still in score order.
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            valid = np.take_along_axis(keep, order, axis=1)
            width = order.shape[1]
            out_lab[pending, :width] = np.where(valid, np.take_along_axis(lab, order, 1), -1)
            out_val[pending, :width] = np.where(valid, np.take_along_axis(val, order, 1), -np.inf)
            # Done: k found, or an exhaustive (or exact, full-size) search saw everything.
            short = keep.sum(axis=1) < k
            if exhaustive or (self.exact and fetch >= ntotal) or not short.any():
                break
            pending = pending[short]
            fetch = min(fetch * 2, ntotal)
            widen += 1
            # Once the fetch covers the whole index, an approximate backend that still
            # came back short scans everything.
            exhaustive = fetch >= ntotal and not self.exact
            if exhaustive:
                lab, val = self._search_exhaustive(q[pending], ntotal)
            else:
                lab, val = self._search(q[pending], fetch, widen)
        return out_lab, out_val

    def _exclusion_labels(
        self, exclude: Sequence[ExcludeRow] | None, b: int
    ) -> list[npt.NDArray[np.int64]] | None:
        if exclude is None:
            return None
        if isinstance(exclude, str | set | frozenset) or not hasattr(exclude, "__len__"):
            raise ConfigError("exclude must be a list with one collection of ids per query row")
        if len(exclude) != b:
            raise ConfigError(f"exclude has {len(exclude)} rows but there are {b} queries")
        out = []
        get = self._lookup.get
        for row in exclude:
            if row is None:
                out.append(np.empty(0, dtype=np.int64))
                continue
            if isinstance(row, str):
                raise ConfigError("each exclude row must be a collection of ids, not one string")
            labels = [get(str(s), -1) for s in row]
            arr = np.asarray(labels, dtype=np.int64)
            out.append(np.unique(arr[arr >= 0]))
        return out

    def _decode(self, labels: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        ids = self._label_ids[np.maximum(labels, 0)] if len(self._label_ids) else None
        if ids is None:
            return np.full(labels.shape, None, dtype=object)
        missing = labels < 0
        if missing.any():
            ids[missing] = None
        return ids

    # ---- persistence ---------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to directory ``path`` atomically: the backend's own file format
        (``index.bin``, FAISS's binary layout, not a pickle) and ``manifest.json`` (kind,
        metric, parameters, ids by label, tombstones, SHA-256 of the data file)."""
        dim = self._check_built()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with staged_directory(target) as tmp:
            self._write(tmp / DATA_FILE)
            manifest = {
                "format": INDEX_FORMAT,
                "format_version": INDEX_FORMAT_VERSION,
                "kind": self.kind,
                "params": self.get_params(),
                "dim": dim,
                "n_live": len(self),
                # Position = label; None for removed labels (deleted or tombstoned).
                "ids": self._label_ids.tolist(),
                "tombstones": sorted(self._tombstones),
                "data_file": DATA_FILE,
                "data_sha256": sha256_file(tmp / DATA_FILE),
            }
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Load an index saved by ``save`` (of this class's kind)."""
        manifest = read_index_manifest(path)
        if manifest.get("kind") != cls.kind:
            raise ArtifactError(
                f"{path}: holds a {manifest.get('kind')!r} index, not {cls.kind!r}; "
                "use recfunnel.index.load_index for any kind"
            )
        return cls._from_artifact(Path(path), manifest)

    @classmethod
    def _from_artifact(cls, path: Path, manifest: dict[str, Any]) -> Self:
        try:
            index = cls(**manifest.get("params", {}))
        except TypeError as exc:
            raise ArtifactError(f"{path}: parameters do not fit {cls.__name__}: {exc}") from exc
        data = path / str(manifest.get("data_file", DATA_FILE))
        if not data.is_file():
            raise ArtifactError(f"{data}: index data file missing")
        if sha256_file(data) != manifest.get("data_sha256"):
            raise ArtifactError(f"{data}: checksum mismatch (file corrupt or edited)")
        try:
            ids = list(manifest["ids"])
            tombstones = [int(i) for i in manifest["tombstones"]]
            dim = int(manifest["dim"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{path}: malformed index manifest: {exc}") from exc
        index._read(data)
        index.dim_ = dim
        label_ids = np.empty(len(ids), dtype=object)
        label_ids[:] = ids
        index._label_ids = label_ids
        index._lookup = {str(s): i for i, s in enumerate(ids) if s is not None}
        index._tombstones = set(tombstones)
        index._tomb_array = np.asarray(sorted(tombstones), dtype=np.int64)
        index._id_bytes = sum(sys.getsizeof(s) for s in ids if s is not None)
        n_live = len(index._lookup)
        if n_live != manifest.get("n_live") or index._ntotal() != n_live + len(tombstones):
            raise ArtifactError(f"{path}: manifest and index data disagree on the item count")
        return index


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return int(k)


def normalize_rows(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Rows scaled to unit L2 norm; zero rows stay zero (rather than becoming NaN).

    >>> normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def read_index_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a saved vector index, checked for format and version."""
    return read_manifest_file(
        path, format=INDEX_FORMAT, version=INDEX_FORMAT_VERSION, what="vector index"
    )
