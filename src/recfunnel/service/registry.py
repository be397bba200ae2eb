"""The model registry: versioned artefacts on disk, and the swap of the served model.

Layout of a registry directory::

    registry/
      versions/
        20240501T120000123456Z-3fa2b1c0/   one saved generator (manifest.json + arrays.npz)
          index/                           optional: its vector index (VectorIndex.save)
        20240502T090000000000Z-91c2d4e8/   or one saved funnel (Funnel.save), served whole
      CURRENT                              the served version's name, one line

``publish_model`` copies a saved model into ``versions/`` under a new name (written to a
temporary directory, fsynced, then renamed into place) and, last, atomically replaces
``CURRENT`` (write a temporary file, fsync, ``os.replace``, fsync the directory). A reader
therefore sees either the old or the new pointer, and the version it names is complete.
Versions are never modified after publishing; rolling back is ``activate(registry, old)``.

:class:`ModelHolder` serves one :class:`~recfunnel.service.recommender.Recommender` at a
time. ``reload()`` loads the version ``CURRENT`` names completely (arrays, checksums, index)
*beside* the served one and then replaces a single reference, so a request, which reads that
reference once, is answered wholly by the old or wholly by the new model, and none waits
for a load. A poller thread calls ``reload()`` every few seconds; ``POST /v1/admin/reload``
calls it at once.

>>> import tempfile, numpy as np
>>> from recfunnel.candidates import make_generator
>>> from recfunnel.core.matrix import InteractionMatrix
>>> root = Path(tempfile.mkdtemp())
>>> model = make_generator("pop").fit(InteractionMatrix.from_arrays(list("aab"), list("xyx")))
>>> v = publish_model(model.save(root / "trained"), root / "registry", version="v1")
>>> current_version(root / "registry"), list_versions(root / "registry")
('v1', ['v1'])
>>> holder = ModelHolder(root / "registry")
>>> holder.reload(), holder.current.version
(True, 'v1')
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from recfunnel.core.errors import ArtifactError, ConfigError
from recfunnel.core.generator import read_manifest
from recfunnel.service.recommender import Recommender, RetrievalRecommender, StageTimer

if TYPE_CHECKING:
    from recfunnel.pipeline.feature_log import FeatureLogger

log = logging.getLogger("recfunnel.service.registry")

VERSIONS = "versions"
CURRENT = "CURRENT"
INDEX_DIR = "index"
_VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


# ---- the directory ------------------------------------------------------------------------------
def is_registry(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a registry (it has ``versions/`` or ``CURRENT``)."""
    p = Path(path)
    return (p / VERSIONS).is_dir() or (p / CURRENT).is_file()


def list_versions(registry: str | os.PathLike[str]) -> list[str]:
    """Published versions, oldest name first (names sort by publication time)."""
    root = Path(registry) / VERSIONS
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def current_version(registry: str | os.PathLike[str]) -> str | None:
    """The version ``CURRENT`` names, or None before the first publish."""
    try:
        name = (Path(registry) / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not _VERSION_NAME.match(name):
        raise ArtifactError(f"{Path(registry) / CURRENT}: not a version name: {name[:80]!r}")
    return name


def publish_model(
    model_dir: str | os.PathLike[str],
    registry_dir: str | os.PathLike[str],
    *,
    version: str | None = None,
    index: str | None = None,
    index_params: dict[str, object] | None = None,
    activate_now: bool = True,
) -> str:
    """Copy the saved model at ``model_dir`` into ``registry_dir`` as a new version and (with
    ``activate_now``) make it the current one; returns the version name.

    ``version`` defaults to the UTC time and the first 8 hex digits of the arrays' checksum
    (``20240501T120000123456Z-3fa2b1c0``), so names sort by publication. ``index`` (a
    ``make_index`` kind, e.g. ``"hnsw"``, with ``index_params``) also builds a vector index
    over the model's item vectors and stores it with the version, for embedding models
    with large catalogues. The registry directory is created if needed.
    """
    source = Path(model_dir)
    manifest = read_artifact_manifest(source)  # a generator or a funnel, of a version we read
    if index is not None and manifest.get("format") == FUNNEL_FORMAT:
        raise ConfigError(
            "index=: a funnel is published as it is (its generators score the catalogue)"
        )
    root = Path(registry_dir)
    versions = root / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    if version is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        version = f"{stamp}-{str(manifest.get('arrays_sha256', ''))[:8] or 'model'}"
    if not _VERSION_NAME.match(version):
        raise ConfigError(
            f"version name {version!r}: use letters, digits, '.', '_' and '-' (at most 128)"
        )
    target = versions / version
    if target.exists():
        raise ConfigError(f"{target}: version {version!r} already published; pick another name")
    tmp = versions / f".tmp-{version}-{secrets.token_hex(4)}"
    try:
        shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(".*"))
        if index is not None:
            _build_index(tmp, index, index_params or {})
        _fsync_tree(tmp)
        os.rename(tmp, target)  # (fails if a concurrent publish took the name)
        _fsync_dir(versions)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if activate_now:
        activate(root, version)
    return version


def activate(registry_dir: str | os.PathLike[str], version: str) -> None:
    """Point ``CURRENT`` at a published ``version`` atomically (also for rolling back)."""
    root = Path(registry_dir)
    if not (root / VERSIONS / version).is_dir():
        raise ConfigError(f"{root}: no published version {version!r}; have {list_versions(root)}")
    tmp = root / f".{CURRENT}.{secrets.token_hex(4)}"
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(version + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / CURRENT)
    _fsync_dir(root)


#: ``manifest.json`` "format" of a saved :class:`~recfunnel.pipeline.funnel.Funnel`.
FUNNEL_FORMAT = "recfunnel.Funnel"


def read_artifact_manifest(path: str | os.PathLike[str]) -> dict[str, object]:
    """The manifest of a servable artefact: a saved candidate generator or a saved funnel."""
    import json

    p = Path(path) / "manifest.json"
    try:
        fmt = json.loads(p.read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError):
        fmt = None  # read_manifest says what is wrong
    if fmt == FUNNEL_FORMAT:
        from recfunnel.core.artifact import read_manifest_file
        from recfunnel.pipeline.funnel import ARTIFACT_VERSION

        return read_manifest_file(
            path, format=FUNNEL_FORMAT, version=ARTIFACT_VERSION, what="funnel artefact"
        )
    return read_manifest(path)


def _build_index(model_dir: Path, kind: str, params: dict[str, object]) -> None:
    from recfunnel.candidates import load_generator
    from recfunnel.core.generator import EmbeddingModel
    from recfunnel.index import make_index

    model = load_generator(model_dir)
    if not isinstance(model, EmbeddingModel):
        raise ConfigError(f"index={kind!r}: {model.name} is not an embedding model")
    index = make_index(kind, metric=model.metric, **params)
    index.build(model.item_vectors(), model.items_.ids.tolist())
    index.save(model_dir / INDEX_DIR)


def _fsync_tree(path: Path) -> None:
    for sub, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(sub, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(sub))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- what to serve ------------------------------------------------------------------------------
def resolve(model_dir: str | os.PathLike[str]) -> tuple[str, Path] | None:
    """``(version, artefact directory)`` to serve from ``model_dir``: a registry's current
    version, or a single saved model (version ``sha-`` + its checksum); None when a registry
    has nothing published yet."""
    root = Path(model_dir)
    if (root / "manifest.json").is_file():
        manifest = read_artifact_manifest(root)
        if manifest.get("format") == FUNNEL_FORMAT:
            return f"sha-{_tree_digest(root)[:12]}", root
        return f"sha-{str(manifest.get('arrays_sha256', ''))[:12]}", root
    if not root.is_dir():
        raise ConfigError(f"{root}: no such model directory or registry")
    version = current_version(root)
    if version is None:
        return None
    path = root / VERSIONS / version
    if not path.is_dir():
        raise ArtifactError(f"{root / CURRENT} names {version!r}, but {path} does not exist")
    return version, path


def _tree_digest(root: Path) -> str:
    """sha256 over every ``manifest.json`` below ``root`` (names and bytes). A funnel's own
    arrays hold only its popularity and seen lists; its parts' manifests carry their
    configuration and their own checksums, so two different funnels get different digests."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(root.rglob("manifest.json")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def load_recommender(
    path: Path,
    version: str,
    *,
    stage: StageTimer | None = None,
    observe: Callable[[str, float], None] | None = None,
    feature_log: FeatureLogger | None = None,
    max_passes: int | None = None,
) -> Recommender:
    """The recommender for one artefact directory: a saved funnel is served whole
    (:class:`~recfunnel.service.funnel_recommender.FunnelRecommender`, which sends its stage
    timings to ``observe``, logs served features to ``feature_log`` and runs at most
    ``max_passes`` passes at once); a saved generator by :class:`RetrievalRecommender` (with
    its vector index, when it has one)."""
    from recfunnel.candidates import load_generator

    if read_artifact_manifest(path).get("format") == FUNNEL_FORMAT:
        from recfunnel.pipeline.funnel import Funnel
        from recfunnel.service.funnel_recommender import FunnelRecommender

        return FunnelRecommender(
            Funnel.load(path), version=version, stage=stage, observe=observe,
            feature_log=feature_log, max_passes=max_passes,
        )  # fmt: skip

    generator = load_generator(path)
    index = None
    if (path / INDEX_DIR / "manifest.json").is_file():
        from recfunnel.index import load_index

        index = load_index(path / INDEX_DIR)
        if len(index) != len(generator.items_):
            raise ArtifactError(
                f"{path / INDEX_DIR}: holds {len(index)} items, the model {len(generator.items_)}"
            )
    return RetrievalRecommender(generator, version=version, index=index, stage=stage)


class ModelHolder:
    """The served recommender, swapped whole.

    ``prepare(recommender)`` runs on a freshly loaded recommender before it is swapped in
    (the app uses it to re-apply user deletions and embed items added since training);
    ``on_swap(recommender)`` after. ``loader`` builds a recommender from an artefact
    directory (default :func:`load_recommender`, which serves generators and funnels).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None,
        *,
        loader: Callable[[Path, str], Recommender] | None = None,
        prepare: Callable[[Recommender], None] | None = None,
        on_swap: Callable[[Recommender], None] | None = None,
    ) -> None:
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.loader = loader or (lambda path, version: load_recommender(path, version))
        self.prepare = prepare
        self.on_swap = on_swap
        self._current: Recommender | None = None
        self._reload_lock = threading.Lock()
        self._failed: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> Recommender | None:
        """The served recommender (read it once per request)."""
        return self._current

    def reload(self) -> bool:
        """Load the version the model directory names if it is not the served one; returns
        whether the served model changed. A failed load keeps the served model and raises."""
        if self.model_dir is None:
            return False
        with self._reload_lock:
            found = resolve(self.model_dir)
            if found is None:
                return False
            version, path = found
            current = self._current
            if current is not None and current.version == version:
                return False
            try:
                fresh = self.loader(path, version)
                if self.prepare is not None:
                    self.prepare(fresh)
            except Exception:
                self._failed = version
                raise
            self._current = fresh  # the swap: one reference assignment
            self._failed = None
        log.info("serving model version %s (%s)", version, fresh.model_name)
        if self.on_swap is not None:
            self.on_swap(fresh)
        return True

    def start_polling(self, interval: float) -> None:
        """Check for a new version every ``interval`` seconds in a daemon thread."""
        if self.model_dir is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._poll, args=(interval,), name="recfunnel-model-poller", daemon=True
        )
        self._thread.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _poll(self, interval: float) -> None:
        assert self.model_dir is not None
        while not self._stop.wait(interval):
            try:
                found = resolve(self.model_dir)
                if found is None or found[0] == self._failed:
                    continue  # nothing published, or a version that failed: wait for another
                self.reload()
            except Exception as exc:  # the served model stays; say why once per version
                log.warning("model reload failed, still serving the previous version: %s", exc)
