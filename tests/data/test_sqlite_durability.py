"""An acknowledged write survives a crash: a child process ingests batches and prints each
acknowledgement after ``add_interactions`` returns; the parent SIGKILLs it mid-stream and
checks, on reopening, that every acknowledged event is there exactly once and that every
batch is either entirely there or entirely absent (a batch is one transaction)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recfunnel.data.store import open_store
from recfunnel.data.store.sqlite import SQLiteStore

BATCH = 500

CHILD = f"""
import sys
from recfunnel.data.store import open_store

store = open_store("sqlite:///" + sys.argv[1])
b = 0
while True:
    store.add_interactions(
        [{{"event_id": f"b{{b}}-{{i}}", "user_id": f"u{{i % 50}}", "item_id": f"i{{i}}",
           "context": {{"batch": b}}}} for i in range({BATCH})]
    )
    print(b, flush=True)  # the acknowledgement: only after the commit returned
    b += 1
"""


@pytest.mark.parametrize("kill_after", [5, 23])
def test_acknowledged_batches_survive_sigkill(tmp_path: Path, kill_after: int) -> None:
    db = tmp_path / "events.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: list[int] = []
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        while len(acked) < kill_after and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(int(line))
        child.send_signal(signal.SIGKILL)  # mid-stream: the next batch is being written
        rest, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    acked += [int(x) for x in rest.split()]  # acknowledgements printed before the kill
    assert child.returncode == -signal.SIGKILL, err
    assert len(acked) >= kill_after, err

    with open_store(f"sqlite:///{db}") as store:
        ids = store.to_arrow()["event_id"].to_pylist()
    assert len(ids) == len(set(ids))  # nothing twice
    per_batch: dict[int, int] = {}
    for event_id in ids:
        b = int(event_id[1:].split("-")[0])
        per_batch[b] = per_batch.get(b, 0) + 1
    for b in acked:
        assert per_batch.get(b) == BATCH, f"acknowledged batch {b} lost rows"
    # All or nothing: the batch in flight at the kill is complete or absent.
    assert set(per_batch.values()) == {BATCH}
    assert set(per_batch) - set(acked) <= {max(acked) + 1}
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_store_runs_wal_with_full_sync(tmp_path: Path) -> None:
    with SQLiteStore(str(tmp_path / "s.db")) as store:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL


def test_unopenable_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot open SQLite store"):
        open_store(f"sqlite:///{tmp_path}/missing-dir/s.db")
