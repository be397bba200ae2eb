"""Probe feature selection (ours) next to BorutaPy on data with known informative features.

Data: ``sklearn.datasets.make_classification`` with ``shuffle=False``, ``n_redundant=0`` and
``n_repeated=0``, so the first ``n_informative`` columns are the informative ones and every other
column is pure noise (a redundant column, a linear mix of informative ones, would be neither
clearly right nor clearly wrong to select). 1,000 rows; 5 informative columns among 20, 10 among
50, 100 and 200; several seeds. Both selectors see the same arrays in the same process.

* ours: ``ProbeSelector`` defaults (LightGBM, 100 trees, rounds of 20 runs, decisions on gain
  importance; ``--permutation`` adds a row deciding on held-out permutation importance), one
  thread;
* theirs: ``BorutaPy`` with a depth-5 balanced random forest (its README setup),
  ``n_estimators="auto"``, ``max_iter=100`` (its default), one thread.

Precision and recall count the **confirmed** features only (tentative ones are reported as a
count, not selected). Target: precision >= 0.9 at recall >= 0.9.

    .venv/bin/python benchmarks/probe_selection.py            # 3 seeds x 4 widths
    .venv/bin/python benchmarks/probe_selection.py --quick    # 1 seed x 2 widths
    .venv/bin/python benchmarks/probe_selection.py --widths 200 --seeds 1
    .venv/bin/python benchmarks/probe_selection.py --permutation  # + permutation-importance row

Writes ``reports/probe_selection_<widths>_s<seeds>.json`` and ``.png``. The full run takes
BorutaPy several minutes per 100-column data set on a busy 2-core machine; ``--widths`` and
``--seeds`` run a part of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import make_classification

from recfunnel.selection import ProbeSelector

ROOT = Path(__file__).resolve().parent.parent
N_SAMPLES = 1000


def _informative(n_features: int) -> int:
    return 5 if n_features <= 20 else 10


def _scores(selected: set[int], truth: set[int]) -> tuple[float, float]:
    hit = len(selected & truth)
    precision = hit / len(selected) if selected else 1.0
    return precision, hit / len(truth)


def _ours(importance: str) -> Selector:
    def run(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[set[int], int]:
        sel = ProbeSelector(importance=importance, n_runs=20, seed=seed).fit(X, y)  # type: ignore[arg-type]
        return set(sel.get_support(indices=True).tolist()), len(sel.tentative_)

    return run


def _boruta(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[set[int], int]:
    from boruta import BorutaPy
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_jobs=1, max_depth=5, class_weight="balanced")
    sel = BorutaPy(forest, n_estimators="auto", max_iter=100, random_state=seed).fit(X, y)
    return set(np.flatnonzero(sel.support_).tolist()), int(sel.support_weak_.sum())


BORUTA = "BorutaPy (RF)"
Selector = Callable[[np.ndarray, np.ndarray, int], tuple[set[int], int]]


def run(widths: list[int], seeds: list[int], methods: dict[str, Selector]) -> list[dict[str, Any]]:
    rows = []
    for n_features in widths:
        k = _informative(n_features)
        for seed in seeds:
            X, y = make_classification(
                n_samples=N_SAMPLES,
                n_features=n_features,
                n_informative=k,
                n_redundant=0,
                n_repeated=0,
                shuffle=False,
                random_state=seed,
            )
            truth = set(range(k))
            for method, select in methods.items():
                start = time.perf_counter()
                chosen, tentative = select(X, y, seed)
                seconds = time.perf_counter() - start
                precision, recall = _scores(chosen, truth)
                rows.append(
                    {
                        "n_features": n_features,
                        "n_informative": k,
                        "seed": seed,
                        "method": method,
                        "precision": precision,
                        "recall": recall,
                        "n_confirmed": len(chosen),
                        "n_tentative": tentative,
                        "false_positives": sorted(chosen - truth),
                        "seconds": seconds,
                    }
                )
                print(
                    f"  F={n_features:3d} seed={seed} {method:18s} P={precision:.3f} "
                    f"R={recall:.3f} tentative={tentative} {seconds:6.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for n_features in sorted({r["n_features"] for r in rows}):
        boruta = [
            r["seconds"] for r in rows if r["n_features"] == n_features and r["method"] == BORUTA
        ]
        for method in methods:
            group = [r for r in rows if r["n_features"] == n_features and r["method"] == method]
            seconds = float(np.mean([r["seconds"] for r in group]))
            out.append(
                {
                    "n_features": n_features,
                    "n_informative": group[0]["n_informative"],
                    "method": method,
                    "runs": len(group),
                    "precision_mean": float(np.mean([r["precision"] for r in group])),
                    "precision_min": float(np.min([r["precision"] for r in group])),
                    "recall_mean": float(np.mean([r["recall"] for r in group])),
                    "recall_min": float(np.min([r["recall"] for r in group])),
                    "tentative_mean": float(np.mean([r["n_tentative"] for r in group])),
                    "seconds_mean": seconds,
                    "time_vs_boruta": seconds / float(np.mean(boruta)),
                }
            )
    return out


def print_table(summary: list[dict[str, Any]]) -> None:
    head = (
        f"{'F':>4} {'inf':>3} {'method':<19} {'seeds':>5} {'P mean':>7} {'P min':>6} "
        f"{'R mean':>7} {'R min':>6} {'tent':>5} {'sec':>7} {'x Boruta':>8}"
    )
    print(head)
    print("-" * len(head))
    for s in summary:
        print(
            f"{s['n_features']:>4} {s['n_informative']:>3} {s['method']:<19} {s['runs']:>5} "
            f"{s['precision_mean']:>7.3f} {s['precision_min']:>6.3f} {s['recall_mean']:>7.3f} "
            f"{s['recall_min']:>6.3f} {s['tentative_mean']:>5.1f} {s['seconds_mean']:>7.2f} "
            f"{s['time_vs_boruta']:>8.2f}"
        )


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    methods = list(dict.fromkeys(s["method"] for s in summary))
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for method in methods:
        group = [s for s in summary if s["method"] == method]
        widths = [s["n_features"] for s in group]
        for ax, key in zip(axes, ("precision_mean", "recall_mean", "seconds_mean"), strict=True):
            ax.plot(widths, [s[key] for s in group], marker="o", label=method)
    for ax, title in zip(axes, ("precision", "recall", "seconds per fit"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("features")
    axes[0].axhline(0.9, color="grey", linestyle=":")
    axes[1].axhline(0.9, color="grey", linestyle=":")
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 20 and 100 features")
    parser.add_argument(
        "--permutation", action="store_true", help="also run ours with permutation importance"
    )
    parser.add_argument("--widths", type=int, nargs="+", help="feature counts (20-200)")
    parser.add_argument("--seeds", type=int, help="number of seeds (0, 1, ...)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args(argv)
    widths, seeds = ([20, 100], [0]) if args.quick else ([20, 50, 100, 200], [0, 1, 2])
    widths = args.widths or widths
    seeds = list(range(args.seeds)) if args.seeds else seeds
    methods: dict[str, Selector] = {"ours (gain)": _ours("gain")}
    if args.permutation:
        methods["ours (permutation)"] = _ours("permutation")
    methods[BORUTA] = _boruta
    start = time.perf_counter()
    rows = run(widths, seeds, methods)
    summary = summarize(rows)
    print_table(summary)
    ours = [s for s in summary if s["method"] == "ours (gain)"]
    met = all(s["precision_min"] >= 0.9 and s["recall_min"] >= 0.9 for s in ours)
    print(f"\ntarget (ours (gain), every width and seed: precision >= 0.9, recall >= 0.9): {met}")
    print(f"widths {widths}, seeds {seeds}, {N_SAMPLES} rows, one thread each")
    print(f"total {time.perf_counter() - start:.0f}s")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "probe_selection_" + "_".join(map(str, widths)) + f"_s{len(seeds)}"
    (args.out / f"{name}.json").write_text(
        json.dumps({"rows": rows, "summary": summary, "target_met": met}, indent=2)
    )
    plot(summary, args.out / f"{name}.png")
    print(f"wrote {args.out / name}.json and .png")


if __name__ == "__main__":
    main()
