"""Event ingestion throughput: recfunnel's stores against a raw driver loop, in one run.

For SQLite both sides write the same schema (``recfunnel.data.store.sqlite.DDL``) with the
same settings (WAL, ``synchronous=FULL``, same page cache), one transaction per batch and
``ON CONFLICT (event_id) DO NOTHING``. The raw side is ``sqlite3.executemany`` over tuples
built beforehand (its best case); ours starts from a list of dicts, as the HTTP API receives
them, and includes validation and the accepted/duplicate count. PostgreSQL, when a URL is
given, runs ours (COPY + INSERT … SELECT) beside a raw ``psycopg`` ``executemany`` of the same
INSERT, each in a fresh schema. Event ids are either random (UUID4, the worst case for the
unique index) or time-ordered (as recfunnel generates them).

    .venv/bin/python benchmarks/ingest.py --events 200000 --batch 10000 \\
        --pg-url "$RECFUNNEL_TEST_PG_URL"

Prints a table and writes reports/ingest.json. Targets: ours >= 100k events/s on SQLite and
>= 70% of raw ``executemany``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recfunnel.data.store import open_store
from recfunnel.data.store import sqlite as sqlite_backend
from recfunnel.data.store.postgres import DDL as PG_DDL

TARGET_EVENTS_PER_S = 100_000
TARGET_RATIO = 0.70


def make_events(n: int, ids: str, seed: int = 0) -> list[dict[str, Any]]:
    if ids == "uuid4":
        event_ids = [uuid.UUID(int=uuid.uuid4().int).hex for _ in range(n)]
    else:  # time-ordered: a millisecond clock prefix, then a counter
        base = time.time_ns() // 1_000_000
        event_ids = [f"{base + i // 100:012x}{seed:08x}{i:012x}" for i in range(n)]
    return [
        {
            "event_id": event_ids[i],
            "user_id": f"u{(i * 7919) % 10_000}",
            "item_id": f"i{(i * 104_729) % 50_000}",
            "event_type": "click",
            "value": 1.0,
            "timestamp": 1_700_000_000.0 + i * 0.01,
        }
        for i in range(n)
    ]


def as_tuples(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    keys = ("event_id", "user_id", "item_id", "event_type", "value", "timestamp")
    return [(*(e[k] for k in keys), "{}") for e in events]


#: CPU seconds of this process per measured run, by the side that ran (SQLite does all its
#: work in-process, so events per CPU-second shows speed independent of a loaded machine).
CPU: dict[str, list[float]] = {}


def timed(run: Callable[[], int], n: int, label: str) -> float:
    """Events per wall-clock second of ``run`` (which returns the stored count)."""
    cpu, start = time.process_time(), time.perf_counter()
    stored = run()
    elapsed = time.perf_counter() - start
    CPU.setdefault(label, []).append(n / max(time.process_time() - cpu, 1e-9))
    if stored != n:
        raise AssertionError(f"expected {n} stored events, found {stored}")
    return n / elapsed


def sqlite_ours(events: list[dict[str, Any]], batch: int, path: Path) -> float:
    def run() -> int:
        with open_store(f"sqlite:///{path}") as store:
            for s in range(0, len(events), batch):
                store.add_interactions(events[s : s + batch])
            return store.counts()["interactions"]

    return timed(run, len(events), "sqlite")


def sqlite_raw(rows: list[tuple[Any, ...]], batch: int, path: Path) -> float:
    def run() -> int:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        for pragma in sqlite_backend.PRAGMAS:
            conn.execute(pragma)
        conn.executescript(sqlite_backend.DDL)
        for s in range(0, len(rows), batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sqlite_backend.INSERT_INTERACTIONS, rows[s : s + batch])
            conn.execute("COMMIT")
        (count,) = conn.execute("SELECT count(*) FROM interactions").fetchone()
        conn.close()
        return int(count)

    return timed(run, len(rows), "sqlite-raw")


def _pg_schema(url: str) -> tuple[str, Callable[[], None]]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")

    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}", drop


def pg_ours(events: list[dict[str, Any]], batch: int, url: str) -> float:
    scoped, drop = _pg_schema(url)
    try:
        with open_store(scoped):  # tables exist before the clock starts, as for raw
            pass

        def run() -> int:
            with open_store(scoped) as store:
                for s in range(0, len(events), batch):
                    store.add_interactions(events[s : s + batch])
                return store.counts()["interactions"]

        return timed(run, len(events), "postgresql")
    finally:
        drop()


def pg_raw(rows: list[tuple[Any, ...]], batch: int, url: str) -> float:
    import psycopg

    scoped, drop = _pg_schema(url)
    insert = (
        "INSERT INTO interactions (event_id, user_id, item_id, event_type, value, timestamp, "
        "context) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING"
    )
    try:
        with psycopg.connect(scoped, autocommit=True) as conn:
            for statement in PG_DDL:
                conn.execute(statement)

            def run() -> int:
                for s in range(0, len(rows), batch):
                    with conn.transaction(), conn.cursor() as cur:
                        cur.executemany(insert, rows[s : s + batch])
                row = conn.execute("SELECT count(*) FROM interactions").fetchone()
                return int(row[0]) if row else 0

            return timed(run, len(rows), "postgresql-raw")
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs")
    parser.add_argument("--ids", nargs="+", default=["uuid4", "ordered"])
    parser.add_argument("--pg-url", default=os.environ.get("RECFUNNEL_TEST_PG_URL"))
    parser.add_argument("--output", type=Path, default=Path("reports/ingest.json"))
    args = parser.parse_args()

    results: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=os.environ.get("RECFUNNEL_BENCH_DIR")) as tmp:
        for ids in args.ids:
            events = make_events(args.events, ids)
            rows = as_tuples(events)
            CPU.clear()
            runs: dict[str, list[float]] = {"sqlite": [], "sqlite-raw": []}
            if args.pg_url:
                runs |= {"postgresql": [], "postgresql-raw": []}
            for r in range(args.repeats):  # interleaved, so load changes hit both sides
                runs["sqlite"].append(sqlite_ours(events, args.batch, Path(tmp, f"o{ids}{r}.db")))
                runs["sqlite-raw"].append(sqlite_raw(rows, args.batch, Path(tmp, f"r{ids}{r}.db")))
                if args.pg_url:
                    runs["postgresql"].append(pg_ours(events, args.batch, args.pg_url))
                    runs["postgresql-raw"].append(pg_raw(rows, args.batch, args.pg_url))
            # Best of N, as timeit: on a shared machine noise only ever slows a run down.
            med = {k: max(v) for k, v in runs.items()}
            for backend in ("sqlite", "postgresql"):
                if backend not in med:
                    continue
                ours, raw = med[backend], med[f"{backend}-raw"]
                results.append(
                    {
                        "backend": backend,
                        "ids": ids,
                        "ours_events_per_s": round(ours),
                        "raw_events_per_s": round(raw),
                        "ratio": round(ours / raw, 3),
                        "runs_ours": [round(x) for x in runs[backend]],
                        "runs_raw": [round(x) for x in runs[f"{backend}-raw"]],
                    }
                )
                if backend == "sqlite":
                    cpu_ours = max(CPU["sqlite"])
                    cpu_raw = max(CPU["sqlite-raw"])
                    results[-1] |= {
                        "ours_events_per_cpu_s": round(cpu_ours),
                        "raw_events_per_cpu_s": round(cpu_raw),
                        "cpu_ratio": round(cpu_ours / cpu_raw, 3),
                    }

    header = (
        f"{'backend':<11} {'ids':<8} {'ours ev/s':>10} {'raw ev/s':>10} {'ratio':>6}"
        f" {'ours ev/cpu-s':>14} {'raw ev/cpu-s':>13} {'ratio':>6}"
    )
    load = (load_before, os.getloadavg()[0])
    print(
        f"{args.events} events, batches of {args.batch}, best of {args.repeats} runs; "
        f"load average {load[0]:.1f} -> {load[1]:.1f} on {os.cpu_count()} CPUs"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['backend']:<11} {r['ids']:<8} {r['ours_events_per_s']:>10,} "
            f"{r['raw_events_per_s']:>10,} {r['ratio']:>6.2f}"
            + (
                f" {r['ours_events_per_cpu_s']:>14,} {r['raw_events_per_cpu_s']:>13,}"
                f" {r['cpu_ratio']:>6.2f}"
                if "cpu_ratio" in r
                else ""
            )
        )
    sqlite_rows = [r for r in results if r["backend"] == "sqlite"]
    verdict = {
        "min_sqlite_events_per_s": min(r["ours_events_per_s"] for r in sqlite_rows),
        "min_sqlite_ratio": min(r["ratio"] for r in sqlite_rows),
    }
    verdict["meets_throughput"] = verdict["min_sqlite_events_per_s"] >= TARGET_EVENTS_PER_S
    verdict["meets_ratio"] = verdict["min_sqlite_ratio"] >= TARGET_RATIO
    print(
        f"targets: >= {TARGET_EVENTS_PER_S:,} ev/s -> {verdict['meets_throughput']}; "
        f"ratio >= {TARGET_RATIO} -> {verdict['meets_ratio']}"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "ingest",
        "events": args.events,
        "batch": args.batch,
        "repeats": args.repeats,
        "sqlite_version": sqlite3.sqlite_version,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before_after": load,
        },
        "results": results,
        "targets": {"events_per_s": TARGET_EVENTS_PER_S, "ratio": TARGET_RATIO, **verdict},
    }
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
