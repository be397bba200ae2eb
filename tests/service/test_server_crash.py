"""Acknowledged writes survive ``kill -9`` of a real server: ingest with acknowledgements,
SIGKILL mid-stream, restart, and every acknowledged event is there exactly once; the batch
in flight at the kill is either wholly there or wholly absent, and its retry completes it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from service_helpers import READ_KEY, WRITE_KEY, ServerProcess, W, history

from recfunnel.data.store import open_store

BATCH = 20


def _batch(i: int) -> list[dict[str, object]]:
    return [
        {"event_id": f"b{i}-{k}", "user_id": "crash", "item_id": f"i{k}", "timestamp": i}
        for k in range(BATCH)
    ]


def test_acknowledged_events_survive_sigkill(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'events.db'}"
    log = tmp_path / "server.log"
    server = ServerProcess(store_url, log).start()
    acked: list[int] = []
    in_flight: list[int] = []
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            i = 0
            while not stop.is_set():
                try:
                    r = client.post("/v1/interactions", json={"interactions": _batch(i)}, headers=W)
                except httpx.TransportError:
                    in_flight.append(i)  # no acknowledgement: may or may not be stored
                    return
                assert r.status_code == 200, r.text
                assert r.json()["accepted"] == BATCH
                acked.append(i)
                i += 1

    writer = threading.Thread(target=stream)
    writer.start()
    deadline = time.monotonic() + 30
    while len(acked) < 25 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # mid-stream: the writer is sending its next batch
    writer.join(timeout=30)
    stop.set()
    assert len(acked) >= 25 and in_flight, "the kill did not land mid-stream"

    server = ServerProcess(store_url, log).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            stored = history(client, "crash")
            assert len(stored) == len(set(stored))  # exactly once
            expected = {f"b{i}-{k}" for i in acked for k in range(BATCH)}
            assert expected <= set(stored)
            extra = set(stored) - expected
            pending = {f"b{in_flight[0]}-{k}" for k in range(BATCH)}
            assert extra in (set(), pending)  # the unacknowledged batch: all or nothing
            retry = client.post(
                "/v1/interactions", json={"interactions": _batch(in_flight[0])}, headers=W
            ).json()
            assert retry["accepted"] + retry["already_present"] == BATCH
            assert retry["already_present"] == (BATCH if extra else 0)
            final = history(client, "crash")
            assert sorted(final) == sorted(expected | pending)
    finally:
        server.stop()
    with open_store(store_url) as store:
        assert store.counts()["interactions"] == (len(acked) + 1) * BATCH
    text = log.read_text()
    assert "POST /v1/interactions" in text  # uvicorn's access log is on ...
    assert WRITE_KEY not in text and READ_KEY not in text  # ... and never shows a key
