"""What daily peeking does to an A/B test's false-positive rate, and what the sequential methods
keep.

Simulation (seeded, vectorised over simulations): ``--sims`` experiments of ``--days`` days with
``--users-per-day`` new users per arm per day, conversion rate ``--baseline`` in both arms (A/A)
or ``--baseline + --lift`` in treatment (power). Daily conversion counts are drawn as binomials:
the counts are all any of the tests below use, so simulating single users would change nothing.
The default 1,054 users per arm per day give 14,756 per arm after 14 days, the 14,744 planned
for 10% -> 11% at alpha 0.05 and power 0.8.

Decision rules, all at two-sided alpha:

* **fixed horizon, no peeking**: one two-proportion z-test after the last day;
* **fixed horizon, peeking daily**: the same z-test every day, stop at the first p < alpha;
* **mSPRT, always valid**: the normal-mixture SPRT (Johari et al. 2017) every day, stop at the
  first always-valid p <= alpha; ``--tau`` is the sd of its mixing distribution (the MDE);
* **O'Brien–Fleming group-sequential**: the Lan–DeMets boundaries for ``--days`` equally spaced
  looks, planned in advance.

Usage::

    .venv/bin/python benchmarks/ab_peeking.py
    .venv/bin/python benchmarks/ab_peeking.py --sims 20000 --days 28

Prints a table and writes ``reports/ab_peeking.json`` and ``reports/ab_peeking.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table
from scipy import stats

from recfunnel.experiments.planning import plan_proportions
from recfunnel.experiments.sequential import msprt_proportions, obrien_fleming_bounds

FloatArray = npt.NDArray[np.float64]


def simulate(
    rng: np.random.Generator, sims: int, days: int, per_day: int, p_c: float, p_t: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cumulative conversions of control and treatment (sims x days) and users per arm."""
    conv_c = np.cumsum(rng.binomial(per_day, p_c, size=(sims, days)), axis=1).astype(np.float64)
    conv_t = np.cumsum(rng.binomial(per_day, p_t, size=(sims, days)), axis=1).astype(np.float64)
    n = per_day * np.arange(1, days + 1, dtype=np.float64)
    return conv_c, conv_t, n


def z_scores(conv_c: FloatArray, conv_t: FloatArray, n: FloatArray) -> FloatArray:
    """Two-proportion z (pooled variance under H0) at each look, as proportions_ztest."""
    pc, pt = conv_c / n, conv_t / n
    pooled = (conv_c + conv_t) / (2 * n)
    se = np.sqrt(pooled * (1 - pooled) * 2 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, (pt - pc) / se, 0.0)


def decide(
    conv_c: FloatArray,
    conv_t: FloatArray,
    n: FloatArray,
    *,
    alpha: float,
    tau: float,
    of_bounds: FloatArray,
) -> dict[str, npt.NDArray[np.bool_]]:
    """Per method, a (sims x days) array: has the rule rejected by that look?"""
    z = z_scores(conv_c, conv_t, n)
    p_fixed = 2 * stats.norm.sf(np.abs(z))
    p_seq = msprt_proportions(conv_c, n, conv_t, n, tau=tau)
    last = np.zeros_like(p_fixed, dtype=bool)
    last[:, -1] = p_fixed[:, -1] < alpha
    return {
        "fixed horizon, no peeking": last,
        "fixed horizon, peeking daily": np.logical_or.accumulate(p_fixed < alpha, axis=1),
        "mSPRT (always valid), peeking daily": p_seq <= alpha,  # p_seq never increases
        "O'Brien-Fleming (Lan-DeMets), daily": np.logical_or.accumulate(
            np.abs(z) >= of_bounds, axis=1
        ),
    }


def summarise(rejected: npt.NDArray[np.bool_]) -> dict[str, Any]:
    final = rejected[:, -1]
    first = np.argmax(rejected, axis=1) + 1  # first look at which the rule rejected
    sims = rejected.shape[0]
    rate = float(final.mean())
    return {
        "rate": rate,
        "mc_se": float(np.sqrt(rate * (1 - rate) / sims)),
        "by_look": rejected.mean(axis=0).tolist(),
        "mean_stop_day": float(first[final].mean()) if final.any() else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--users-per-day", type=int, default=1054, help="new users per arm per day")
    ap.add_argument("--baseline", type=float, default=0.10)
    ap.add_argument("--lift", type=float, default=0.01, help="absolute lift for the power runs")
    ap.add_argument("--tau", type=float, default=0.01, help="mSPRT mixing sd (default: the MDE)")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=20240501)
    ap.add_argument("--out", type=Path, default=Path("reports"))
    args = ap.parse_args()

    started = time.perf_counter()
    of_bounds = obrien_fleming_bounds(np.arange(1, args.days + 1) / args.days, args.alpha)
    rng = np.random.default_rng(args.seed)
    data_null = simulate(
        rng, args.sims, args.days, args.users_per_day, args.baseline, args.baseline
    )
    data_alt = simulate(
        rng, args.sims, args.days, args.users_per_day, args.baseline, args.baseline + args.lift
    )
    kw: dict[str, Any] = {"alpha": args.alpha, "tau": args.tau, "of_bounds": of_bounds}
    null, alt = decide(*data_null, **kw), decide(*data_alt, **kw)
    results = {m: {"false_positive": summarise(null[m]), "power": summarise(alt[m])} for m in null}
    # tau changes only the power of the mSPRT, never its validity: show how much, on the same
    # simulated experiments so that the rows differ by tau alone.
    key = "mSPRT (always valid), peeking daily"
    tau_rows = {}
    for tau in sorted({args.tau / 2, args.tau, args.tau * 2, args.tau * 4}):
        kw_tau = kw | {"tau": tau}
        tau_rows[tau] = {
            "false_positive": float(decide(*data_null, **kw_tau)[key][:, -1].mean()),
            "power": float(decide(*data_alt, **kw_tau)[key][:, -1].mean()),
        }
    seconds = time.perf_counter() - started

    plan = plan_proportions(args.baseline, args.lift, alpha=args.alpha)
    seq_fp = results["mSPRT (always valid), peeking daily"]["false_positive"]["rate"]
    target_met = seq_fp <= args.alpha
    table = Table(
        title=f"A/A and A/B simulations: {args.sims:,} each, {args.days} daily looks, "
        f"{args.users_per_day:,} users/arm/day ({args.users_per_day * args.days:,} per arm), "
        f"{args.baseline:.0%} -> {args.baseline + args.lift:.0%}, alpha {args.alpha}"
    )
    table.add_column("decision rule")
    table.add_column("false-positive rate (A/A)", justify="right")
    table.add_column("power (A/B)", justify="right")
    table.add_column("mean stop day (A/B)", justify="right")
    for m, r in results.items():
        fp, pw = r["false_positive"], r["power"]
        table.add_row(
            m,
            f"{fp['rate']:.1%} ± {fp['mc_se']:.1%}",
            f"{pw['rate']:.1%} ± {pw['mc_se']:.1%}",
            f"{pw['mean_stop_day']:.1f}" if pw["mean_stop_day"] is not None else "-",
        )
    console = Console(width=140)
    console.print(table)
    tau_table = Table(title="mSPRT: tau (mixing sd) moves power, not validity")
    for col in ("tau", "false-positive rate", "power"):
        tau_table.add_column(col, justify="right")
    for tau, r in tau_rows.items():
        tau_table.add_row(f"{tau:g}", f"{r['false_positive']:.1%}", f"{r['power']:.1%}")
    console.print(tau_table)
    console.print(
        f"plan (Cohen's h): {plan.n_per_arm:,} per arm; O'Brien-Fleming last boundary "
        f"{of_bounds[-1]:.3f}; target 'sequential false positives <= {args.alpha:.0%}': "
        f"{'met' if target_met else 'MISSED'} ({seq_fp:.1%}); {seconds:.2f} s"
    )

    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "ab_peeking",
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "planned_n_per_arm": plan.n_per_arm,
        "obrien_fleming_bounds": of_bounds.tolist(),
        "results": results,
        "tau_sensitivity": {str(k): v for k, v in tau_rows.items()},
        "sequential_target_met": bool(target_met),
        "seconds": seconds,
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
    }
    (args.out / "ab_peeking.json").write_text(json.dumps(doc, indent=1))
    _plot(results, args, args.out / "ab_peeking.png")
    console.print(f"wrote {args.out / 'ab_peeking.json'} and {args.out / 'ab_peeking.png'}")


def _plot(results: dict[str, Any], args: argparse.Namespace, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    days = np.arange(1, args.days + 1)
    for i, (key, title) in enumerate(
        (
            ("false_positive", "A/A: share rejected by day (false positives)"),
            ("power", f"A/B (+{args.lift:g}): share rejected by day (power)"),
        )
    ):
        ax = fig.add_subplot(1, 2, i + 1)
        for k, (m, r) in enumerate(results.items()):
            ax.plot(days, r[key]["by_look"], marker="o", ms=3, color=f"C{k}", label=m)
        if key == "false_positive":
            ax.axhline(args.alpha, color="red", lw=0.8, ls="--", label=f"alpha = {args.alpha}")
        ax.set_xlabel("day (look)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
