from __future__ import annotations

import json

import numpy as np
import pytest

from recfunnel.core.errors import ArtifactError, UnknownIdError
from recfunnel.core.ids import IdIndex


def test_round_trip_and_versioned_file(tmp_path) -> None:
    idx = IdIndex(["b", "a", "c"], kind="item")
    idx.save(tmp_path / "items.json")
    doc = json.loads((tmp_path / "items.json").read_text())
    assert doc["format_version"] == 1 and doc["kind"] == "item"
    back = IdIndex.load(tmp_path / "items.json")
    assert back == idx
    assert back.encode(["c", "b"]).tolist() == [2, 0]


def test_unknown_ids_are_named() -> None:
    idx = IdIndex(["a"], kind="user")
    with pytest.raises(UnknownIdError, match=r"not in the user index, e.g. \['zz'\]"):
        idx.encode(["a", "zz"])
    assert idx.encode(["zz", "a"], missing="ignore").tolist() == [-1, 0]
    with pytest.raises(UnknownIdError, match="out of range"):
        idx.decode([1])


def test_duplicates_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate user id 'a'"):
        IdIndex(["a", "b", "a"])


def test_first_appearance_order() -> None:
    assert IdIndex.from_values(np.array([3, 1, 3, 2])).ids.tolist() == ["3", "1", "2"]


def test_corrupt_and_other_version_files(tmp_path) -> None:
    IdIndex(["a", "b"]).save(tmp_path / "i.json")
    doc = json.loads((tmp_path / "i.json").read_text())
    doc["ids"] = ["a", "c"]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="digest mismatch"):
        IdIndex.load(tmp_path / "bad.json")
    doc["format_version"] = 99
    (tmp_path / "v.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="version 99"):
        IdIndex.load(tmp_path / "v.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="cannot read"):
        IdIndex.load(tmp_path / "junk.json")
