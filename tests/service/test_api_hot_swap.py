"""The model registry and the hot swap: publish, atomic CURRENT, reload without dropped or
mixed requests, rollback, a broken version kept out."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from service_helpers import R, TestClient, W, train_pop

from recfunnel.core.errors import ArtifactError, ConfigError
from recfunnel.service.registry import (
    CURRENT,
    VERSIONS,
    activate,
    current_version,
    is_registry,
    list_versions,
    publish_model,
    resolve,
)


def test_publish_writes_a_complete_version_then_the_pointer(tmp_path: Path) -> None:
    model = train_pop().save(tmp_path / "m")
    root = tmp_path / "reg"
    assert not is_registry(root)
    version = publish_model(model, root)
    assert is_registry(root)
    assert (root / CURRENT).read_text() == version + "\n"
    assert sorted(p.name for p in (root / VERSIONS / version).iterdir()) == [
        "arrays.npz",
        "manifest.json",
    ]
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no leftovers
    later = publish_model(model, root, activate_now=False)
    assert list_versions(root) == sorted([version, later]) and current_version(root) == version
    with pytest.raises(ConfigError, match="already published"):
        publish_model(model, root, version=version)
    with pytest.raises(ConfigError, match="version name"):
        publish_model(model, root, version="../escape")
    with pytest.raises(ArtifactError, match=r"manifest\.json missing"):
        publish_model(tmp_path, root)


def test_a_plain_model_directory_can_be_served(
    tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    path = train_pop().save(tmp_path / "single")
    version, where = resolve(path)  # type: ignore[misc]
    assert version.startswith("sha-") and where == path
    r = make_client(path).get("/v1/users/c/recommendations", headers=R)
    assert r.json()["model_version"] == version


def test_reload_swaps_versions_and_rolls_back(
    tmp_path: Path, registry: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(registry)
    assert client.post("/v1/admin/reload", headers=W).json() == {
        "model_version": "v1",
        "swapped": False,
    }
    # v2 counts events, not users: the same ranking here, another version name.
    publish_model(train_pop("events").save(tmp_path / "m2"), registry, version="v2")
    assert client.post("/v1/admin/reload", headers=W).json() == {
        "model_version": "v2",
        "swapped": True,
    }
    body = client.get("/v1/users/c/recommendations", headers=R).json()
    assert body["model_version"] == "v2" and body["items"][0] == {"item_id": "y", "score": 2.0}
    activate(registry, "v1")
    assert client.post("/v1/admin/reload", headers=W).json()["model_version"] == "v1"
    assert "recfunnel_model_swaps_total 3.0" in client.get("/metrics").text


def test_a_broken_version_is_refused_and_the_old_one_keeps_serving(
    tmp_path: Path, registry: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(registry)
    publish_model(train_pop().save(tmp_path / "m2"), registry, version="v2")
    arrays = registry / VERSIONS / "v2" / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:-10] + b"corrupted!")
    r = client.post("/v1/admin/reload", headers=W)
    assert r.status_code == 503 and "checksum mismatch" in r.json()["detail"]
    ok = client.get("/v1/users/c/recommendations", headers=R)
    assert ok.status_code == 200 and ok.json()["model_version"] == "v1"


def test_poller_swaps_under_load_without_dropped_or_mixed_requests(
    tmp_path: Path, registry: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(registry, poll_seconds=0.05)
    stop = threading.Event()
    seen: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            while not stop.is_set():
                r = client.get("/v1/users/stranger/recommendations?n=3", headers=R)
                seen.append((r.status_code, r.json().get("model_version", "")))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    publish_model(train_pop("events").save(tmp_path / "m2"), registry, version="v2")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if client.get("/health").json()["model_version"] == "v2":
            break
        time.sleep(0.02)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join(timeout=20)
    assert not errors
    assert {status for status, _ in seen} == {200}
    versions = [v for _, v in seen]
    assert set(versions) == {"v1", "v2"}
    # Once a request saw v2, no later-starting request of that thread saw v1 (checked overall:
    # the last answers are all v2).
    assert versions[-4:] == ["v2"] * 4
