"""Benchmark: recfunnel's vector indexes against FAISS called directly, same run, same index.

(a) Serving figure. A synthetic *clustered* catalogue (default 1M items × 64-d: 1,000 Gaussian
    clusters with log-normal item norms, so dot products carry a popularity-like norm effect;
    queries drawn from the same mixture) is indexed with HNSW (M 32, ef_construction 40,
    ef_search 500) and exact search; for k = 500 it reports build time, memory, recall@500
    against numpy brute force, and single-query p50/p99 latency (1 FAISS thread) of

      * ``VectorIndex.search``      (ours: validation, id decoding, exclusion machinery),
      * the ``IndexIDMap2`` object underneath (FAISS, with the label map),
      * the bare ``IndexHNSWFlat`` / ``IndexFlatIP`` (FAISS as you would call it yourself),

    timed interleaved, query by query (the order rotates), so machine noise hits all alike;
    the ratios ours / bare FAISS are the wrapper's overhead. Reference (anchors.md, random
    vectors, this kind of machine): FAISS HNSW M32 efSearch 500 p50 2.4 ms; exact 70 ms.

(b) Selection table (``recfunnel.index.selection``) for an embeddings ``.npy`` given with
    ``--embeddings`` (or a synthetic catalogue of ``--selection-n`` items): every kind, build
    time, memory, recall@k, p50/p99, and FAISS's own p50 on the same index.

Run (about 3-5 minutes on 2 cores, most of it building the 1M-item HNSW graph):

    .venv/bin/python benchmarks/index_bench.py
    .venv/bin/python benchmarks/index_bench.py --n 200000           # quicker
    .venv/bin/python benchmarks/index_bench.py --skip-serving --embeddings items.npy --k 100
    .venv/bin/python benchmarks/index_bench.py --skip-serving --selection-n 200000 --k 100

Writes JSON to ``reports/index_bench.json`` (or ``--output``). ``--cache DIR`` keeps the built
HNSW index (``VectorIndex.save``) so that a rerun only times searches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from recfunnel.core.index import normalize_rows
from recfunnel.index import load_index, make_index
from recfunnel.index.selection import benchmark_indexes, exact_topk, render_table, summarise

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = {"hnsw_p50_ms": 2.4, "exact_p50_ms": 70.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="synthetic catalogue size")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--k", type=int, default=500, help="neighbours per query")
    p.add_argument("--metric", choices=["dot", "cosine"], default="dot")
    p.add_argument("--queries", type=int, default=200, help="queries for recall")
    p.add_argument("--latency-queries", type=int, default=200, help="timed HNSW queries")
    p.add_argument("--exact-latency-queries", type=int, default=40, help="timed exact queries")
    p.add_argument("--M", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=40)
    p.add_argument("--ef-search", type=int, default=500)
    p.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--threads", type=int, default=1, help="FAISS threads for searching")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, help="directory to keep/reuse the built HNSW index")
    p.add_argument("--skip-serving", action="store_true", help="skip part (a)")
    p.add_argument("--embeddings", type=Path, help="(b): item vectors .npy for the selection")
    p.add_argument("--query-file", type=Path, help="(b): query vectors .npy")
    p.add_argument("--selection-n", type=int, default=0, help="(b) on a synthetic catalogue")
    p.add_argument("--selection-k", type=int, default=100)
    p.add_argument("--kinds", default="exact,hnsw,ivfpq,lsh")
    p.add_argument("--output", type=Path, default=ROOT / "reports" / "index_bench.json")
    return p.parse_args(argv)


def synthetic(
    n: int, dim: int, clusters: int, seed: int, *, queries: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Clustered items (``n x dim``) and queries from the same mixture; float32 throughout,
    generated in chunks (no 1M x 64 float64 temporaries)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)

    def draw(m: int, r: np.random.Generator) -> npt.NDArray[np.float32]:
        out = np.empty((m, dim), dtype=np.float32)
        for s in range(0, m, 100_000):
            e = min(m, s + 100_000)
            c = r.integers(0, clusters, e - s)
            x = centres[c] + 0.6 * r.standard_normal((e - s, dim), dtype=np.float32)
            # Norms vary (log-normal): in dot-product models they act like popularity.
            x *= np.exp(0.25 * r.standard_normal((e - s, 1), dtype=np.float32))
            out[s:e] = x
        return out

    items = draw(n, rng)
    qs = draw(queries, np.random.default_rng(seed + 1)) if queries else items[:0]
    return items, qs


def cpu_load() -> dict[str, Any]:
    out: dict[str, Any] = {"loadavg": os.getloadavg()}
    try:
        out["pressure"] = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        pass
    return out


def time_interleaved(fns: dict[str, Any], queries: npt.NDArray[np.float32], warmup: int = 5):
    """Per-query seconds of each callable, the order rotating per query."""
    names = list(fns)
    for i in range(min(warmup, len(queries))):
        for name in names:
            fns[name](queries[i : i + 1])
    times: dict[str, list[float]] = {n: [] for n in names}
    clock = time.perf_counter
    for i in range(len(queries)):
        q = queries[i : i + 1]
        rot = names[i % len(names) :] + names[: i % len(names)]
        for name in rot:
            t0 = clock()
            fns[name](q)
            times[name].append(clock() - t0)
    return {
        n: {"p50_ms": float(np.percentile(v, 50) * 1e3),
            "p99_ms": float(np.percentile(v, 99) * 1e3),
            "mean_ms": float(np.mean(v) * 1e3)}
        for n, v in times.items()
    }  # fmt: skip


def recall(found: npt.NDArray[np.object_], truth: npt.NDArray[np.int64]) -> float:
    got = np.where(found == None, -1, found).astype(np.int64)  # noqa: E711
    k = truth.shape[1]
    return float(np.mean([len(np.intersect1d(g, t)) / k for g, t in zip(got, truth, strict=True)]))


def serve_hnsw(
    args: argparse.Namespace,
    console: Console,
    items: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    prepared: npt.NDArray[np.float32],
    ids: npt.NDArray[np.str_],
    truth: npt.NDArray[np.int64],
) -> dict[str, Any]:
    params = {"M": args.M, "ef_construction": args.ef_construction, "ef_search": args.ef_search,
              "threads": args.threads, "build_threads": args.build_threads}  # fmt: skip
    key = f"hnsw-{args.n}-{args.dim}-{args.metric}-{args.M}-{args.ef_construction}-{args.seed}"
    cached = args.cache / key if args.cache else None
    build_s = None
    if cached is not None and (cached / "manifest.json").exists():
        t0 = time.perf_counter()
        hnsw = load_index(cached)
        hnsw.ef_search = args.ef_search  # type: ignore[attr-defined]
        how = f"loaded from {cached} in {time.perf_counter() - t0:.1f}s"
    else:
        hnsw = make_index("hnsw", metric=args.metric, **params)
        console.print(f"    building HNSW ({args.build_threads} threads) ...")
        t0 = time.perf_counter()
        hnsw.build(items, ids)
        build_s = time.perf_counter() - t0
        how = f"built in {build_s:.1f}s"
        if cached is not None:
            hnsw.save(cached)
    hnsw.threads = args.threads
    console.print(f"    HNSW {how}; memory {hnsw.memory_bytes(include_ids=False) / 2**20:.0f} MiB")
    idmap = hnsw.faiss_index  # type: ignore[attr-defined]
    bare = faiss.downcast_index(idmap.index)
    t0 = time.perf_counter()
    found, _ = hnsw.search(queries, args.k)
    batch_s = time.perf_counter() - t0
    lat_q = (prepared if args.metric == "cosine" else queries)[: args.latency_queries]
    faiss.omp_set_num_threads(args.threads)
    k = args.k
    timing = time_interleaved(
        {
            "ours": lambda q: hnsw.search(q, k),
            "faiss_idmap2": lambda q: idmap.search(q, k),
            "faiss_bare": lambda q: bare.search(q, k),
        },
        lat_q,
    )
    # 100 excluded ids per query (e.g. seen items): 50 it would return, 50 it would not.
    seen = [set(ids[t[:50]].tolist()) | set(ids[t[-50:]].tolist()) for t in truth]
    ex_times = []
    for i in range(len(lat_q)):
        t0 = time.perf_counter()
        hnsw.search(lat_q[i : i + 1], k, exclude=[seen[i]])
        ex_times.append(time.perf_counter() - t0)
    timing["ours_exclude_100"] = {
        "p50_ms": float(np.percentile(ex_times, 50) * 1e3),
        "p99_ms": float(np.percentile(ex_times, 99) * 1e3),
    }
    return {
        "params": hnsw.get_params(), "build_s": build_s, "recall": recall(found, truth),
        "memory_bytes": hnsw.memory_bytes(include_ids=False),
        "id_bytes": hnsw.memory_bytes() - hnsw.memory_bytes(include_ids=False),
        "batch_search_s": batch_s, "latency": timing,
    }  # fmt: skip


def serve_exact(
    args: argparse.Namespace,
    items: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    prepared: npt.NDArray[np.float32],
    ids: npt.NDArray[np.str_],
    truth: npt.NDArray[np.int64],
) -> dict[str, Any]:
    exact = make_index("exact", metric=args.metric, threads=args.threads,
                       build_threads=args.build_threads)  # fmt: skip
    t0 = time.perf_counter()
    exact.build(items, ids)
    build_s = time.perf_counter() - t0
    found, _ = exact.search(queries[:20], args.k)
    idmap = exact.faiss_index  # type: ignore[attr-defined]
    flat = faiss.downcast_index(idmap.index)
    faiss.omp_set_num_threads(args.threads)
    k = args.k
    timing = time_interleaved(
        {
            "ours": lambda q: exact.search(q, k),
            "faiss_idmap2": lambda q: idmap.search(q, k),
            "faiss_bare": lambda q: flat.search(q, k),
        },
        (prepared if args.metric == "cosine" else queries)[: args.exact_latency_queries],
        warmup=2,
    )
    return {
        "build_s": build_s, "recall": recall(found, truth[:20]),
        "memory_bytes": exact.memory_bytes(include_ids=False), "latency": timing,
    }  # fmt: skip


def serving(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    started = time.perf_counter()
    items, queries = synthetic(args.n, args.dim, args.clusters, args.seed, queries=args.queries)
    console.print(f"(a) {args.n:,} × {args.dim}-d clustered items, {len(queries)} queries, "
                  f"generated in {time.perf_counter() - started:.1f}s")  # fmt: skip
    ids = np.arange(args.n).astype(str)
    t0 = time.perf_counter()
    truth = exact_topk(items, queries, args.k, metric=args.metric)
    truth_s = time.perf_counter() - t0
    console.print(f"    numpy brute-force top-{args.k}: {truth_s:.1f}s")
    prepared = normalize_rows(queries) if args.metric == "cosine" else queries
    results = {
        "hnsw": serve_hnsw(args, console, items, queries, prepared, ids, truth),
        "exact": serve_exact(args, items, queries, prepared, ids, truth),
    }

    table = Table(title=f"(a) {args.n:,} × {args.dim}-d clustered, k={args.k}, metric "
                        f"{args.metric}, {args.threads} search thread(s)")  # fmt: skip
    for col in ("index", "build s", "memory", f"recall@{args.k}", "p50 ms", "p99 ms",
                "FAISS bare p50", "FAISS IDMap2 p50", "ours/bare p50", "anchor p50"):  # fmt: skip
        table.add_column(col, justify="left" if col == "index" else "right")
    for name, res in results.items():
        lat = res["latency"]
        table.add_row(
            f"{name}" + (f" (M{args.M}, efS {args.ef_search})" if name == "hnsw" else ""),
            "-" if res.get("build_s") is None else f"{res['build_s']:.1f}",
            f"{res['memory_bytes'] / 2**20:.0f} MiB",
            f"{res['recall']:.3f}",
            f"{lat['ours']['p50_ms']:.2f}", f"{lat['ours']['p99_ms']:.2f}",
            f"{lat['faiss_bare']['p50_ms']:.2f}", f"{lat['faiss_idmap2']['p50_ms']:.2f}",
            f"{lat['ours']['p50_ms'] / lat['faiss_bare']['p50_ms']:.3f}×",
            f"{ANCHOR[f'{name}_p50_ms']:.1f} (random data)",
        )  # fmt: skip
        res["overhead_ratio_p50"] = lat["ours"]["p50_ms"] / lat["faiss_bare"]["p50_ms"]
        res["overhead_ms_p50"] = lat["ours"]["p50_ms"] - lat["faiss_bare"]["p50_ms"]
    console.print(table)
    ex = results["hnsw"]["latency"]["ours_exclude_100"]
    console.print(f"    HNSW with 100 excluded ids per query: p50 {ex['p50_ms']:.2f} ms, "
                  f"p99 {ex['p99_ms']:.2f} ms")  # fmt: skip
    return {"truth_s": truth_s, **results}


def selection(args: argparse.Namespace, console: Console) -> dict[str, Any] | None:
    if args.embeddings is None and not args.selection_n:
        return None
    if args.embeddings is not None:
        items = np.load(args.embeddings, allow_pickle=False).astype(np.float32)
        source = str(args.embeddings)
        if args.query_file is not None:
            queries = np.load(args.query_file, allow_pickle=False).astype(np.float32)
        else:
            rng = np.random.default_rng(args.seed)
            queries = items[np.sort(rng.choice(len(items), min(200, len(items)), replace=False))]
    else:
        items, queries = synthetic(args.selection_n, args.dim, args.clusters, args.seed,
                                   queries=200)  # fmt: skip
        source = f"synthetic clustered {args.selection_n:,} × {args.dim}-d"
    console.print(f"(b) selection on {source}")
    rows = benchmark_indexes(
        items, queries, kinds=args.kinds.split(","), k=args.selection_k, metric=args.metric,
        # HNSW insertion parallelises well; k-means (IVF-PQ training) has a barrier per
        # step and collapses when another process holds a core, so it gets one thread.
        params={"hnsw": {"M": args.M, "ef_construction": args.ef_construction,
                         "ef_search": max(args.ef_search // 4, args.selection_k),
                         "build_threads": args.build_threads}},
        threads=args.threads, build_threads=1,
        log=lambda m: console.print(f"    {m}"),
    )  # fmt: skip
    console.print(render_table(rows))
    return {"source": source, **summarise(rows)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=max(150, Console().width))
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": sys.version.split()[0], "faiss": faiss.__version__,
                    "numpy": np.__version__, "cpu_load_start": cpu_load()},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }  # fmt: skip
    load = report["machine"]["cpu_load_start"]["loadavg"][0]
    if load > 0.5 * (os.cpu_count() or 1):
        console.print(f"[yellow]warning:[/] load average {load:.1f} on {os.cpu_count()} CPUs: "
                      "latencies will be noisy; compare the same-run ratios")  # fmt: skip
    if not args.skip_serving:
        report["serving"] = serving(args, console)
    report["selection"] = selection(args, console)
    report["machine"]["cpu_load_end"] = cpu_load()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    console.print(f"report: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
