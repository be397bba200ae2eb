"""Benchmark: end-to-end latency of ``GET /v1/users/{id}/recommendations`` on a real server.

Setup: a synthetic embedding model (ALS layout: ``--users`` user and ``--items`` item vectors
of ``--dim`` floats, ``--seen`` training items per user) published to a model registry with
an HNSW index (``make_index("hnsw", M=16, ef_construction=40, ef_search=64)``), served by
``recfunnel serve`` (uvicorn, one process) over a SQLite store holding ``--history`` stored
events for each queried user. Each request therefore does what production does: check the
key, read the user's stored history from the store, search the index for the user vector
with the seen and stored items excluded, answer JSON with a request id.

Load: a Python asyncio client on loopback, keep-alive HTTP/1.1 connections written on raw
sockets (an httpx client costs more CPU per request than the server on a 2-core machine, so
it would measure itself), ``--requests`` requests (bounded also by ``--seconds``) after a
warm-up, at 1 and 8 concurrent connections as fast as answers come (closed loop), then at 8
connections with requests due at a fixed ``--rate`` (open loop, 300/s by default; latency
counts from the time a request was due, so queueing for a busy connection counts, as in
wrk2). Reported: p50 / p99 latency, throughput.
In the same run: the raw FAISS query (``IndexHNSWFlat.search`` on the loaded index, k=10,
one thread, the same user vectors) p50, the ratio end-to-end p50 / raw FAISS p50, and the
server's peak RSS (VmHWM).

``--funnel CONFIG`` serves a trained funnel instead (published to the registry the same way):
``--funnel-dataset ml-1m`` trains it on MovieLens-1M; ``--funnel-dataset synthetic`` on a
synthetic log of ``--users`` users and ``--items`` items (``--seen`` events per user), which with
``configs/funnel_1m.toml`` is the full funnel over a million-item catalogue (ALS through HNSW,
popularity, LightGBM light and heavy rankers, re-ranking). Its peers in the same run: the raw
FAISS query of the funnel's own index (its ALS user vectors, k = the ALS quota) and the
in-process ``Funnel.recommend`` p50.

Targets (issue 5): p99 ≤ 20 ms at ≥ 300 requests/s; end-to-end p50 ≤ 2 × raw FAISS p50.

Run:  .venv/bin/python benchmarks/serve_latency.py                 (1M items; the first run
      builds the index, minutes; later runs reuse --workdir)
      .venv/bin/python benchmarks/serve_latency.py --items 50000  (a smoke run)
      .venv/bin/python benchmarks/serve_latency.py --funnel configs/funnel_1m.toml \
          --funnel-dataset synthetic --users 50000 --seen 20   (the full funnel, 1M items)
Writes reports/serve_latency.json (or --output).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

WRITE_KEY = "bench-write-key-0123456789"
READ_KEY = "bench-read-key-0123456789"


def build_registry(args: argparse.Namespace, root: Path) -> Path:
    """The synthetic model, published with its HNSW index (reused when already built)."""
    from recfunnel.candidates import make_generator
    from recfunnel.core.ids import IdIndex
    from recfunnel.service.registry import current_version, publish_model

    registry = root / "registry"
    if current_version(registry) is not None:
        print(f"reusing {registry}", flush=True)
        return registry
    rng = np.random.default_rng(args.seed)
    model = make_generator("als", factors=args.dim)
    model.users_ = IdIndex([f"u{j}" for j in range(args.users)], kind="user")
    model.items_ = IdIndex([f"i{j}" for j in range(args.items)], kind="item")
    cols = rng.integers(0, args.items, size=(args.users, args.seen))
    cols.sort(axis=1)
    model.seen_ = sp.csr_matrix(
        (np.ones(cols.size, np.float32), cols.ravel(), np.arange(0, cols.size + 1, args.seen)),
        shape=(args.users, args.items),
    )
    model.seen_.sum_duplicates()
    model.user_factors_ = rng.standard_normal((args.users, args.dim)).astype(np.float32)
    model.item_factors_ = rng.standard_normal((args.items, args.dim)).astype(np.float32)
    model.regularization_ = 0.01
    started = time.perf_counter()
    saved = model.save(root / "model")
    version = publish_model(
        saved,
        registry,
        version="bench",
        index=args.index,
        index_params=INDEX_PARAMS[args.index],
    )
    print(f"published {version} with {args.index} in {time.perf_counter() - started:.0f} s")
    return registry


def build_funnel_registry(
    args: argparse.Namespace, root: Path
) -> tuple[Path, list[str], list[str]]:
    """``--funnel CONFIG``: the funnel trained on all of ``--funnel-dataset``, published (reused
    when already built); returns the registry, the dataset's user ids and item ids."""
    from recfunnel.core.matrix import InteractionMatrix
    from recfunnel.data.datasets import load as load_dataset
    from recfunnel.pipeline.funnel import Funnel
    from recfunnel.pipeline.funnel_config import load_funnel_config
    from recfunnel.service.registry import current_version, publish_model

    started = time.perf_counter()
    if args.funnel_dataset == "synthetic":
        from recfunnel.data.synthetic import SyntheticGenerator

        data = SyntheticGenerator(
            n_users=args.users, n_items=args.items, n_interactions=args.users * args.seen,
            n_factors=32, n_categories=200, seed=args.seed, progress=True,
        ).generate()  # fmt: skip
        print(f"drew {len(data.interactions):,} synthetic interactions over {args.items:,} items "
              f"in {time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    else:
        data = load_dataset(args.funnel_dataset, cache_dir=Path(args.cache_dir).expanduser())
    matrix = InteractionMatrix.from_dataset(data)
    registry = root / "registry"
    if current_version(registry) is None:
        config = load_funnel_config(args.funnel)
        if args.index != "hnsw":
            # --index ivfpq: the funnel's indexed generators get compressed PQ codes instead.
            import dataclasses

            gens = tuple(
                dataclasses.replace(g, index=args.index, index_params=INDEX_PARAMS[args.index])
                if g.index is not None
                else g
                for g in config.retrieval
            )
            config = dataclasses.replace(config, retrieval=gens)
        valid = None
        if config.training.labels == "valid":
            from recfunnel.data.splits import random_split

            parts = random_split(matrix, (0.9, 0.1), seed=args.seed)
            matrix, valid = parts.train, parts.valid if len(parts.valid) else parts.test
        funnel = Funnel(config).fit(matrix, valid=valid, log=lambda m: print(f"  {m}", flush=True))
        print(f"  fitted in {funnel.fit_seconds_:.0f} s", flush=True)
        publish_model(funnel.save(root / "funnel"), registry, version="bench-funnel")
        print(f"trained and published the funnel in {time.perf_counter() - started:.0f} s")
    else:
        print(f"reusing {registry}", flush=True)
    return registry, matrix.users.ids.tolist(), matrix.items.ids.tolist()


def load_served_funnel(registry: Path) -> Any:
    """The funnel version the server will serve, loaded in this process for the peers."""
    from recfunnel.pipeline.funnel import Funnel
    from recfunnel.service.registry import VERSIONS, current_version

    return Funnel.load(registry / VERSIONS / str(current_version(registry)))


def funnel_inprocess_p50(funnel: Any, users: list[str], n: int) -> float:
    """p50 (ms) of ``Funnel.recommend`` for one user, in this process: the peer of the HTTP
    figure (what the server adds on top of the library call)."""
    times = []
    for j in range(n):
        t = time.perf_counter_ns()
        funnel.recommend([users[j % len(users)]], 10)
        times.append(time.perf_counter_ns() - t)
    return float(np.percentile(times[n // 10 :], 50)) / 1e6


def funnel_faiss_p50(funnel: Any, users: list[str], n: int) -> float | None:
    """p50 (ms) of one raw FAISS query against the index of the funnel's first indexed
    generator (its user vector, k = that generator's quota), or None without an index."""
    indexed = [g for g in funnel.config.retrieval if g.index is not None]
    if not indexed:
        return None
    g = indexed[0]
    gen = funnel.generators_[g.name]
    raw = funnel.indexes_[g.name].faiss_index
    vectors = gen.user_vectors(gen.users_.encode(users))
    times = []
    for j in range(n):
        q = np.ascontiguousarray(vectors[j % len(vectors) : j % len(vectors) + 1])
        t = time.perf_counter_ns()
        raw.search(q, g.quota)
        times.append(time.perf_counter_ns() - t)
    return float(np.percentile(times[n // 10 :], 50)) / 1e6


def fill_store(
    url: str, users: list[str], per_user: int, n_items: int, seed: int,
    item_ids: list[str] | None = None,
) -> None:  # fmt: skip
    from recfunnel.data.store import open_store

    rng = np.random.default_rng(seed)
    with open_store(url) as store:
        if store.counts()["interactions"]:
            return
        rows = [
            {"event_id": f"{u}-{k}", "user_id": u,
             "item_id": item_ids[int(i)] if item_ids else f"i{int(i)}"}
            for u in users
            for k, i in enumerate(rng.integers(0, n_items, per_user))
        ]  # fmt: skip
        for start in range(0, len(rows), 10_000):
            store.add_interactions(rows[start : start + 10_000])


#: The served index: HNSW over float32 vectors, or IVF-PQ over 16-byte PQ codes (compressed).
INDEX_PARAMS: dict[str, dict[str, Any]] = {
    "hnsw": {"M": 16, "ef_construction": 40, "ef_search": 64, "build_threads": 2},
    "ivfpq": {"m": 16, "nbits": 8, "nprobe": 16, "build_threads": 2},
}


def raw_faiss_p50(registry: Path, users: np.ndarray, n: int, kind: str = "hnsw") -> float:
    """p50 (ms) of the bare FAISS search of the served index, one query at a time."""
    import faiss

    from recfunnel.candidates import load_generator
    from recfunnel.service.registry import INDEX_DIR, VERSIONS, current_version

    path = registry / VERSIONS / str(current_version(registry))
    faiss.omp_set_num_threads(1)
    index = faiss.read_index(str(path / INDEX_DIR / "index.bin"))
    if kind == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = INDEX_PARAMS["hnsw"]["ef_search"]
    else:
        faiss.extract_index_ivf(index).nprobe = INDEX_PARAMS["ivfpq"]["nprobe"]
    vectors = load_generator(path).user_vectors(users).astype(np.float32)  # type: ignore[attr-defined]
    times = []
    for j in range(n):
        q = vectors[j % len(vectors)][None, :]
        t = time.perf_counter_ns()
        index.search(q, 10)
        times.append(time.perf_counter_ns() - t)
    return float(np.percentile(times[n // 10 :], 50)) / 1e6


class Server:
    def __init__(self, store_url: str, registry: Path, log: Path, workers: int = 1) -> None:
        self.workers = workers
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {**os.environ, "RECFUNNEL_WRITE_KEY": WRITE_KEY, "RECFUNNEL_READ_KEY": READ_KEY,
               "OMP_NUM_THREADS": "1"}  # fmt: skip
        code = "import typer; from recfunnel.cli.serve_cmd import serve; typer.run(serve)"
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "--store", store_url, "--model-dir", str(registry),
             "--port", str(self.port), "--log-level", "warning",
             *(["--poll-seconds", "0"] if workers == 1 else ["--workers", str(workers)])],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        seen: set[bytes] = set()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited; see the log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    answer = s.recv(4096)
                    if b"200 OK" in answer:
                        seen.add(answer.rsplit(b'"worker":', 1)[-1][:12])
                        if len(seen) >= self.workers:  # every worker has loaded the model
                            return
                    time.sleep(0.05)
            except OSError:
                time.sleep(0.5)
        raise TimeoutError("server did not start")

    def _pids(self) -> list[int]:
        """The server process and its children (uvicorn's workers)."""
        pids = [self.proc.pid]
        for pid in pids:  # grows while walking: children of children
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                pids += [int(c) for c in task.read_text().split()]
        return pids

    def peak_rss_by_process(self) -> list[float]:
        """Peak resident memory (VmHWM, MB) of each of the server's processes, the first
        being the one started (with workers: the supervisor)."""
        out = []
        for pid in self._pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out.append(int(line.split()[1]) / 1024)
        return out

    def peak_rss_mb(self) -> float:
        """Peak resident memory (VmHWM), summed over the server's processes."""
        return sum(self.peak_rss_by_process())

    def cpu_seconds(self) -> float:
        """User + system CPU time the server's processes have used so far."""
        total = 0
        for pid in self._pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def _client(
    port: int,
    users: list[str],
    count: list[int],
    limit: int,
    deadline: float,
    out: list[float],
    rate: float | None = None,
    started: float = 0.0,
    spread: dict[bytes, int] | None = None,
    per_worker: int = 0,
) -> None:
    """One keep-alive connection. Closed loop (``rate`` None): the next request as soon as the
    last answer arrives. Open loop: request j is *due* at ``started + j / rate``; the
    connection waits for that time, and latency counts from it, so time a request spends
    waiting for a free connection counts too (no coordinated omission, as wrk2 measures)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if spread is not None:
        reader, writer = await _balanced(port, reader, writer, spread, per_worker)
    try:
        while count[0] < limit and time.perf_counter() < deadline:
            j = count[0]
            count[0] += 1
            request = (
                f"GET /v1/users/{users[j % len(users)]}/recommendations?n=10 HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nX-API-Key: {READ_KEY}\r\n\r\n"
            ).encode()
            if rate is None:
                t = time.perf_counter()
            else:
                t = started + j / rate
                wait = t - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            out.append(time.perf_counter() - t)
    finally:
        writer.close()


async def _worker_of(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    return body.rsplit(b'"worker":', 1)[-1].split(b"}")[0].strip()


async def _balanced(
    port: int,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    spread: dict[bytes, int],
    per_worker: int,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Reconnect until this connection lands on a worker holding fewer than ``per_worker`` of
    the level's connections, as a load balancer in front of the workers would spread them
    (workers accepting from one shared socket split 8 connections 6:2 in our runs)."""
    for _ in range(200):
        worker = await _worker_of(reader, writer)
        if spread.get(worker, 0) < per_worker:
            spread[worker] = spread.get(worker, 0) + 1
            return reader, writer
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raise RuntimeError(f"could not spread connections over the workers: {spread}")


def load(
    port: int,
    users: list[str],
    clients: int,
    n: int,
    seconds: float,
    rate: float | None = None,
    workers: int = 1,
) -> dict[str, float | None]:
    async def run(limit: int, budget: float, pace: float | None) -> tuple[list[float], float]:
        out: list[float] = []
        count = [0]
        spread: dict[bytes, int] | None = {} if workers > 1 else None
        per_worker = -(-clients // workers)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _client(
                    port,
                    users,
                    count,
                    limit,
                    started + budget,
                    out,
                    pace,
                    started,
                    spread,
                    per_worker,
                )
                for _ in range(clients)
            )
        )
        return out, time.perf_counter() - started

    asyncio.run(run(max(100, n // 10), seconds, None))  # warm-up
    lat, elapsed = asyncio.run(run(n, seconds, rate))
    ms = np.asarray(lat) * 1e3
    return {
        "clients": clients,
        "offered_rps": rate,
        "requests": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "throughput_rps": round(len(ms) / elapsed, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--seen", type=int, default=20)
    p.add_argument("--history", type=int, default=10, help="stored events per queried user")
    p.add_argument("--query-users", type=int, default=2_000)
    p.add_argument("--requests", type=int, default=4_000, help="per concurrency level")
    p.add_argument("--seconds", type=float, default=40.0, help="cap per concurrency level")
    p.add_argument(
        "--rate", type=float, default=300.0, help="offered requests/s of the open-loop level"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--funnel",
        type=Path,
        default=None,
        help="serve this funnel configuration (trained on --funnel-dataset) instead of the "
        "synthetic 1M-item retrieval model; the peer is the in-process Funnel.recommend",
    )
    p.add_argument(
        "--funnel-dataset",
        default="ml-1m",
        help="a dataset name, or 'synthetic': --users users, --items items and --seen events per "
        "user drawn by recfunnel's SyntheticGenerator (latent factors, Zipf popularity)",
    )
    p.add_argument(
        "--index",
        choices=sorted(INDEX_PARAMS),
        default="hnsw",
        help="the served index; with --funnel, ivfpq replaces the index of the funnel's "
        "indexed generators (compressed embeddings)",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="server worker processes (recfunnel serve --workers)"
    )
    p.add_argument("--cache-dir", default="~/.cache/recfunnel")
    p.add_argument("--workdir", type=Path, default=Path("reports/serve_bench"))
    p.add_argument("--output", type=Path, default=Path("reports/serve_latency.json"))
    p.add_argument("--no-fail", action="store_true")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed + 1)
    if args.funnel is not None:
        data_name = args.funnel_dataset
        if data_name == "synthetic":
            data_name = f"synthetic-{args.items}x{args.users}"
        suffix = "" if args.index == "hnsw" else f"-{args.index}"
        root = args.workdir / f"funnel-{data_name}-{args.funnel.stem}{suffix}"
        root.mkdir(parents=True, exist_ok=True)
        registry, all_users, all_items = build_funnel_registry(args, root)
        size = min(args.query_users, len(all_users))
        users = [all_users[j] for j in rng.choice(len(all_users), size=size, replace=False)]
        store_url = f"sqlite:///{root / 'events.db'}"
        fill_store(store_url, users, args.history, len(all_items), args.seed, all_items)
        funnel = load_served_funnel(registry)
        inproc = funnel_inprocess_p50(funnel, users, 500)
        print(f"in-process Funnel.recommend p50: {inproc:.3f} ms", flush=True)
        faiss_p50 = funnel_faiss_p50(funnel, users, 3000)
        del funnel  # the server loads its own
        if faiss_p50 is None:
            raw, peer = inproc, "in-process Funnel.recommend"
        else:
            raw, peer = faiss_p50, "raw FAISS (the funnel's index)"
            print(f"raw FAISS query of the funnel's index p50: {raw:.3f} ms", flush=True)
    else:
        suffix = "" if args.index == "hnsw" else f"-{args.index}"
        root = args.workdir / f"{args.items}x{args.dim}{suffix}"
        root.mkdir(parents=True, exist_ok=True)
        registry = build_registry(args, root)
        picked = np.sort(rng.choice(args.users, size=args.query_users, replace=False))
        users = [f"u{j}" for j in picked.tolist()]
        rng.shuffle(users)
        store_url = f"sqlite:///{root / 'events.db'}"
        fill_store(store_url, users, args.history, args.items, args.seed)
        raw = raw_faiss_p50(registry, picked, 3000, args.index)
        peer = "raw FAISS"
        print(f"raw FAISS {args.index} search p50: {raw:.3f} ms", flush=True)

    server = Server(store_url, registry, root / "server.log", args.workers)
    try:
        t = time.perf_counter()
        server.wait()
        start_s = time.perf_counter() - t
        levels = []
        for clients, rate in ((1, None), (8, None), (8, args.rate)):
            cpu = server.cpu_seconds()
            level = load(
                server.port, users, clients, args.requests, args.seconds, rate, args.workers
            )
            # Server CPU per request (warm-up included in both terms): unlike wall-clock
            # latency, it does not grow when other processes hold the cores.
            spent = server.cpu_seconds() - cpu
            level["server_cpu_ms_per_request"] = round(
                spent * 1e3 / (level["requests"] + max(100, args.requests // 10)), 3
            )
            levels.append(level)
        rss_each = server.peak_rss_by_process()
        rss = sum(rss_each)
    finally:
        server.stop()
    e2e = levels[0]["p50_ms"]
    report: dict[str, Any] = {
        "catalogue": {
            "items": args.items,
            "users": args.users,
            "dim": args.dim,
            "index": {"kind": args.index, **INDEX_PARAMS[args.index]},
        }
        if args.funnel is None
        else {
            "funnel": str(args.funnel),
            "dataset": args.funnel_dataset,
            "in_process_funnel_p50_ms": round(inproc, 3),
            **(
                {"items": args.items, "users": args.users}
                if args.funnel_dataset == "synthetic"
                else {}
            ),
        },
        "peer": peer,
        "server_start_s": round(start_s, 1),
        "workers": args.workers,
        "raw_faiss_p50_ms": round(raw, 3),
        "levels": levels,
        "ratio_e2e_p50_to_faiss_p50": round(e2e / raw, 1),
        "server_peak_rss_mb": round(rss, 0),
        "server_peak_rss_mb_by_process": [round(x) for x in rss_each],
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(),
            "python": platform.python_version(),
        },
    }
    for lv in levels:
        mode = f"open loop at {lv['offered_rps']:.0f} req/s" if lv["offered_rps"] else "closed loop"
        print(
            f"{lv['clients']} client(s), {mode}: p50 {lv['p50_ms']:.2f} ms, "
            f"p90 {lv['p90_ms']:.2f} ms, "
            f"p99 {lv['p99_ms']:.2f} ms, {lv['throughput_rps']:.0f} req/s ({lv['requests']} req), "
            f"server CPU {lv['server_cpu_ms_per_request']:.2f} ms/req"
        )
    print(f"end-to-end p50 / {peer} p50 = {report['ratio_e2e_p50_to_faiss_p50']}x")
    print(f"server peak RSS by process: {', '.join(f'{x:.0f}' for x in rss_each)} MB")
    print(f"server peak RSS {rss:.0f} MB (summed over {args.workers} worker(s) and the "
          f"supervisor), started in {start_s:.1f} s")  # fmt: skip
    print(f"load average {os.getloadavg()}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))

    # The target: p99 <= 20 ms while serving >= 300 requests/s (any level that sustains it).
    # An open-loop level sustains its offered rate when it answers >= 98 % of it: the measured
    # rate of N requests due over N / rate seconds ends with the last answer's latency, so
    # it reads just under the offered rate (e.g. 299.6 for 300).
    def sustains(lv: dict[str, Any]) -> bool:
        offered = lv["offered_rps"]
        if offered:
            return bool(offered >= 300 and lv["throughput_rps"] >= 0.98 * offered)
        return bool(lv["throughput_rps"] >= 300)

    met = any(lv["p99_ms"] <= 20 and sustains(lv) for lv in levels)
    ratio_met = report["ratio_e2e_p50_to_faiss_p50"] <= 2
    print(f"target p99 <= 20 ms at >= 300 req/s: {'met' if met else 'MISSED'}; "
          f"e2e p50 <= 2x raw FAISS p50: {'met' if ratio_met else 'MISSED'}")  # fmt: skip
    return 0 if met or args.no_fail else 1


if __name__ == "__main__":
    sys.exit(main())
