"""External string ids <-> dense integer indices."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ArtifactError, UnknownIdError

FORMAT_VERSION = 1


class IdIndex:
    """An immutable, ordered mapping from external string ids to ``0..n-1``.

    Batch-first: ``encode`` and ``decode`` take and return arrays.

    >>> idx = IdIndex(["u7", "u3", "u9"])
    >>> idx.encode(["u9", "u7"]).tolist()
    [2, 0]
    >>> idx.decode([1]).tolist()
    ['u3']
    >>> idx.encode(["nobody"])
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.UnknownIdError: 1 id(s) not in the user index, e.g. ['nobody']
    """

    def __init__(self, ids: Iterable[str], *, kind: str = "user") -> None:
        arr = np.asarray([str(i) for i in ids], dtype=object)
        self.kind = kind
        self._ids = arr
        self._lookup: dict[str, int] = {s: i for i, s in enumerate(arr.tolist())}
        if len(self._lookup) != len(arr):
            values, counts = np.unique(arr.astype(str), return_counts=True)
            raise ValueError(f"duplicate {kind} id {str(values[counts > 1][0])!r} in id index")

    @classmethod
    def from_values(cls, values: Sequence[Any] | npt.ArrayLike, *, kind: str = "user") -> IdIndex:
        """Index of the distinct values in order of first appearance."""
        import pandas as pd

        uniques = pd.unique(pd.Series(np.asarray(values)).astype(str))
        return cls(uniques.tolist(), kind=kind)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._lookup

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdIndex) and np.array_equal(self._ids, other._ids)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"IdIndex(kind={self.kind!r}, n={len(self)})"

    @property
    def ids(self) -> npt.NDArray[np.object_]:
        """The external ids, position = dense index (read-only view)."""
        view = self._ids.view()
        view.flags.writeable = False
        return view

    def encode(
        self, external_ids: Iterable[str], *, missing: str = "raise"
    ) -> npt.NDArray[np.int64]:
        """Dense indices of ``external_ids``.

        ``missing="raise"`` raises :class:`UnknownIdError` naming the unknown ids;
        ``missing="ignore"`` maps them to ``-1``.
        """
        ids = [str(e) for e in external_ids]
        out = np.fromiter((self._lookup.get(e, -1) for e in ids), dtype=np.int64, count=len(ids))
        if missing == "raise" and (out < 0).any():
            bad = [e for e, i in zip(ids, out.tolist(), strict=True) if i < 0]
            raise UnknownIdError(f"{len(bad)} id(s) not in the {self.kind} index, e.g. {bad[:5]}")
        if missing not in ("raise", "ignore"):
            raise ValueError(f"missing must be 'raise' or 'ignore', got {missing!r}")
        return out

    def decode(self, indices: npt.ArrayLike) -> npt.NDArray[np.object_]:
        """External ids at ``indices``; raises ``UnknownIdError`` for out-of-range values."""
        arr = np.asarray(indices, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            bad = arr[(arr < 0) | (arr >= len(self))][:5].tolist()
            raise UnknownIdError(f"indices {bad} out of range for {self.kind} index of {len(self)}")
        return self._ids[arr]

    def digest(self) -> str:
        """A content hash: two indexes with the same ids in the same order share it."""
        h = hashlib.sha256()
        for s in self._ids.tolist():
            h.update(s.encode("utf-8"))
            h.update(b"\x00")
        return h.hexdigest()[:16]

    def to_manifest(self) -> dict[str, Any]:
        return {
            "format": "recfunnel.IdIndex",
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "digest": self.digest(),
            "ids": self._ids.tolist(),
        }

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], *, source: str = "<manifest>") -> IdIndex:
        if manifest.get("format") != "recfunnel.IdIndex":
            raise ArtifactError(f"{source}: not a recfunnel id index")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(
                f"{source}: id index format version {manifest.get('format_version')} "
                f"is not supported (this recfunnel reads version {FORMAT_VERSION})"
            )
        index = cls(manifest["ids"], kind=manifest.get("kind", "user"))
        if index.digest() != manifest.get("digest"):
            raise ArtifactError(f"{source}: id index digest mismatch (file corrupt or edited)")
        return index

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON, atomically (a crash never leaves a half-written file)."""
        write_json_atomic(Path(path), self.to_manifest())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IdIndex:
        p = Path(path)
        try:
            manifest = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{p}: cannot read id index: {exc}") from exc
        return cls.from_manifest(manifest, source=str(p))


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
