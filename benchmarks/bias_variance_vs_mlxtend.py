"""Benchmark: recfunnel's bootstrap bias–variance decomposition against mlxtend's, same run.

Every case runs the same estimator on the same seeded data with the same ``random_seed``
through ``mlxtend.evaluate.bias_variance_decomp`` and
``recfunnel.diagnostics.bias_variance_decomposition``, and prints both triples
(expected loss, bias, variance), the largest absolute difference and both wall times.
The target is agreement to 1e-9 on every number; timing is informative (both spend their time
fitting the same models; ours also clones the estimator once per round).

Data: regression y = sin(2·x0) + 0.5·x1 + N(0, 0.3²) on 5 uniform features (x2..x4 are
noise), classification = three ordered classes from x0 + 0.5·x1 + N(0, 0.7²); 600 rows each,
400 train / 200 test.

It also sweeps a decision tree's ``max_depth`` (the error-vs-complexity U-curve) and writes
reports/bias_variance_curve.png and reports/bias_variance_vs_mlxtend.json.

Run:  .venv/bin/python benchmarks/bias_variance_vs_mlxtend.py            (about 1 min, 2 cores)
      .venv/bin/python benchmarks/bias_variance_vs_mlxtend.py --quick    (a smoke run)
Exit status 1 when any number differs from mlxtend's by more than 1e-9.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from mlxtend import __version__ as mlxtend_version
from mlxtend.evaluate import bias_variance_decomp
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from recfunnel.diagnostics import (
    bias_variance_decomposition,
    complexity_curve,
    plot_complexity_curve,
)

TOLERANCE = 1e-9


def regression(seed: int = 0, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(n, 5))
    return X, np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + 0.3 * rng.normal(size=n)


def classification(seed: int = 1, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    return X, np.digitize(X[:, 0] + 0.5 * X[:, 1] + 0.7 * rng.normal(size=n), [-0.5, 0.6])


CASES: list[tuple[str, Any, str]] = [
    ("DecisionTreeRegressor(full)", DecisionTreeRegressor(random_state=0), "mse"),
    ("DecisionTreeRegressor(depth 4)", DecisionTreeRegressor(max_depth=4, random_state=0), "mse"),
    ("LinearRegression", LinearRegression(), "mse"),
    ("KNeighborsRegressor(k=10)", KNeighborsRegressor(n_neighbors=10), "mse"),
    ("DecisionTreeClassifier(full)", DecisionTreeClassifier(random_state=0), "0-1_loss"),
    (
        "DecisionTreeClassifier(depth 3)",
        DecisionTreeClassifier(max_depth=3, random_state=0),
        "0-1_loss",
    ),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="20 rounds, one seed")
    parser.add_argument("--output", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    rounds, seeds = (20, [0]) if args.quick else (args.rounds, args.seeds)
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn "
        f"{sklearn.__version__}, mlxtend {mlxtend_version}; {rounds} rounds, seeds {seeds}"
    )
    data = {"mse": regression(), "0-1_loss": classification()}
    records: list[dict[str, Any]] = []
    header = (
        f"{'case':33} {'seed':>4}  {'loss / bias / variance (ours)':40} "
        f"{'max |diff|':>10} {'ours s':>7} {'mlxt s':>7} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    t_ours_total = t_theirs_total = 0.0
    for name, estimator, loss in CASES:
        X, y = data[loss]
        split = (X[:400], y[:400], X[400:], y[400:])
        for seed in seeds:
            t0 = time.perf_counter()
            theirs = bias_variance_decomp(
                estimator, *split, loss=loss, num_rounds=rounds, random_seed=seed
            )
            t1 = time.perf_counter()
            ours = bias_variance_decomposition(
                estimator, *split, loss=loss, n_rounds=rounds, random_seed=seed
            )
            t2 = time.perf_counter()
            mine = (ours.expected_loss, ours.bias, ours.variance)
            diff = float(np.max(np.abs(np.subtract(mine, theirs))))
            worst = max(worst, diff)
            t_ours_total += t2 - t1
            t_theirs_total += t1 - t0
            print(
                f"{name:33} {seed:>4}  {mine[0]:.6f} / {mine[1]:.6f} / {mine[2]:.6f}   "
                f"{diff:>10.1e} {t2 - t1:>7.2f} {t1 - t0:>7.2f} {(t2 - t1) / (t1 - t0):>6.2f}"
            )
            print(f"{'  mlxtend':33} {'':>4}  {theirs[0]:.6f} / {theirs[1]:.6f} / {theirs[2]:.6f}")
            records.append(
                {
                    "case": name,
                    "loss": loss,
                    "seed": seed,
                    "ours": list(mine),
                    "mlxtend": [float(v) for v in theirs],
                    "max_abs_diff": diff,
                    "seconds_ours": t2 - t1,
                    "seconds_mlxtend": t1 - t0,
                }
            )
    print("-" * len(header))
    print(
        f"largest |ours - mlxtend| over {len(records)} runs x 3 numbers: {worst:.1e} "
        f"(target <= {TOLERANCE:.0e}); total time ours {t_ours_total:.2f} s, mlxtend "
        f"{t_theirs_total:.2f} s, ratio {t_ours_total / t_theirs_total:.2f}"
    )

    X, y = data["mse"]
    depths = [1, 2, 3, 4, 6, 8, 12, None]
    t0 = time.perf_counter()
    curve = complexity_curve(
        lambda d: DecisionTreeRegressor(max_depth=d, random_state=0),
        depths,
        X[:400],
        y[:400],
        X[400:],
        y[400:],
        parameter="max_depth",
        n_rounds=rounds,
        random_seed=0,
    )
    t_curve = time.perf_counter() - t0
    print(f"\ncomplexity sweep, DecisionTreeRegressor max_depth ({t_curve:.2f} s):")
    print(f"{'max_depth':>9} {'loss':>8} {'bias²':>8} {'variance':>8}")
    for row in curve.rows():
        print(
            f"{row['complexity']!s:>9} {row['expected_loss']:8.4f} {row['bias']:8.4f} "
            f"{row['variance']:8.4f}"
        )
    print(f"lowest expected loss at max_depth={curve.complexities[curve.best_index]}")
    args.output.mkdir(parents=True, exist_ok=True)
    plot_complexity_curve(curve, args.output / "bias_variance_curve.png")
    (args.output / "bias_variance_vs_mlxtend.json").write_text(
        json.dumps({"runs": records, "curve": curve.rows(), "rounds": rounds}, indent=2) + "\n"
    )
    print(f"wrote {args.output / 'bias_variance_curve.png'} and bias_variance_vs_mlxtend.json")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
