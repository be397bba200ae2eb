"""Concurrent ingestion into a real server from several clients loses and duplicates
nothing, retries included."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from service_helpers import ServerProcess, W, history

from recfunnel.data.store import open_store

CLIENTS = 6
BATCHES = 12
BATCH = 25


def test_concurrent_clients_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'events.db'}"
    server = ServerProcess(store_url, tmp_path / "server.log").start()
    totals: dict[int, tuple[int, int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(CLIENTS)

    def client_run(c: int) -> None:
        accepted = already = 0
        try:
            with httpx.Client(base_url=server.url, timeout=30.0) as client:
                start.wait(timeout=30)
                batches = [
                    [{"event_id": f"c{c}-b{b}-{k}", "user_id": f"user{c}", "item_id": f"i{k}"}
                     for k in range(BATCH)]
                    for b in range(BATCHES)
                ]  # fmt: skip
                # Every batch, then every other batch again (a client retrying).
                for rows in batches + batches[::2]:
                    r = client.post("/v1/interactions", json={"interactions": rows}, headers=W)
                    assert r.status_code == 200, r.text
                    accepted += r.json()["accepted"]
                    already += r.json()["already_present"]
                # Everyone also writes the same shared events: stored once in total.
                shared = [{"event_id": f"shared-{k}", "user_id": "shared", "item_id": "s"}
                          for k in range(BATCH)]  # fmt: skip
                r = client.post("/v1/interactions", json={"interactions": shared}, headers=W)
                accepted += r.json()["accepted"]
                already += r.json()["already_present"]
        except BaseException as exc:
            errors.append(exc)
        totals[c] = (accepted, already)

    threads = [threading.Thread(target=client_run, args=(c,)) for c in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        own = BATCHES * BATCH
        retried = len(range(0, BATCHES, 2)) * BATCH
        assert sum(a for a, _ in totals.values()) == CLIENTS * own + BATCH
        assert sum(d for _, d in totals.values()) == CLIENTS * retried + (CLIENTS - 1) * BATCH
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            for c in range(CLIENTS):
                ids = history(client, f"user{c}")
                assert len(ids) == own and len(set(ids)) == own
                # Arrival order within one client is preserved.
                assert ids == [f"c{c}-b{b}-{k}" for b in range(BATCHES) for k in range(BATCH)]
            assert sorted(history(client, "shared")) == sorted(f"shared-{k}" for k in range(BATCH))
    finally:
        server.stop()
    with open_store(store_url) as store:
        assert store.counts()["interactions"] == CLIENTS * BATCHES * BATCH + BATCH
