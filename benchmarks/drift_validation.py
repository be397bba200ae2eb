"""Validation of batch drift detection on seeded synthetic data with known answers.

For each seed, a reference frame and a current frame of ``--n`` rows each are drawn from the
same generator, and then one kind of drift is injected into the current frame:

=============  ==========================================================================
none           nothing: every flag is a false alarm
mean_shift     ``c`` shifted by ``--shift`` reference standard deviations
variance       ``d`` scaled by ``--scale`` (same mean)
new_category   ``--new-share`` of the rows of ``cat`` become a category the reference lacks
correlation    ``corr(a, b)`` goes from ``--rho`` to 0; both marginals stay N(0, 1), so no
               per-feature test can see it
=============  ==========================================================================

The frames also carry ``event_id`` (a running integer) and ``ts`` (a datetime): both must come
out as leaky columns every time, never as drift.

Measured per scenario, over the seeds:

* adversarial validation (LightGBM, 5 folds, analytic null with the cross-fitting variance
  factor 2): detection rate at ``alpha``; the same AUCs judged with the textbook Mann-Whitney
  variance (factor 1) to show why the factor is there; whether the drifted feature(s) are
  ranked first by held-out permutation importance;
* per-feature tests (KS / chi-square): "any feature significant" without correction, with
  Bonferroni and with Benjamini-Hochberg; whether the smallest p-value is the drifted feature;
* the combined verdict of ``drift_report`` (each family at ``alpha / 2``).

Targets: adversarial false-flag rate <= alpha on ``none``; the correlation-only change caught by
adversarial validation and not by per-feature tests (their rate there stays near the false-flag
rate); drifted features ranked first.

The drift-free scenario gets more seeds (``--null-seeds``, default 300) than the drift ones
(``--seeds``, default 40): a false-flag rate near 5% needs them to mean anything, and drift-free
runs are cheap (no importances). The per-feature tests alone also run on ``--tests-null-seeds``
(default 1000) drift-free pairs. Every rate comes with a Clopper-Pearson 95% interval.

Run (about 4 minutes of one core)::

    .venv/bin/python benchmarks/drift_validation.py

It prints a table and writes ``reports/drift_validation.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from scipy import stats

from recfunnel.core.ids import write_json_atomic
from recfunnel.monitoring.adversarial import AdversarialValidation, auc_null_p_value
from recfunnel.monitoring.feature_tests import adjust_p_values, feature_tests

SCENARIOS = ("none", "mean_shift", "variance", "new_category", "correlation")
TARGETS = {
    "none": (),
    "mean_shift": ("c",),
    "variance": ("d",),
    "new_category": ("cat",),
    "correlation": ("a", "b"),
}
CATEGORIES = np.array(["p", "q", "r", "s", "t"])
CATEGORY_P = np.array([0.35, 0.25, 0.2, 0.15, 0.05])


def make_frame(
    n: int, rng: np.random.Generator, *, rho: float, start: int, day: str
) -> pd.DataFrame:
    """Five features (a, b correlated N(0, 1); c, d, e independent N(0, 1); cat) + id + time."""
    z1, z2 = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame(
        {
            "event_id": np.arange(start, start + n),
            "ts": pd.date_range(day, periods=n, freq="s"),
            "a": z1,
            "b": rho * z1 + math.sqrt(1.0 - rho**2) * z2,
            "c": rng.normal(size=n),
            "d": rng.normal(size=n),
            "e": rng.normal(size=n),
            "cat": rng.choice(CATEGORIES, size=n, p=CATEGORY_P),
        }
    )


def make_pair(
    scenario: str, seed: int, args: argparse.Namespace
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = make_frame(args.n, rng, rho=args.rho, start=0, day="2024-01-01")
    rho = 0.0 if scenario == "correlation" else args.rho
    cur = make_frame(args.n, rng, rho=rho, start=args.n, day="2024-02-01")
    if scenario == "mean_shift":
        cur["c"] += args.shift
    elif scenario == "variance":
        cur["d"] *= args.scale
    elif scenario == "new_category":
        rows = rng.random(args.n) < args.new_share
        cur.loc[rows, "cat"] = "new"
    return ref, cur


def ranked_first(order: list[str], targets: tuple[str, ...]) -> bool:
    """The drifted features occupy the top ``len(targets)`` places, in any order."""
    return bool(targets) and set(order[: len(targets)]) == set(targets)


def run_one(scenario: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    ref, cur = make_pair(scenario, seed, args)
    av = AdversarialValidation(alpha=args.alpha, n_repeats=args.repeats, seed=seed).fit(ref, cur)
    n0, n1 = av.n_reference_, av.n_current_
    p_textbook = auc_null_p_value(av.auc_, n0, n1, variance_inflation=1.0)
    tests = feature_tests(ref, cur, exclude=list(av.leaky_columns_), correction="none")
    p = tests["p_value"].to_numpy(float)
    order_tests = tests["feature"].tolist()  # sorted by p-value
    order_av = av.importances_["feature"].tolist() if av.importances_ is not None else []
    targets = TARGETS[scenario]
    bh_half = adjust_p_values(p, "bh").min() < args.alpha / 2
    return {
        "scenario": scenario,
        "seed": seed,
        "auc": av.auc_,
        "p_value": av.p_value_,
        "av_drift": av.drift_,
        "av_drift_textbook_variance": p_textbook < args.alpha,
        "av_ranked_first": av.drift_ and ranked_first(order_av, targets),
        "av_drifted_features": av.drifted_features_,
        "leaky_ok": set(av.leaky_columns_) == {"event_id", "ts"},
        "tests_any_raw": bool((p < args.alpha).any()),
        "tests_any_bonferroni": bool((adjust_p_values(p, "bonferroni") < args.alpha).any()),
        "tests_any_bh": bool((adjust_p_values(p, "bh") < args.alpha).any()),
        "tests_ranked_first": ranked_first(order_tests, targets),
        # drift_report's verdict, recomputed from the same numbers (each family at alpha / 2).
        "report_drift": bool(av.p_value_ < args.alpha / 2 or bh_half),
    }


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval for a binomial rate."""
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


RATE_KEYS = (
    "av_drift", "av_drift_textbook_variance", "av_ranked_first", "tests_any_raw",
    "tests_any_bonferroni", "tests_any_bh", "tests_ranked_first", "report_drift", "leaky_ok",
)  # fmt: skip


def rate(flags: list[bool]) -> dict[str, Any]:
    k, n = sum(flags), len(flags)
    lo, hi = clopper_pearson(k, n)
    return {"count": k, "n": n, "rate": k / n, "ci95": [lo, hi]}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for scenario in SCENARIOS:
        group = [r for r in rows if r["scenario"] == scenario]
        aucs = [r["auc"] for r in group]
        out[scenario] = {
            "rates": {key: rate([bool(r[key]) for r in group]) for key in RATE_KEYS},
            "mean_auc": float(np.mean(aucs)),
            "sd_auc": float(np.std(aucs, ddof=1)),
        }
    return out


def tests_only_null(args: argparse.Namespace) -> dict[str, Any]:
    """Per-feature tests alone on many drift-free pairs: cheap, so far more seeds."""
    flags: dict[str, list[bool]] = {"raw": [], "bonferroni": [], "bh": [], "bh_half_alpha": []}
    for seed in range(10_000, 10_000 + args.tests_null_seeds):
        ref, cur = make_pair("none", seed, args)
        tests = feature_tests(ref, cur, exclude=["event_id", "ts"], correction="none")
        p = tests["p_value"].to_numpy(float)
        flags["raw"].append(bool((p < args.alpha).any()))
        flags["bonferroni"].append(bool((adjust_p_values(p, "bonferroni") < args.alpha).any()))
        flags["bh"].append(bool((adjust_p_values(p, "bh") < args.alpha).any()))
        flags["bh_half_alpha"].append(bool((adjust_p_values(p, "bh") < args.alpha / 2).any()))
    return {key: rate(v) for key, v in flags.items()}


def _ci(r: dict[str, Any]) -> str:
    return (
        f"{r['count']}/{r['n']} = {r['rate']:.3f}, 95% CI [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]"
    )


def verdicts(
    summary: dict[str, Any], tests_null: dict[str, Any], alpha: float
) -> list[dict[str, Any]]:
    none, corr = summary["none"]["rates"], summary["correlation"]["rates"]
    checks = [
        (
            f"adversarial false-flag rate <= {alpha} (no drift)",
            none["av_drift"]["rate"] <= alpha,
            _ci(none["av_drift"]),
        ),
        (
            f"drift_report false-flag rate <= {alpha} (no drift)",
            none["report_drift"]["rate"] <= alpha,
            _ci(none["report_drift"]),
        ),
        (
            f"per-feature tests, Bonferroni: family-wise false-flag rate <= {alpha}",
            tests_null["bonferroni"]["rate"] <= alpha,
            _ci(tests_null["bonferroni"]),
        ),
        (
            "correlation-only change: adversarial detects (rate >= 0.8)",
            corr["av_drift"]["rate"] >= 0.8,
            _ci(corr["av_drift"]),
        ),
        (
            "correlation-only change: per-feature tests (BH) flag no more than on drift-free data",
            corr["tests_any_bh"]["ci95"][0] <= tests_null["bh"]["rate"],
            f"{_ci(corr['tests_any_bh'])}; drift-free {tests_null['bh']['rate']:.3f}",
        ),
    ]
    for scenario in SCENARIOS[1:]:
        r = summary[scenario]["rates"]
        detected = r["av_drift"]["count"]
        share = r["av_ranked_first"]["count"] / detected if detected else math.nan
        checks.append(
            (
                f"{scenario}: adversarial ranks the drifted feature(s) first when it detects "
                "(>= 0.9)",
                bool(detected) and share >= 0.9,
                f"{r['av_ranked_first']['count']}/{detected}",
            )
        )
    checks.append(
        (
            "id and timestamp columns flagged leaky in every run",
            all(summary[s]["rates"]["leaky_ok"]["rate"] == 1.0 for s in SCENARIOS),
            "",
        )
    )
    return [{"check": c, "met": bool(m), "observed": o} for c, m, o in checks]


def render(
    summary: dict[str, Any],
    tests_null: dict[str, Any],
    checks: list[dict[str, Any]],
    args: argparse.Namespace,
) -> None:
    console = Console(width=170)
    table = Table(
        title=f"Drift detection, n={args.n} rows per side, alpha={args.alpha}: share of runs "
        "flagged ('adv. ranked 1st': flagged and the drifted feature(s) on top)"
    )
    cols = [
        ("scenario", None), ("seeds", None), ("mean AUC", None), ("adversarial", "av_drift"),
        ("adv. textbook var", "av_drift_textbook_variance"), ("adv. ranked 1st", "av_ranked_first"),
        ("tests raw", "tests_any_raw"), ("tests Bonf.", "tests_any_bonferroni"),
        ("tests BH", "tests_any_bh"), ("tests ranked 1st", "tests_ranked_first"),
        ("report", "report_drift"),
    ]  # fmt: skip
    for name, _ in cols:
        table.add_column(name, justify="left" if name == "scenario" else "right")
    for scenario in SCENARIOS:
        s = summary[scenario]
        cells = [scenario, str(s["rates"]["av_drift"]["n"]), f"{s['mean_auc']:.3f}"]
        cells += [f"{s['rates'][key]['rate']:.3f}" for _, key in cols[3:]]
        table.add_row(*cells)
    console.print(table)
    t = {key: f"{r['rate']:.3f}" for key, r in tests_null.items()}
    console.print(
        f"per-feature tests alone, {args.tests_null_seeds} drift-free seeds: any p < alpha "
        f"{t['raw']}, Bonferroni {t['bonferroni']}, BH {t['bh']}, "
        f"BH at alpha/2 {t['bh_half_alpha']}"
    )
    for c in checks:
        mark = "[green]met[/]   " if c["met"] else "[bold red]MISSED[/]"
        console.print(f"{mark}  {c['check']}: {c['observed']}", highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=40, help="seeds per drift scenario")
    parser.add_argument("--null-seeds", type=int, default=300, help="seeds without drift")
    parser.add_argument(
        "--tests-null-seeds", type=int, default=1000, help="drift-free seeds, per-feature tests"
    )
    parser.add_argument("--n", type=int, default=1000, help="rows per frame")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--shift", type=float, default=0.25, help="mean shift, in sigmas")
    parser.add_argument("--scale", type=float, default=1.3, help="std multiplier")
    parser.add_argument("--new-share", type=float, default=0.10)
    parser.add_argument("--rho", type=float, default=0.6, help="reference corr(a, b)")
    parser.add_argument("--repeats", type=int, default=3, help="permutation-importance shuffles")
    parser.add_argument("--out", type=Path, default=Path("reports/drift_validation.json"))
    args = parser.parse_args(argv)

    start = time.perf_counter()
    rows = []
    for scenario in SCENARIOS:
        seeds = args.null_seeds if scenario == "none" else args.seeds
        for seed in range(seeds):
            rows.append(run_one(scenario, seed, args))
        print(f"{scenario}: {seeds} seeds done", file=sys.stderr, flush=True)
    tests_null = tests_only_null(args)
    summary = summarise(rows)
    checks = verdicts(summary, tests_null, args.alpha)
    render(summary, tests_null, checks, args)
    payload = {
        "benchmark": "drift_validation",
        "command": "python benchmarks/drift_validation.py " + " ".join(argv or sys.argv[1:]),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "adversarial": "LightGBM (library defaults of AdversarialValidation), 5 folds, "
        "analytic null with variance factor 2",
        "python": platform.python_version(),
        "seconds": round(time.perf_counter() - start, 1),
        "summary": summary,
        "tests_only_null": tests_null,
        "checks": checks,
        "runs": rows,
    }
    write_json_atomic(args.out, json.loads(json.dumps(payload, default=float)))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
