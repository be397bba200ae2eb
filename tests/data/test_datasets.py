"""The dataset cache: fetch from a user's GroupLens archive or folder, reuse, atomicity, load.

No test here touches the network except ``test_fetch_from_wheels``, which runs only with
``RECFUNNEL_NETWORK_TESTS=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from recfunnel.core.errors import DataError, DatasetUnavailableError
from recfunnel.data import datasets
from recfunnel.data.datasets import CREDIT, DEFAULT_CACHE_DIR, cached, fetch, load
from recfunnel.data.loaders import load_movielens_1m, load_movielens_100k, save_atomic

with warnings.catch_warnings():  # a marker no configuration registers; skipif does the gating
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    network = pytest.mark.network

GENRES_COMEDY = "0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0"
ML100K = {
    "u.data": "1\t10\t4\t881250949\n2\t10\t3\t881250950\n2\t20\t5\t881250951\n",
    "u.item": f"10|Toy Story (1995)|||x|{GENRES_COMEDY}\n20|Heat (1995)|||y|{GENRES_COMEDY}\n",
    "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n",
}
ML1M = {
    "ratings.dat": "1::1193::5::978300760\n1::661::3::978302109\n",
    "movies.dat": "661::James and the Giant Peach (1996)::Animation|Children's\n"
    "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n",
    "users.dat": "1::F::1::10::48067\n",
}


def grouplens_zip(path: Path, folder: str, files: dict[str, str]) -> Path:
    """A zip laid out as GroupLens ships it: ``ml-100k/u.data``, ... (plus a README)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{folder}/README", "MovieLens (GroupLens Research)\n")
        for name, text in files.items():
            zf.writestr(f"{folder}/{name}", text.encode("latin-1"))
    return path


def grouplens_dir(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_bytes(text.encode("latin-1"))
    return path


def fetch_quietly(name: str, **kwargs: object) -> Path:
    # The tiny fixtures do not have GroupLens' counts, which fetch reports as a warning.
    with pytest.warns(UserWarning, match="differs from the GroupLens release"):
        return fetch(name, **kwargs)  # type: ignore[arg-type]


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_default_cache_dir_is_a_constant() -> None:
    assert DEFAULT_CACHE_DIR == Path("~/.cache/recfunnel").expanduser()


def test_fetch_from_zip_then_load(tmp_path: Path) -> None:
    archive = grouplens_zip(tmp_path / "ml-100k.zip", "ml-100k", ML100K)
    cache = tmp_path / "cache"
    path = fetch_quietly("ml-100k", source=archive, cache_dir=cache)
    assert path == cache / "ml-100k"
    assert sorted(p.name for p in path.iterdir()) == [
        "manifest.json",
        "ml-100k.inter",
        "ml-100k.item",
        "ml-100k.user",
    ]
    assert leftovers(cache) == ["ml-100k"]  # no temporary folder left behind
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["name"] == "ml-100k" and manifest["credit"] == CREDIT
    assert manifest["source"]["kind"] == "grouplens-archive"
    assert manifest["source"]["folder"] == "ml-100k/"
    assert manifest["counts"]["interactions"] == 3 and manifest["counts"]["users"] == 2
    assert len(manifest["files"]["ml-100k.inter"]["sha256"]) == 64
    ds = load("ml-100k", cache_dir=cache)
    direct = load_movielens_100k(grouplens_dir(tmp_path / "plain", ML100K))
    for table in ("interactions", "users", "items"):
        pd.testing.assert_frame_equal(getattr(ds, table), getattr(direct, table))
    assert ds.name == "ml-100k"
    assert list(cached(cache)) == ["ml-100k"]


def test_fetch_from_extracted_directory(tmp_path: Path) -> None:
    grouplens_dir(tmp_path / "download" / "ml-1m", ML1M)
    path = fetch_quietly("ml-1m", source=tmp_path / "download", cache_dir=tmp_path / "c")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["source"] == {
        "kind": "grouplens-directory",
        "path": str(tmp_path / "download" / "ml-1m"),
    }
    ds = load("ml-1m", cache_dir=tmp_path / "c", progress=True)
    direct = load_movielens_1m(tmp_path / "download" / "ml-1m")
    pd.testing.assert_frame_equal(ds.interactions, direct.interactions)
    assert ds.items is not None and ds.items["genres"].tolist() == ["Animation|Children's", "Drama"]


def test_cache_is_reused_and_force_refetches(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = fetch_quietly("ml-100k", source=grouplens_dir(tmp_path / "gl", ML100K), cache_dir=cache)
    stamp = (first / "manifest.json").stat().st_mtime_ns
    # A valid cache is reused: the source is not even looked at.
    again = fetch("ml-100k", source=tmp_path / "does-not-exist", cache_dir=cache)
    assert again == first and (first / "manifest.json").stat().st_mtime_ns == stamp
    # A failed forced refetch leaves the previous copy in place.
    with pytest.raises(DatasetUnavailableError, match="does not exist"):
        fetch("ml-100k", source=tmp_path / "does-not-exist", cache_dir=cache, force=True)
    assert leftovers(cache) == ["ml-100k"]
    assert len(load("ml-100k", cache_dir=cache)) == 3
    more = dict(ML100K, **{"u.data": ML100K["u.data"] + "1\t20\t2\t881250952\n"})
    fetch_quietly(
        "ml-100k",
        source=grouplens_dir(tmp_path / "gl2", more),
        cache_dir=cache,
        force=True,
        progress=True,
    )
    assert len(load("ml-100k", cache_dir=cache)) == 4
    assert leftovers(cache) == ["ml-100k"]


def test_failed_fetch_leaves_no_partial_cache(tmp_path: Path) -> None:
    bad = dict(ML100K, **{"u.data": "1\t10\t4\t881250949\n2\t10\tbad\t881250950\n"})
    archive = grouplens_zip(tmp_path / "ml-100k.zip", "ml-100k", bad)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="not a number") as exc:
        fetch("ml-100k", source=archive, cache_dir=cache)
    # The error names the file inside the archive, not a temporary copy.
    assert exc.value.source == f"{archive}:ml-100k/u.data"
    assert exc.value.line == 2 and exc.value.field == "rating"
    assert leftovers(cache) == []
    with pytest.raises(DatasetUnavailableError, match="recfunnel datasets fetch ml-100k"):
        load("ml-100k", cache_dir=cache)


def test_bad_sources(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    not_zip = tmp_path / "ml-100k.zip"
    not_zip.write_text("hello")
    with pytest.raises(DatasetUnavailableError, match="neither a zip archive"):
        fetch("ml-100k", source=not_zip, cache_dir=cache)
    other = grouplens_zip(tmp_path / "other.zip", "ml-1m", ML1M)
    with pytest.raises(DatasetUnavailableError, match=r"no u\.data"):
        fetch("ml-100k", source=other, cache_dir=cache)
    with pytest.raises(DatasetUnavailableError, match=r"no ratings\.dat"):
        fetch("ml-1m", source=tmp_path, cache_dir=cache)
    with pytest.raises(DatasetUnavailableError, match="unknown dataset 'ml-25m'"):
        fetch("ml-25m", cache_dir=cache)
    assert leftovers(cache) == []


def test_corrupt_cache_is_detected_and_refetched(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    source = grouplens_dir(tmp_path / "gl", ML100K)
    path = fetch_quietly("ml-100k", source=source, cache_dir=cache)
    inter = path / "ml-100k.inter"
    inter.write_text(inter.read_text().replace("\t4\t", "\t5\t"))  # same size, other content
    with pytest.raises(DatasetUnavailableError, match=r"sha256.*--force"):
        load("ml-100k", cache_dir=cache)
    assert cached(cache) == {}
    fetch_quietly("ml-100k", source=source, cache_dir=cache)  # not valid, so fetched again
    assert load("ml-100k", cache_dir=cache).interactions["value"].tolist() == [4.0, 3.0, 5.0]


def test_load_a_directory(tmp_path: Path) -> None:
    ds = load_movielens_100k(grouplens_dir(tmp_path / "gl", ML100K))
    atomic = save_atomic(ds, tmp_path / "mine", "mine")
    mine = load(str(atomic), cache_dir=tmp_path / "unused")
    assert mine.name == "mine" and len(mine) == 3
    assert len(load(tmp_path / "gl", cache_dir=tmp_path / "unused")) == 3  # GroupLens folder
    with pytest.raises(DatasetUnavailableError, match="neither a known dataset"):
        load("ml-2m", cache_dir=tmp_path)


def test_pip_failure_explains_the_offline_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert cmd[1:4] == ["-m", "pip", "download"] and "recbole==1.2.1" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(subprocess, "run", failing_run)
    with pytest.raises(DatasetUnavailableError, match=r"No matching distribution.*--source"):
        fetch("ml-100k", cache_dir=tmp_path / "cache")
    assert leftovers(tmp_path / "cache") == []


def test_recbole_ml100k_conversion(tmp_path: Path) -> None:
    """The layout of recbole 1.2.1's bundled ml-100k, in miniature."""
    folder = tmp_path / "wheel"
    folder.mkdir()
    (folder / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t881250949\n"
    )
    (folder / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "10\tToy Story\t1995\tAnimation Children's Comedy\n"
        "267\tunkonwn\tunkonwn\tunknown\n"
        "1412\tLand Before Time III: The Time of the Great Giving (1995)\tV\tAnimation\n"
    )
    (folder / "ml-100k.user").write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "1\t24\tM\ttechnician\t85711\n"
    )
    ds = datasets._ml100k_from_recbole(folder, "ml-100k")
    assert ds.items is not None and ds.users is not None
    assert ds.items["title"].tolist() == [
        "Toy Story (1995)",
        "unknown",
        "Land Before Time III: The Time of the Great Giving (1995) (V)",
    ]
    assert ds.items["year"].tolist()[::2] == [1995.0, 1995.0]
    assert ds.items["genres"].tolist()[0] == "Animation|Children's|Comedy"
    assert ds.users["age"].tolist() == [24.0]
    assert ds.interactions["event_type"].tolist() == ["rating"]


@network
@pytest.mark.skipif(
    os.environ.get("RECFUNNEL_NETWORK_TESTS") != "1",
    reason="downloads RecBole wheels; set RECFUNNEL_NETWORK_TESTS=1",
)
def test_fetch_from_wheels(tmp_path: Path) -> None:
    expected = {
        "ml-100k": (100_000, 943, 1_682, 1_682),
        "ml-1m": (1_000_209, 6_040, 3_706, 3_883),
    }
    for name, (n, users, items, catalog) in expected.items():
        fetch(name, cache_dir=tmp_path)
        ds = load(name, cache_dir=tmp_path)
        summary = ds.summary()
        assert (summary["interactions"], summary["users"], summary["items"]) == (n, users, items)
        assert summary["catalog_items"] == catalog
    ml1m = load("ml-1m", cache_dir=tmp_path)
    assert ml1m.items is not None
    titles = dict(zip(ml1m.items["item_id"], ml1m.items["title"], strict=True))
    assert titles["1193"] == "One Flew Over the Cuckoo's Nest (1975)"
    assert ml1m.interactions["item_id"].iloc[0] == "1193"  # first line of ratings.dat
