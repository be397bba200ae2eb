"""``recfunnel serve --workers 2``: a real server with two worker processes on one port.

Each keep-alive connection is answered by one worker for its whole life (``GET /health``
names it), so the tests pin connections to workers and check what must hold across them:
concurrent ingestion through both loses and duplicates nothing, feedback for a request
served by the other worker is attributed, ``/metrics`` adds up both workers, a user deleted
through one worker is forgotten by the other, edges (blocks, removals) and items posted
through one worker are in force in the other, a new registry version reaches both, and a
worker that cannot start stops the server instead of being restarted forever.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_helpers import READ_KEY, WRITE_KEY, R, ServerProcess, W, history, train_pop

from recfunnel.service.registry import publish_model

WORKERS = 2


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's files: ``registry/`` (version v1: popularity), ``events.db``, the log."""
    root = tmp_path_factory.mktemp("workers")
    publish_model(train_pop().save(root / "trained"), root / "registry", version="v1")
    return root


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerProcess]:
    with _workers(root, "--poll-seconds", "0.2") as proc:
        yield proc
    text = (root / "server.log").read_text()
    assert WRITE_KEY not in text and READ_KEY not in text


@contextlib.contextmanager
def _workers(root: Path, *options: str) -> Iterator[ServerProcess]:
    """``serve --workers WORKERS`` over ``root``'s store and registry; it must stop cleanly."""
    proc = ServerProcess(
        f"sqlite:///{root / 'events.db'}", root / "server.log",
        "--model-dir", str(root / "registry"), "--workers", str(WORKERS), *options,
    ).start()  # fmt: skip
    try:
        yield proc
    finally:
        proc.stop()
    assert proc.proc is not None and proc.proc.returncode == 0


@pytest.fixture
def pinned(server: ServerProcess) -> Iterator[list[list[httpx.Client]]]:
    """Two keep-alive connections to each worker: ``pinned[w][k]``."""
    with _pin(server) as clients:
        yield clients


@contextlib.contextmanager
def _pin(server: ServerProcess) -> Iterator[list[list[httpx.Client]]]:
    by_worker: dict[int, list[httpx.Client]] = {}
    spare: list[httpx.Client] = []
    for _ in range(60):  # the kernel hands each new connection to one of the workers
        if len(by_worker) == WORKERS and all(len(c) >= 2 for c in by_worker.values()):
            break
        client = httpx.Client(
            base_url=server.url, timeout=10.0,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )  # fmt: skip
        pid = client.get("/health").json()["worker"]
        (by_worker.setdefault(pid, []) if len(by_worker.get(pid, [])) < 2 else spare).append(client)
    try:
        assert len(by_worker) == WORKERS, f"connections reached workers {sorted(by_worker)} only"
        assert all(len(c) >= 2 for c in by_worker.values())
        yield list(by_worker.values())
    finally:
        for client in spare + [c for cs in by_worker.values() for c in cs]:
            client.close()


def _worker(client: httpx.Client) -> int:
    pid: int = client.get("/health").json()["worker"]
    return pid


def _count(metrics: str, sample: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


RECS = 'recfunnel_http_requests_total{method="GET",route="/v1/users/{user_id}/recommendations",status="200"}'  # noqa: E501


def test_concurrent_ingestion_through_both_workers_loses_and_duplicates_nothing(
    server: ServerProcess, pinned: list[list[httpx.Client]]
) -> None:
    # Four senders, two per worker; each shares 100 event ids with the next and half send
    # theirs in reverse, so both workers write the same ids at the same time.
    senders = [c for clients in pinned for c in clients]
    per, overlap, batch = 400, 100, 25
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def send(k: int) -> None:
        start = k * (per - overlap)
        rows = [{"event_id": f"w{i:05d}", "user_id": f"ing{i % 7}", "item_id": f"i{i % 11}"}
                for i in range(start, start + per)]  # fmt: skip
        if k % 2:
            rows.reverse()
        try:
            for s in range(0, per, batch):
                r = senders[k].post(
                    "/v1/interactions", json={"interactions": rows[s : s + batch]}, headers=W
                )
                assert r.status_code == 200, r.text
                results.append((r.json()["accepted"], r.json()["already_present"]))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(len(senders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    distinct = (len(senders) - 1) * (per - overlap) + per
    assert sum(a for a, _ in results) == distinct
    assert sum(d for _, d in results) == len(senders) * per - distinct
    stored = [e for u in range(7) for e in history(senders[0], f"ing{u}")]
    assert len(stored) == len(set(stored)) == distinct
    # Both workers wrote (each has its own view of the counts; /metrics adds them up).
    assert {_worker(c) for c in senders} == {_worker(clients[0]) for clients in pinned}


def test_feedback_for_a_request_served_by_the_other_worker_is_attributed(
    pinned: list[list[httpx.Client]],
) -> None:
    one, other = pinned[0][0], pinned[1][0]
    assert _worker(one) != _worker(other)
    served = one.get("/v1/users/c/recommendations", headers=R).json()
    report = {"feedback": [
        {"request_id": served["request_id"], "user_id": "c", "item_id": "y",
         "event_type": "click", "position": 0},
        {"request_id": served["request_id"], "user_id": "b", "item_id": "y",
         "event_type": "click"},  # not the user it was served to: not attributed
    ]}  # fmt: skip
    r = other.post("/v1/feedback", json=report, headers=R)
    assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
    rows = {row["user_id"]: row for u in ("b", "c")
            for row in other.get(f"/v1/users/{u}/interactions", headers=W).json()["interactions"]
            if row["event_type"] == "click"}  # fmt: skip
    assert rows["c"]["context"] == {
        "request_id": served["request_id"], "position": 0,
        "model_version": served["model_version"],
    }  # fmt: skip
    assert rows["b"]["context"] == {"request_id": served["request_id"]}


def test_metrics_add_up_both_workers(pinned: list[list[httpx.Client]]) -> None:
    one, other = pinned[0][0], pinned[1][0]
    before = [_count(c.get("/metrics").text, RECS) for c in (one, other)]
    assert before[0] == before[1]  # either worker answers for the whole server
    for _ in range(3):
        assert one.get("/v1/users/stranger/recommendations", headers=R).status_code == 200
    for _ in range(5):
        assert other.get("/v1/users/stranger/recommendations", headers=R).status_code == 200
    after = [c.get("/metrics").text for c in (one, other)]
    assert [_count(text, RECS) for text in after] == [before[0] + 8] * 2
    version = one.get("/health").json()["model_version"]
    info = f'recfunnel_model_info{{model="pop",version="{version}"}}'
    assert _count(after[0], info) == WORKERS  # every worker serves it


def test_a_user_deleted_through_one_worker_is_forgotten_by_the_other(
    pinned: list[list[httpx.Client]],
) -> None:
    one, other = pinned[0][0], pinned[1][0]
    # a saw x, y, z in training: known to the model, nothing left to recommend.
    served = other.get("/v1/users/a/recommendations", headers=R).json()
    assert served["items"] == []
    one.post("/v1/interactions", json={"interactions": [
        {"event_id": "del-1", "user_id": "a", "item_id": "w"}]}, headers=W)  # fmt: skip
    r = one.delete("/v1/users/a", headers=W)
    assert r.status_code == 200 and r.json()["removed"]["interactions"] == 1
    # The other worker serves a as a stranger from its next request: popular items.
    after = other.get("/v1/users/a/recommendations", headers=R).json()
    assert [it["item_id"] for it in after["items"]] == ["x", "y", "z"]
    # The request served before the deletion is no longer attributed to a.
    other.post("/v1/feedback", headers=R, json={"feedback": [
        {"request_id": served["request_id"], "user_id": "a", "item_id": "x",
         "event_type": "click"}]})  # fmt: skip
    rows = one.get("/v1/users/a/interactions", headers=W).json()["interactions"]
    assert [row["context"] for row in rows] == [{"request_id": served["request_id"]}]


def _suggested(client: httpx.Client, user: str) -> dict[str, str]:
    r = client.get(f"/v1/users/{user}/friend-suggestions", params={"n": 20}, headers=R)
    assert r.status_code == 200, r.text
    return {u["user_id"]: u["source"] for u in r.json()["users"]}


def _edges(client: httpx.Client, pairs: list[tuple[str, str]], kind: str = "connect") -> None:
    body = {"edges": [{"src_user_id": a, "dst_user_id": b, "kind": kind} for a, b in pairs]}
    r = client.post("/v1/edges", json=body, headers=W)
    assert r.status_code == 200, r.text


def test_edges_posted_through_one_worker_are_in_force_in_the_other(
    pinned: list[list[httpx.Client]],
) -> None:
    one, other = pinned[0][0], pinned[1][0]
    # Friendships g1-g2 and g2-g3: g3 is a friend of a friend of g1.
    _edges(one, [("g1", "g2"), ("g2", "g1"), ("g2", "g3"), ("g3", "g2")])
    assert _suggested(other, "g1").get("g3") == "model"
    # A block posted to one worker: the other never suggests the pair, either way.
    _edges(one, [("g3", "g1")], kind="block")
    assert "g3" not in _suggested(other, "g1") and "g1" not in _suggested(other, "g3")
    # Unblocking (removing the edge) through the other worker: the first one follows.
    r = other.request("DELETE", "/v1/edges", headers=W,
                      json={"edges": [{"src_user_id": "g3", "dst_user_id": "g1"}]})  # fmt: skip
    assert r.status_code == 200 and r.json() == {"removed": 1}
    assert _suggested(one, "g1").get("g3") == "model"
    # Unfriending g2 through one worker: g3 is no longer a friend of a friend in the other.
    r = one.request("DELETE", "/v1/edges", headers=W,
                    json={"edges": [{"src_user_id": "g1", "dst_user_id": "g2"},
                                    {"src_user_id": "g2", "dst_user_id": "g1"}]})  # fmt: skip
    assert r.status_code == 200 and r.json() == {"removed": 2}
    assert _suggested(other, "g1").get("g3") != "model"


@pytest.fixture(scope="module")
def two_tower_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Two workers serving a two-tower model trained with item genres (users u0..u7)."""
    import pandas as pd

    from recfunnel.candidates import make_generator
    from recfunnel.core.matrix import InteractionMatrix

    root = tmp_path_factory.mktemp("workers-tt")
    users = [f"u{i}" for i in range(8) for _ in range(3)]
    items = [f"{'j' if i % 2 else 'r'}{(i + k) % 4}" for i in range(8) for k in range(3)]
    features = pd.DataFrame(
        {"item_id": [f"{g}{k}" for g in "jr" for k in range(4)],
         "genre": ["jazz"] * 4 + ["rock"] * 4}
    )  # fmt: skip
    model = make_generator("two_tower", dim=8, hidden=0, min_steps=30, epochs=2)
    model.fit(InteractionMatrix.from_arrays(users, items), item_features=features)
    publish_model(model.save(root / "tt"), root / "registry", version="tt1")
    with _workers(root) as proc:
        yield proc


def test_an_item_posted_through_one_worker_is_recommendable_in_the_other(
    two_tower_server: ServerProcess,
) -> None:
    with _pin(two_tower_server) as pinned:
        one, other = pinned[0][0], pinned[1][0]
        assert other.get("/v1/items/j-new/similar", headers=R).status_code == 404
        item = {"item_id": "j-new", "attributes": {"genre": "jazz"}}
        r = one.post("/v1/items", json={"items": [item]}, headers=W)
        assert r.json() == {"written": 1, "indexed": 1}
        recs = other.get("/v1/users/u1/recommendations", params={"n": 20}, headers=R).json()
        assert "j-new" in [it["item_id"] for it in recs["items"]]
        assert other.get("/v1/items/j-new/similar", headers=R).status_code == 200


def test_a_new_version_reaches_every_worker(root: Path, pinned: list[list[httpx.Client]]) -> None:
    publish_model(root / "trained", root / "registry", version="v2")
    deadline = time.monotonic() + 20
    clients = [clients[0] for clients in pinned]
    while time.monotonic() < deadline:
        if all(c.get("/health").json()["model_version"] == "v2" for c in clients):
            break
        time.sleep(0.1)
    for c in clients:
        assert c.get("/v1/users/c/recommendations", headers=R).json()["model_version"] == "v2"
    text = clients[0].get("/metrics").text
    assert _count(text, 'recfunnel_model_info{model="pop",version="v2"}') == WORKERS
    assert _count(text, 'recfunnel_model_info{model="pop",version="v1"}') == 0
    assert _count(text, "recfunnel_model_swaps_total") == 2 * WORKERS  # v1 then v2, each


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    # Past the check `serve` makes before starting workers: the workers' own start fails.
    code = (
        "import sys; from recfunnel.cli.serve_cmd import _serve_workers;"
        "from recfunnel.service.settings import ServiceSettings;"
        f"s = ServiceSettings(store_url='sqlite:///{tmp_path}/e.db', model_dir='{tmp_path}/nope',"
        f" write_key='{WRITE_KEY}', read_key='{READ_KEY}');"
        "print('FAILURE:', _serve_workers(s, 2, host='127.0.0.1', port=0, log_level='warning'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={**os.environ, "RECFUNNEL_WRITE_KEY": WRITE_KEY, "RECFUNNEL_READ_KEY": READ_KEY},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"FAILURE: {tmp_path}/nope: no such model directory or registry" in done.stdout
    assert done.stderr.count("error:") <= WORKERS  # no worker was started again


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'e.db'}", tmp_path / "server.log", "--workers", str(WORKERS)
    ).start()
    try:
        workers: set[int] = set()
        for _ in range(60):
            if len(workers) == WORKERS:
                break
            with httpx.Client(base_url=server.url, timeout=10.0) as client:
                workers.add(_worker(client))
        assert len(workers) == WORKERS
        server.kill()  # SIGKILL: the supervisor cannot stop them itself
        deadline = time.monotonic() + 20
        while workers and time.monotonic() < deadline:
            workers = {pid for pid in workers if _running(pid)}
            time.sleep(0.1)
        assert not workers, f"workers {workers} still running after the supervisor died"
    finally:
        server.stop()
        for pid in workers:  # only after a failure: no orphan outlives the test
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not running (it is only waiting for its new parent to reap it).
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_workers_get_the_settings_but_not_the_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from recfunnel.cli import serve_cmd
    from recfunnel.service.settings import ServiceSettings

    seen: dict[str, str] = {}

    def fake_run(app: str, **options: object) -> None:
        assert app == "recfunnel.cli.serve_cmd:worker_app" and options["factory"] is True
        seen.update(os.environ)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    settings = ServiceSettings(
        store_url="sqlite:///e.db", write_key=WRITE_KEY, read_key=READ_KEY, history_limit=7
    )
    assert serve_cmd._serve_workers(settings, 2, host="h", port=1, log_level="info") is None
    payload = json.loads(seen[serve_cmd.SETTINGS_ENV])
    assert WRITE_KEY not in seen[serve_cmd.SETTINGS_ENV]
    assert READ_KEY not in seen[serve_cmd.SETTINGS_ENV]
    assert payload["settings"]["history_limit"] == 7
    assert seen["PROMETHEUS_MULTIPROC_DIR"] == payload["settings"]["metrics_dir"]
    assert not Path(payload["run_dir"]).exists()  # removed when the server stops
    assert serve_cmd.SETTINGS_ENV not in os.environ
