"""Benchmark: single-request scoring latency of the rankers, ours against the raw library call.

One request = one batch of candidates for one user, scored on one thread:

* **LightGBM** (the ranker's defaults: 200 trees, 31 leaves, binary, sparse columns as LightGBM
  categories): ``--lgb-candidates`` rows (1,000) of 50 features (40 dense + 10 hashed
  categorical). Ours: ``LightGBMRanker.predict(RankerFeatures(...))`` with its compiled scorer
  (``predictor="compiled"``, the default: ``ranking/_tree_predict.py``), building the container
  from the request's arrays included. Peer: ``Booster.predict`` of the same booster on the
  request's ready-made float64 matrix (``num_threads=1``); the two agree to 1e-12 (checked
  before timing). Two lighter variants are timed too, because cost grows with trees and
  categorical splits: ``lgb-200-num`` (sparse ids as plain numbers) and ``lgb-100-num`` (100
  trees, numbers).
* **DCN-v2** (stacked, 3 full-rank cross layers, MLP 256-128, 8-d embeddings) and **Wide &
  Deep** (all-pairs crosses would be 325 ids: ``crosses`` over the first 6 columns, MLP
  256-128): ``--nn-candidates`` rows (200) of 13 dense + 26 sparse columns (Criteo's shape).
  Ours: ``predict`` (container, range folding, tensors, sigmoid, numpy). Peer: a plain torch
  forward of the same module on ready-made tensors under ``torch.inference_mode``.

Requests cycle over ``--pool`` pre-generated batches; ours and the peer alternate request by
request so machine noise hits both alike. Each is timed by wall clock and by the thread's CPU
time (``time.thread_time_ns``): on a shared machine wall-clock percentiles include time spent
waiting for a core, CPU time does not, so both are reported with the load average.

Targets (issue 4): LightGBM on 1,000 candidates ≤ 5 ms p50; DCN-v2 on 200 candidates ≤ 10 ms
p50. Exit status 1 when one is missed on wall clock *and* CPU time (0 with --no-fail).

Run:  .venv/bin/python benchmarks/ranker_latency.py             (about 3-4 min on 2 busy cores)
      .venv/bin/python benchmarks/ranker_latency.py --quick     (a smoke run)
Writes reports/ranker_latency.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import torch

from recfunnel.core.ranker import RankerFeatures
from recfunnel.ranking import make_ranker

N_DENSE_LGB, N_SPARSE_LGB = 40, 10
N_DENSE_NN, N_SPARSE_NN = 13, 26
BUCKETS = 10_000
TARGETS_MS = {"lightgbm": 5.0, "dcn": 10.0}


def synthetic(n: int, n_dense: int, n_sparse: int, seed: int) -> tuple[RankerFeatures, Any]:
    """Rows with a learnable signal in a few dense and sparse columns."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, n_dense)).astype(np.float32)
    sparse = rng.zipf(1.3, size=(n, n_sparse)) % BUCKETS
    logit = dense[:, 0] - 0.5 * dense[:, 1] + 0.8 * (sparse[:, 0] % 3 == 0) - 1.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return RankerFeatures(dense, sparse, n_buckets=(BUCKETS,) * n_sparse), y


def timed(
    ours: Callable[[int], Any], peer: Callable[[int], Any], n_requests: int, pool: int, warmup: int
) -> dict[str, dict[str, float]]:
    """p50 / p99 of wall-clock and thread CPU time per request, ours and peer interleaved."""
    for i in range(warmup):
        ours(i % pool)
        peer(i % pool)
    times: dict[str, list[list[int]]] = {"ours": [[], []], "peer": [[], []]}
    for i in range(n_requests):
        for label, fn in (("ours", ours), ("peer", peer)):
            w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            fn(i % pool)
            c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
            times[label][0].append(w1 - w0)
            times[label][1].append(c1 - c0)
    out = {}
    for label, (wall, cpu) in times.items():
        out[label] = {
            "wall_p50_ms": float(np.percentile(wall, 50)) / 1e6,
            "wall_p99_ms": float(np.percentile(wall, 99)) / 1e6,
            "cpu_p50_ms": float(np.percentile(cpu, 50)) / 1e6,
            "cpu_p99_ms": float(np.percentile(cpu, 99)) / 1e6,
        }
    return out


def bench_lightgbm(
    args: argparse.Namespace, n_estimators: int, categorical: bool
) -> dict[str, Any]:
    train, y = synthetic(args.train_rows, N_DENSE_LGB, N_SPARSE_LGB, seed=0)
    ranker = make_ranker(
        "lightgbm",
        n_estimators=n_estimators,
        num_leaves=31,
        categorical=categorical,
        n_threads=1,
        predictor="compiled",
    ).fit(train, y)
    booster: lgb.Booster = ranker.booster_  # type: ignore[attr-defined]
    requests = [
        synthetic(args.lgb_candidates, N_DENSE_LGB, N_SPARSE_LGB, seed=100 + r)[0]
        for r in range(args.pool)
    ]
    raw = [np.hstack([f.dense.astype(np.float64), f.sparse.astype(np.float64)]) for f in requests]
    parts = [(f.dense, f.sparse) for f in requests]
    check = ranker.predict(requests[0])
    np.testing.assert_allclose(check, booster.predict(raw[0], num_threads=1), rtol=1e-6)
    compiled = ranker.compiled_  # type: ignore[attr-defined]
    exact = compiled.predict(raw[0])
    np.testing.assert_allclose(exact, booster.predict(raw[0], num_threads=1), rtol=1e-12, atol=0)

    def ours(i: int) -> Any:
        dense, sparse = parts[i]
        return ranker.predict(RankerFeatures(dense, sparse))

    def peer(i: int) -> Any:
        return booster.predict(raw[i], num_threads=1)

    return {
        "candidates": args.lgb_candidates,
        "features": N_DENSE_LGB + N_SPARSE_LGB,
        "model": f"{n_estimators} trees, 31 leaves, binary; sparse columns "
        + ("as LightGBM categories" if categorical else "as numbers"),
        **timed(ours, peer, args.requests, args.pool, args.warmup),
    }


def bench_torch(name: str, params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    train, y = synthetic(args.train_rows, N_DENSE_NN, N_SPARSE_NN, seed=0)
    ranker = make_ranker(name, n_epochs=1, **params).fit(train, y)
    net = ranker.net_  # type: ignore[attr-defined]
    requests = [
        synthetic(args.nn_candidates, N_DENSE_NN, N_SPARSE_NN, seed=100 + r)[0]
        for r in range(args.pool)
    ]
    # The peer gets ready-made tensors: exactly what the network consumes.
    tensors = [ranker._tensors(f) for f in requests]  # type: ignore[attr-defined]
    parts = [(f.dense, f.sparse) for f in requests]
    with torch.inference_mode():
        ref = torch.sigmoid(net(*tensors[0])).numpy()
    np.testing.assert_allclose(ranker.predict(requests[0]), ref, rtol=1e-6)

    def ours(i: int) -> Any:
        dense, sparse = parts[i]
        return ranker.predict(RankerFeatures(dense, sparse))

    def peer(i: int) -> Any:
        with torch.inference_mode():
            return net(*tensors[i])

    n_params = sum(p.numel() for p in net.parameters())
    return {
        "candidates": args.nn_candidates,
        "features": f"{N_DENSE_NN} dense + {N_SPARSE_NN} sparse ({BUCKETS} buckets each)",
        "model": f"{params}; {n_params} parameters",
        **timed(ours, peer, args.requests, args.pool, args.warmup),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--pool", type=int, default=32)
    parser.add_argument("--train-rows", type=int, default=20_000)
    parser.add_argument("--lgb-candidates", type=int, default=1000)
    parser.add_argument("--nn-candidates", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-fail", action="store_true")
    parser.add_argument("--output", type=Path, default=Path("reports/ranker_latency.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.train_rows = 100, 10, 5000
    torch.set_num_threads(1)  # per-request scoring: one thread, as a server worker would

    results = {
        "lightgbm": bench_lightgbm(args, 200, categorical=True),  # the defaults
        "lgb-200-num": bench_lightgbm(args, 200, categorical=False),
        "lgb-100-num": bench_lightgbm(args, 100, categorical=False),
        "dcn": bench_torch(
            "dcn",
            {"structure": "stacked", "n_cross_layers": 3, "hidden_units": [256, 128]},
            args,
        ),
        "wide_deep": bench_torch(
            "wide_deep",
            {
                "crosses": [[i, j] for i in range(6) for j in range(i + 1, 6)],
                "hidden_units": [256, 128],
            },
            args,
        ),
    }
    load = os.getloadavg()
    header = (
        f"{'model':<11} {'cands':>5}  {'ours p50':>9} {'ours p99':>9} {'peer p50':>9} "
        f"{'peer p99':>9} {'ratio p50':>9}   (ms)"
    )
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    for clock in ("wall", "cpu"):
        what = "includes waiting for a core" if clock == "wall" else "thread CPU time"
        print(f"\n{clock} clock ({what})")
        print(header)
        for name, r in results.items():
            o, p = r["ours"], r["peer"]
            ratio = o[f"{clock}_p50_ms"] / p[f"{clock}_p50_ms"]
            r.setdefault("ratio_p50", {})[clock] = ratio
            print(
                f"{name:<11} {r['candidates']:>5}  {o[f'{clock}_p50_ms']:>9.3f} "
                f"{o[f'{clock}_p99_ms']:>9.3f} {p[f'{clock}_p50_ms']:>9.3f} "
                f"{p[f'{clock}_p99_ms']:>9.3f} {ratio:>9.2f}"
            )
    verdicts = {}
    print()
    for name, limit in TARGETS_MS.items():
        wall, cpu = results[name]["ours"]["wall_p50_ms"], results[name]["ours"]["cpu_p50_ms"]
        verdicts[name] = {"target_ms": limit, "met_wall": wall <= limit, "met_cpu": cpu <= limit}
        print(
            f"target {name} p50 ≤ {limit} ms: wall {wall:.3f} ms "
            f"({'met' if wall <= limit else 'MISSED'}), cpu {cpu:.3f} ms "
            f"({'met' if cpu <= limit else 'MISSED'})"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "results": results,
        "targets": verdicts,
        "requests": args.requests,
        "load_average": load,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "lightgbm": lgb.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    args.output.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print(f"wrote {args.output}")
    missed = [n for n, v in verdicts.items() if not (v["met_wall"] or v["met_cpu"])]
    return 1 if missed and not args.no_fail else 0


if __name__ == "__main__":
    raise SystemExit(main())
