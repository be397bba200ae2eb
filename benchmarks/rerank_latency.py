"""Benchmark: per-request latency of the re-ranking chain, against MMR written the obvious way.

One request = 200 candidates (ids, scores, 64-d embeddings, ``created_at`` / ``expires_at``),
a user with 40 seen items among them, 5 blocked items and about 5% expired or not-yet-live
items. Timed, one request at a time on one thread:

* **ours, chain**: building the :class:`~recfunnel.core.rerank.Slate` from the request's arrays,
  then ``RerankChain`` of seen / blocked / expired filters, ``FreshnessBoost`` and
  ``MaximalMarginalRelevance`` (cosine, ``lambda_=0.7``) selecting 10.
* **ours, MMR step**: ``MaximalMarginalRelevance.rerank`` alone on the slate the filters and
  freshness step produced (prepared outside the timer).
* **peer, obvious loop**: MMR as a user would write it with numpy: normalise, the full
  ``n x n`` cosine matrix, then for each of the 10 slots a Python loop over the remaining
  candidates computing ``lam * rel[i] - (1 - lam) * sim[i, selected].max()``.
* **peer, vectorised**: the same with the inner loop vectorised
  (``sim[:, selected].max(axis=1)`` per slot; ``O(n * k^2)``), a stronger baseline.

Peers get the same post-filter, post-freshness candidates as our MMR step, and must select the
same 10 items in the same order (checked on every request). Runs alternate request by request
so machine noise hits all alike; wall clock and thread CPU time (``time.thread_time_ns``) are
both reported, since on a shared machine wall time includes waiting for a core. BLAS is
limited to one thread (``OPENBLAS_NUM_THREADS=1`` unless set) for ours and the peers.

Run:  .venv/bin/python benchmarks/rerank_latency.py            (about 20 s)
      .venv/bin/python benchmarks/rerank_latency.py --quick    (a smoke run)
"""

from __future__ import annotations

import argparse
import os

# One request on one thread, for ours and the peers alike: multi-threaded BLAS on a busy
# machine makes the peers' n x n matrix product wait for threads that do not get a core.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from recfunnel.core.rerank import RerankContext, Slate  # noqa: E402
from recfunnel.rerank import RerankChain, make_reranker  # noqa: E402

N_CANDIDATES, DIM, K, LAMBDA = 200, 64, 10, 0.7
NOW = 1_700_000_000.0


def make_request(seed: int) -> tuple[dict[str, Any], RerankContext]:
    rng = np.random.default_rng(seed)
    ids = [f"item-{seed}-{j}" for j in range(N_CANDIDATES)]
    created = NOW - rng.exponential(3 * 86_400, N_CANDIDATES)
    created[rng.random(N_CANDIDATES) < 0.02] = NOW + 3_600  # not yet live
    expires = np.where(rng.random(N_CANDIDATES) < 0.03, NOW - 1.0, np.nan)
    arrays = {
        "ids": ids,
        "scores": np.sort(rng.uniform(0, 1, N_CANDIDATES))[::-1].copy(),
        "emb": rng.normal(size=(N_CANDIDATES, DIM)).astype(np.float32),
        "created_at": created,
        "expires_at": expires,
    }
    picks = rng.choice(N_CANDIDATES, 45, replace=False)
    ctx = RerankContext(
        now=NOW,
        request_id=f"r{seed}",
        user_id=f"u{seed}",
        seen=frozenset(ids[j] for j in picks[:40]),
        blocked=frozenset(ids[j] for j in picks[40:]),
        n=K,
    )
    return arrays, ctx


def to_slate(a: dict[str, Any]) -> Slate:
    return Slate.from_lists(
        a["ids"],
        a["scores"],
        embeddings=a["emb"],
        created_at=a["created_at"],
        expires_at=a["expires_at"],
    )


def obvious_mmr(emb: np.ndarray, scores: np.ndarray, k: int, lam: float) -> list[int]:
    """MMR the way it is usually written: full similarity matrix, Python loop per slot."""
    norm = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = norm @ norm.T
    rel = (scores - scores.min()) / (scores.max() - scores.min())
    selected = [int(np.argmax(rel))]
    remaining = [i for i in range(len(rel)) if i != selected[0]]
    while len(selected) < k and remaining:
        best, best_val = -1, -np.inf
        for i in remaining:
            val = lam * rel[i] - (1 - lam) * np.max(sim[i, selected])
            if val > best_val:
                best, best_val = i, val
        selected.append(best)
        remaining.remove(best)
    return selected


def vectorised_mmr(emb: np.ndarray, scores: np.ndarray, k: int, lam: float) -> list[int]:
    """MMR with the inner loop vectorised over candidates (max over the selected columns)."""
    norm = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = norm @ norm.T
    rel = (scores - scores.min()) / (scores.max() - scores.min())
    selected = [int(np.argmax(rel))]
    for _ in range(k - 1):
        val = lam * rel - (1 - lam) * sim[:, selected].max(axis=1)
        val[selected] = -np.inf
        selected.append(int(np.argmax(val)))
    return selected


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
    out = fn()
    c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
    return (w1 - w0) / 1e6, (c1 - c0) / 1e6, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--pool", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_req = 200 if args.quick else args.requests

    filters_fresh = RerankChain.from_spec(
        [("seen", {}), ("blocked", {}), ("expired", {}), ("freshness", {"half_life": 86_400.0})]
    )
    mmr = make_reranker("mmr", lambda_=LAMBDA, k=K)
    chain = RerankChain([*filters_fresh.steps, ("mmr", mmr)])

    pool = [make_request(s) for s in range(args.pool)]
    prepared = [filters_fresh.rerank(to_slate(a), c) for a, c in pool]

    names = ["ours_chain", "ours_mmr_step", "peer_obvious_loop", "peer_vectorised"]
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for warm in range(min(20, n_req)):  # warm-up, untimed
        a, c = pool[warm % len(pool)]
        chain.rerank(to_slate(a), c)
    for r in range(n_req):
        a, c = pool[r % len(pool)]
        s = prepared[r % len(pool)]
        emb, scores = s.embeddings, s.scores
        runs: dict[str, Callable[[], Any]] = {
            "ours_chain": lambda a=a, c=c: chain.rerank(to_slate(a), c),
            "ours_mmr_step": lambda s=s, c=c: mmr.rerank(s, c),
            "peer_obvious_loop": lambda e=emb, sc=scores: obvious_mmr(e, sc, K, LAMBDA),
            "peer_vectorised": lambda e=emb, sc=scores: vectorised_mmr(e, sc, K, LAMBDA),
        }
        results = {}
        for name in names[r % 4 :] + names[: r % 4]:  # rotate who goes first
            w, t, out = timed(runs[name])
            wall[name].append(w)
            cpu[name].append(t)
            results[name] = out
        want = s.take(results["peer_obvious_loop"]).ids()
        assert results["ours_chain"].ids() == want, f"request {r}: chain differs from peer"
        assert results["ours_mmr_step"].ids() == want
        assert s.take(results["peer_vectorised"]).ids() == want

    print(
        f"rerank latency: {n_req} requests, {N_CANDIDATES} candidates, {DIM}-d embeddings, "
        f"MMR k={K} lambda={LAMBDA}; python {platform.python_version()}, numpy {np.__version__}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'':20s} {'wall p50':>9s} {'wall p99':>9s} {'cpu p50':>9s} {'cpu p99':>9s}  (ms)")
    for name in names:
        w, t = np.asarray(wall[name]), np.asarray(cpu[name])
        print(
            f"{name:20s} {np.percentile(w, 50):9.3f} {np.percentile(w, 99):9.3f} "
            f"{np.percentile(t, 50):9.3f} {np.percentile(t, 99):9.3f}"
        )

    def ratio(peer: str, ours: str) -> str:
        w = np.median(wall[peer]) / np.median(wall[ours])
        t = np.median(cpu[peer]) / np.median(cpu[ours])
        return f"{w:.1f}x wall, {t:.1f}x cpu (p50)"

    print(f"peer_obvious_loop / ours_chain    : {ratio('peer_obvious_loop', 'ours_chain')}")
    print(f"peer_obvious_loop / ours_mmr_step : {ratio('peer_obvious_loop', 'ours_mmr_step')}")
    print(f"peer_vectorised   / ours_mmr_step : {ratio('peer_vectorised', 'ours_mmr_step')}")
    print("same 10 items in the same order as the peers on every request: yes")


if __name__ == "__main__":
    main()
