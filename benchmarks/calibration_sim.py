"""Benchmark: calibration after negative downsampling, on a simulation with known truth.

A true logistic model ``P(click | x) = σ(βᵀx + b)`` over 5 standard-normal features (β = 0.8,
−0.5, 0.3, 0, 0.6; b = −3.5, about 5% clicks). Per seed: ``--train`` training rows and
``--test`` full-population test rows are drawn; negatives of the training rows are kept with
probability w ∈ ``--rates``; a model is trained on the kept rows:

* ``logreg``: scikit-learn ``LogisticRegression`` (C = 1e6, i.e. unpenalised: the true model
  family, so the only error left is the downsampling bias and estimation noise);
* ``lightgbm``: recfunnel's ``LightGBMRanker`` (binary, 100 trees, 15 leaves, rate 0.1).

On the test rows it reports, before (``p``) and after (``q = p / (p + (1 − p) / w)``) the
correction: calibration ratio Σp / Σy, log loss, normalized entropy (background rate = the
full training set's click rate) and AUC, as mean ± sd over ``--seeds`` seeds, plus the ratio of
the true probabilities (label noise alone) and ``Σq / Σp_true`` (the corrected predictions
against the true probabilities of the same rows: no test-label noise). The ``w = 1`` rows are
the noise floor: no downsampling, nothing to correct. Target (issue 4): corrected calibration ratio
within 1 ± 0.02 at w = 0.1. Exit status 1 when it is missed (0 with --no-fail).

Run:  .venv/bin/python benchmarks/calibration_sim.py            (about 5 min on 2 busy cores)
      .venv/bin/python benchmarks/calibration_sim.py --quick
Writes reports/calibration_sim.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from recfunnel.core.ranker import RankerFeatures
from recfunnel.evaluation.calibration import (
    calibration_summary,
    correct_downsampled,
    downsample_negatives,
)
from recfunnel.ranking import make_ranker

BETA = np.array([0.8, -0.5, 0.3, 0.0, 0.6])
INTERCEPT = -3.5
METRICS = ("calibration_ratio", "log_loss", "normalized_entropy", "auc")
SHORT = {
    "calibration_ratio": "ratio",
    "log_loss": "logloss",
    "normalized_entropy": "NE",
    "auc": "AUC",
}


def draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, len(BETA))).astype(np.float32)
    p = 1 / (1 + np.exp(-(x.astype(np.float64) @ BETA + INTERCEPT)))
    return x, (rng.random(n) < p).astype(float), p


def fit_predict(model: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    if model == "logreg":
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(x, y)
        return lr.predict_proba(x_test)[:, 1]
    ranker = make_ranker("lightgbm", n_estimators=100, learning_rate=0.1, num_leaves=15)
    return ranker.fit(RankerFeatures(x), y).predict(RankerFeatures(x_test)).astype(np.float64)


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    truth: list[dict[str, float]] = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        x, y, _ = draw(args.train, rng)
        x_test, y_test, p_test = draw(args.test, rng)
        base_rate = float(y.mean())
        truth.append(calibration_summary(y_test, p_test, base_rate=base_rate))
        for w in args.rates:
            mask, _ = downsample_negatives(y, w, np.random.default_rng([seed, int(w * 1e6)]))
            for model in args.models:
                p = fit_predict(model, x[mask], y[mask], x_test)
                q = correct_downsampled(p, w)
                rows.append(
                    {
                        "seed": seed,
                        "keep_rate": w,
                        "model": model,
                        "kept_rows": int(mask.sum()),
                        "before": calibration_summary(y_test, p, base_rate=base_rate),
                        "after": calibration_summary(y_test, q, base_rate=base_rate),
                        "after_vs_true_p": float(q.sum() / p_test.sum()),
                    }
                )
                print(
                    f"  seed {seed} w={w:<5} {model:<8} ratio before "
                    f"{rows[-1]['before']['calibration_ratio']:.4f} after "
                    f"{rows[-1]['after']['calibration_ratio']:.4f} (Σq/Σp_true "
                    f"{rows[-1]['after_vs_true_p']:.4f})",
                    flush=True,
                )
    return {"rows": rows, "truth": truth}


def summarise(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    table: dict[str, Any] = {}
    print(
        f"\nmean ± sd over {args.seeds} seeds; {args.train:,} training rows, "
        f"{args.test:,} test rows"
    )
    head = " ".join(f"{SHORT[m] + ' ' + s:>17}" for s in ("before", "after") for m in METRICS)
    print(f"{'model':<8} {'w':>5} {head} {'Σq/Σp_true':>9}")
    for model in args.models:
        for w in args.rates:
            sel = [r for r in result["rows"] if r["model"] == model and r["keep_rate"] == w]
            cell = {}
            for stage in ("before", "after"):
                for m in METRICS:
                    vals = np.array([r[stage][m] for r in sel])
                    cell[f"{m}_{stage}"] = {
                        "mean": float(vals.mean()),
                        "sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                        "min": float(vals.min()),
                        "max": float(vals.max()),
                    }
            vs_true = np.array([r["after_vs_true_p"] for r in sel])
            cell["after_vs_true_p"] = {
                "mean": float(vs_true.mean()),
                "min": float(vs_true.min()),
                "max": float(vs_true.max()),
            }
            table[f"{model}@{w}"] = cell
            cells = " ".join(
                f"{cell[f'{m}_{s}']['mean']:>9.4f}±{cell[f'{m}_{s}']['sd']:<7.4f}"
                for s in ("before", "after")
                for m in METRICS
            )
            print(f"{model:<8} {w:>5} {cells} {vs_true.mean():>9.4f}")
    t = result["truth"]
    ratio = np.array([d["calibration_ratio"] for d in t])
    ne = np.array([d["normalized_entropy"] for d in t])
    sd = ratio.std(ddof=1) if len(t) > 1 else 0.0
    print(
        f"{'truth':<8} {'':>5} true p: ratio {ratio.mean():.4f}±{sd:.4f} (label noise only), "
        f"NE {ne.mean():.4f}"
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--train", type=int, default=1_000_000)
    parser.add_argument("--test", type=int, default=1_000_000)
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.5, 0.1, 0.01])
    parser.add_argument("--models", nargs="+", default=["logreg", "lightgbm"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-fail", action="store_true")
    parser.add_argument("--output", type=Path, default=Path("reports/calibration_sim.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.train, args.test = 2, 200_000, 200_000
    result = run(args)
    table = summarise(result, args)
    verdict = {}
    for model in args.models:
        sel = [r for r in result["rows"] if r["model"] == model and r["keep_rate"] == 0.1]
        worst = max((abs(r["after"]["calibration_ratio"] - 1) for r in sel), default=None)
        if worst is None:
            continue
        verdict[model] = {"worst_abs_deviation_at_w_0.1": worst, "met": worst <= 0.02}
        print(
            f"target |ratio − 1| ≤ 0.02 at w = 0.1, {model}: worst seed {worst:.4f} "
            f"({'met' if worst <= 0.02 else 'MISSED'})"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "table": table,
        "runs": result,
        "targets": verdict,
        "config": {k: v for k, v in vars(args).items() if k != "output"},
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
    args.output.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print(f"wrote {args.output}")
    missed = [m for m, v in verdict.items() if not v["met"]]
    return 1 if missed and not args.no_fail else 0


if __name__ == "__main__":
    raise SystemExit(main())
