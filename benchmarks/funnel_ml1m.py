"""The funnel on MovieLens-1M, stage by stage, against its best single retrieval model.

For each split (RO 8:1:1 seed 2020; temporal 8:1:1 by global time quantiles) one run:

* fits the funnel of ``--config`` on the train part (rankers learn on labels held out of train;
  retrieval is then refitted on the whole train part);
* evaluates each of its retrieval models (fitted on the whole train part, same parameters)
  and every stage of the funnel by full ranking on the test users, train and valid masked;
* prints NDCG@10 / Recall@10 with 95% bootstrap CIs, the ratio to the best single retrieval
  model (chosen on test: the most favourable baseline), the paired difference to it with its
  CI and p-values, and per-request latency (p50 / p99) of each stage over single-user calls.

Run: ``.venv/bin/python benchmarks/funnel_ml1m.py --cache-dir ~/.cache/recfunnel``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from recfunnel.core.matrix import InteractionMatrix
from recfunnel.data.datasets import load
from recfunnel.data.splits import make_split
from recfunnel.evaluation.bootstrap import paired_test
from recfunnel.evaluation.harness import FullRanking
from recfunnel.pipeline.funnel import STAGES, Funnel
from recfunnel.pipeline.funnel_config import load_funnel_config
from recfunnel.pipeline.funnel_eval import evaluate_funnel_stages

SPLITS = {"ro": "ro:0.8,0.1,0.1", "temporal": "temporal:0.8,0.1,0.1"}
METRICS = ("ndcg@10", "recall@10")


def _cell(values: np.ndarray, n_boot: int) -> tuple[float, float, float]:
    from recfunnel.evaluation.bootstrap import bootstrap_ci

    lo, hi = bootstrap_ci(values, n_resamples=n_boot, seed=0)
    return float(values.mean()), lo, hi


def run_split(
    m: InteractionMatrix, spec: str, cfg_path: Path, n_latency: int, n_boot: int
) -> dict[str, Any]:
    cfg = load_funnel_config(cfg_path)
    if cfg.training.labels == "holdout" and not cfg.training.refit_retrieval:
        raise SystemExit("this benchmark compares against retrieval fitted on all of train")
    parts = make_split(m, spec, seed=2020)
    fr = FullRanking(parts.test, train=parts.train, exclude=[parts.valid])
    print(f"\n== ml-1m, split {spec}: {parts.describe()}, {len(fr.users)} test users", flush=True)
    t0 = time.perf_counter()
    funnel = Funnel(cfg).fit(
        parts.train, valid=parts.valid, log=lambda s: print("  " + s, flush=True)
    )
    fit_s = time.perf_counter() - t0
    print(f"  funnel fitted in {fit_s:.0f} s: {funnel!r}", flush=True)
    rows: dict[str, Any] = {}
    for name, gen in funnel.generators_.items():
        rows[name] = fr.evaluate(gen, ks=[10], metrics=["ndcg", "recall"])
    best = max(rows, key=lambda k: rows[k].mean()["ndcg@10"])
    stages, stage_seconds = evaluate_funnel_stages(
        funnel, parts, ks=[10], metrics=["ndcg", "recall"], protocol=fr
    )
    labels = {
        "retrieval": "retrieval only (merged order)",
        "light": f"+ light {cfg.light.model if cfg.light else ''} (k2={cfg.light.keep if cfg.light else '-'})",  # noqa: E501
        "heavy": f"+ heavy {cfg.heavy.model if cfg.heavy else ''} (k3={cfg.heavy.keep if cfg.heavy else '-'})",  # noqa: E501
        "rerank": "+ rerank + fallback = funnel",
    }
    base = rows[best].per_user
    table = []
    for name, res in [(k, v) for k, v in rows.items()] + [
        (labels[k], v) for k, v in stages.items()
    ]:
        cells = {met: _cell(res.per_user[met], n_boot) for met in METRICS}
        ratio = cells["ndcg@10"][0] / float(base["ndcg@10"].mean())
        tag = " (best single)" if name == best else ""
        table.append((name + tag, cells, ratio))
    width = max(len(r[0]) for r in table) + 2
    print(f"\n{'model / stage':<{width}}{'NDCG@10 [95% CI]':>28}{'Recall@10 [95% CI]':>28}"
          f"{'NDCG ratio':>12}")  # fmt: skip
    for name, cells, ratio in table:
        print(
            f"{name:<{width}}"
            + "".join(f"{c[0]:>10.4f} [{c[1]:.4f}, {c[2]:.4f}]" for c in cells.values())
            + f"{ratio:>12.4f}"
        )
    comparisons = {}
    for stage, res in stages.items():
        cmp = paired_test(
            base["ndcg@10"], res.per_user["ndcg@10"], metric="ndcg@10", n_resamples=n_boot
        )
        comparisons[stage] = cmp.to_dict()
        lo, hi = cmp.ci95
        print(
            f"paired NDCG@10 {labels[stage]} - {best}: {cmp.difference:+.4f} "
            f"[{lo:+.4f}, {hi:+.4f}], t p={cmp.p_value_t:.2g}, "
            f"Wilcoxon p={cmp.p_value_wilcoxon:.2g}"
        )
    final = stages["rerank"].per_user["ndcg@10"].mean()
    target = 1.05 * base["ndcg@10"].mean()
    print(
        f"target: funnel NDCG@10 {final:.4f} vs 1.05 x {best} = {target:.4f}: "
        f"{'MET' if final >= target else 'NOT met'} (ratio {final / base['ndcg@10'].mean():.4f})"
    )
    print(
        "whole-pass seconds per stage (batches of 512 users): "
        + ", ".join(f"{k} {v:.1f}" for k, v in stage_seconds.items())
    )
    # Per-request latency: single-user calls, as serving would make them.
    rng = np.random.default_rng(0)
    sample = rng.choice(fr.users, size=min(n_latency, len(fr.users)), replace=False)
    ids = parts.test.users.decode(sample).tolist()
    funnel.recommend_traced(ids[:5], 10)  # warm caches
    per_stage: dict[str, list[float]] = {s: [] for s in (*STAGES, "total")}
    for uid in ids:
        t = time.perf_counter()
        trace = funnel.recommend_traced([uid], 10)
        total = time.perf_counter() - t
        for s in STAGES:
            per_stage[s].append(trace.seconds[s])
        per_stage["total"].append(total)
    print(f"\nlatency per request over {len(ids)} single-user calls (ms):")
    print(f"{'stage':<12}{'p50':>10}{'p99':>10}")
    latency = {}
    for s, v in per_stage.items():
        arr = np.asarray(v) * 1e3
        latency[s] = {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99))}
        print(f"{s:<12}{latency[s]['p50']:>10.2f}{latency[s]['p99']:>10.2f}")
    return {
        "split": spec,
        "best_single": best,
        "fit_seconds": fit_s,
        "table": [
            {"name": n, **{k: list(v) for k, v in c.items()}, "ndcg_ratio": r} for n, c, r in table
        ],
        "paired_vs_best": comparisons,
        "latency_ms": latency,
        "target_met": bool(final >= target),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache-dir", default="~/.cache/recfunnel")
    ap.add_argument("--config", type=Path, default=Path("configs/funnel.toml"))
    ap.add_argument("--splits", default="ro,temporal", help="comma-separated: ro, temporal")
    ap.add_argument("--latency-users", type=int, default=200)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    m = InteractionMatrix.from_dataset(load("ml-1m", cache_dir=args.cache_dir))
    print(f"ml-1m: {m.n_users} users, {m.n_items} items, {len(m)} interactions")
    out = [
        run_split(m, SPLITS[s.strip()], args.config, args.latency_users, args.bootstrap)
        for s in args.splits.split(",")
    ]
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
