"""Writing and checking artefact directories (arrays + JSON manifest), shared by every saved
object: generators, rankers, indexes, feature pipelines, funnels.

A directory is built under a temporary name next to its target and swapped in only when
complete, so a reader sees the old artefact or the new one, never half of one; files are
checksummed so that a corrupt or edited one is refused on load.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> with staged_directory(root / "model") as tmp:
...     _ = (tmp / "manifest.json").write_text("{}")
>>> sorted(p.name for p in root.iterdir())
['model']
>>> sha256_file(root / "model" / "manifest.json")[:12]
'44136fa355b3'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recfunnel.core.errors import ArtifactError


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def staged_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``target``; when the block ends without an
    exception it replaces ``target`` (renames, so the switch is atomic per directory on one
    filesystem), otherwise it is removed and ``target`` is left as it was."""
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest_file(
    path: str | os.PathLike[str], *, format: str, version: int, what: str
) -> dict[str, Any]:
    """``path/manifest.json``, checked to be a ``format`` artefact of ``version``; an
    ``ArtifactError`` naming the file and what is wrong otherwise (``what`` names the kind of
    artefact in messages, e.g. ``"ranker artefact"``)."""
    p = Path(path) / "manifest.json"
    try:
        manifest = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactError(f"{p}: no {what} here (manifest.json missing)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{p}: unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != format:
        raise ArtifactError(f"{p}: not a recfunnel {what}")
    if manifest.get("format_version") != version:
        raise ArtifactError(
            f"{p}: {what} format version {manifest.get('format_version')} is not supported "
            f"(this recfunnel reads version {version})"
        )
    return manifest


def write_arrays(directory: Path, arrays: dict[str, Any]) -> dict[str, Any]:
    """Write ``arrays`` to ``directory/arrays.npz``; returns the manifest entries that
    describe and checksum them (``arrays``: dtype and shape by name, ``arrays_sha256``)."""
    import numpy as np

    np.savez(directory / "arrays.npz", **arrays)
    return {
        "arrays": {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()},
        "arrays_sha256": sha256_file(directory / "arrays.npz"),
    }


def read_arrays(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The arrays written by :func:`write_arrays`, checksum checked, pickles refused."""
    import numpy as np

    npz = directory / "arrays.npz"
    if sha256_file(npz) != manifest.get("arrays_sha256"):
        raise ArtifactError(f"{npz}: checksum mismatch (file corrupt or edited)")
    with np.load(npz, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
