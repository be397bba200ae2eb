"""Benchmark: recfunnel's full-ranking evaluator against RecBole 1.2.1's, on MovieLens-1M.

Both evaluators see the same split and the same score matrix, so their metric values must be
identical and only the time spent *evaluating* (masking, top-k, metrics) is compared:

1. ``benchmarks/_recbole_side.py`` runs in its own venv (``benchmarks/setup_recbole_venv.sh``):
   RecBole builds the split (``RS 0.8/0.1/0.1, RO, group_by user, mode full``, seed 2020),
   exports it, fits ItemKNN on train, saves a tie-free version of its score matrix and times
   ``Trainer.evaluate(test_data, load_best_model=False)`` with a model that returns rows of
   that matrix.
2. Here, in recfunnel's venv, the same split and scores are loaded (RecBole internal ids ->
   tokens -> recfunnel ``IdIndex`` order, which is deliberately a different order, sorted
   tokens, so the score columns really are permuted) and ``recfunnel.evaluation.harness.evaluate``
   is timed the same way.
3. It prints both figures and the speed ratio, compares every metric (means and per user)
   and writes JSON to ``reports/eval_vs_recbole.json`` (or ``--output``).

Run:  .venv/bin/python benchmarks/eval_vs_recbole.py [--data-dir ~/.cache/recfunnel/ml-1m]
Exit status 1 when any metric differs by more than ``--tol``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from recfunnel.core.ids import IdIndex
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.evaluation.harness import FullRanking

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path("~/.cache/recfunnel/ml-1m")
METRICS = ("ndcg", "recall", "mrr", "hit", "precision", "map")
TARGET_SPEEDUP = 5.0

console = Console(stderr=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="recfunnel vs RecBole 1.2.1 full-ranking evaluation on MovieLens-1M",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="directory holding RecBole-style atomic files (exactly one *.inter)",
    )
    ap.add_argument(
        "--recbole-venv",
        type=Path,
        default=ROOT / ".venv-recbole",
        help="venv made by benchmarks/setup_recbole_venv.sh",
    )
    ap.add_argument("--output", type=Path, default=ROOT / "reports" / "eval_vs_recbole.json")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--topk", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per side")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs per side first")
    ap.add_argument(
        "--recbole-users-per-batch",
        type=int,
        default=256,
        help="users per RecBole full-sort batch (eval_batch_size = this * item_num)",
    )
    ap.add_argument(
        "--recbole-threads",
        type=int,
        default=0,
        help="torch intra-op threads on the RecBole side (0: torch's default)",
    )
    ap.add_argument(
        "--recfunnel-batch-size",
        type=int,
        default=None,
        help="users per recfunnel batch (default: the harness's own choice)",
    )
    ap.add_argument(
        "--itemknn-repeats",
        type=int,
        default=1,
        help="also time RecBole's evaluation with ItemKNN's own scoring (0: skip)",
    )
    ap.add_argument("--tol", type=float, default=1e-6, help="max allowed metric difference")
    ap.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the split and scores are exchanged (default: a temp dir, removed after)",
    )
    ap.add_argument(
        "--reuse-recbole",
        action="store_true",
        help="skip the RecBole run and reuse the results already in --work-dir",
    )
    return ap.parse_args(argv)


# --------------------------------------------------------------------------- data


def resolve_data_dir(data_dir: Path) -> Path:
    """The data directory; fetches MovieLens-1M with recfunnel when the default is empty."""
    data_dir = data_dir.expanduser()
    if list(data_dir.glob("*.inter")):
        return data_dir
    if data_dir == DEFAULT_DATA_DIR.expanduser():
        from recfunnel.data.datasets import fetch

        console.print(f"fetching ml-1m into {data_dir.parent} ...")
        fetched = Path(fetch("ml-1m", cache_dir=data_dir.parent, progress=True))
        if list(fetched.glob("*.inter")):
            return fetched
    raise SystemExit(
        f"no *.inter file in {data_dir}: run `recfunnel datasets fetch ml-1m` or pass "
        "--data-dir DIR with RecBole atomic files (ml-1m.inter)"
    )


# --------------------------------------------------------------------------- RecBole side


def run_recbole(args: argparse.Namespace, data_dir: Path, work: Path) -> None:
    python = args.recbole_venv / "bin" / "python"
    if not python.exists():
        raise SystemExit(
            f"no RecBole venv at {args.recbole_venv}: run `bash benchmarks/setup_recbole_venv.sh`"
        )
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    cmd = [
        str(python),
        str(ROOT / "benchmarks" / "_recbole_side.py"),
        "--data-dir",
        str(data_dir),
        "--out-dir",
        str(work),
        "--seed",
        str(args.seed),
        "--topk",
        *map(str, args.topk),
        "--users-per-batch",
        str(args.recbole_users_per_batch),
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--itemknn-repeats",
        str(args.itemknn_repeats),
        "--threads",
        str(args.recbole_threads),
    ]
    console.rule("[bold]RecBole 1.2.1 side (own venv, subprocess)")
    proc = subprocess.run(cmd, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"RecBole side failed with exit status {proc.returncode}")


# --------------------------------------------------------------------------- recfunnel side


class Exchange:
    """The split and scores written by the RecBole side, in recfunnel terms."""

    def __init__(self, work: Path) -> None:
        tokens = json.loads((work / "id2token.json").read_text(encoding="utf-8"))
        self.user_tok = np.asarray(tokens["user"], dtype=object)  # index = RecBole internal id
        self.item_tok = np.asarray(tokens["item"], dtype=object)  # 0 is "[PAD]"
        # recfunnel's own order: sorted tokens, unlike RecBole's order of first appearance.
        self.users = IdIndex(sorted(self.user_tok[1:].tolist()), kind="user")
        self.items = IdIndex(sorted(self.item_tok[1:].tolist()), kind="item")
        self.parts = {name: self._matrix(work, name) for name in ("train", "valid", "test")}
        # RecBole internal id of each recfunnel index: rows/columns of RecBole's matrix.
        rb_user = {t: i for i, t in enumerate(self.user_tok.tolist())}
        rb_item = {t: i for i, t in enumerate(self.item_tok.tolist())}
        self.rb_row = np.array([rb_user[t] for t in self.users.ids], dtype=np.int64)
        self.rb_col = np.array([rb_item[t] for t in self.items.ids], dtype=np.int64)
        rb_scores = np.load(work / "scores.npy")
        self.scores = np.ascontiguousarray(rb_scores[np.ix_(self.rb_row, self.rb_col)])
        self.rb_scores_shape = rb_scores.shape

    def _matrix(self, work: Path, name: str) -> InteractionMatrix:
        u = np.load(work / f"{name}_user.npy")
        i = np.load(work / f"{name}_item.npy")
        return InteractionMatrix.from_arrays(
            self.user_tok[u], self.item_tok[i], users=self.users, items=self.items
        )

    def scorer(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return self.scores[users]


def run_recfunnel(args: argparse.Namespace, ex: Exchange) -> tuple[list[float], Any]:
    console.rule("[bold]recfunnel side")
    # Like RecBole's eval dataloader (built before Trainer.evaluate is timed), the protocol's
    # masks and lookups are prepared once per split; its build time is reported apart.
    t0 = time.perf_counter()
    protocol = FullRanking(ex.parts["test"], train=ex.parts["train"], exclude=[ex.parts["valid"]])
    console.print(f"FullRanking set-up (once per split): {time.perf_counter() - t0:.3f} s")
    kw: dict[str, Any] = {"ks": tuple(args.topk), "metrics": METRICS}
    if args.recfunnel_batch_size:
        kw["batch_size"] = args.recfunnel_batch_size
    for _ in range(args.warmup):
        protocol.evaluate(ex.scorer, **kw)
    times: list[float] = []
    result = None
    for _ in tqdm(range(args.repeats), desc="recfunnel evaluate", unit="run"):
        t0 = time.perf_counter()
        result = protocol.evaluate(ex.scorer, **kw)
        times.append(time.perf_counter() - t0)
    return times, result


# --------------------------------------------------------------------------- machine load

BUSY_PRESSURE = 10.0  # % of the last 10 s in which some runnable task waited for a CPU


def cpu_load() -> dict[str, float] | None:
    """Linux CPU pressure ("some" avg10/avg60, %) and 1-min load average, if readable.

    Timings on a shared 2-core machine are only comparable when nothing else runs; torch's
    2-thread kernels (RecBole side) in particular slow down many times under contention.
    """
    try:
        fields = Path("/proc/pressure/cpu").read_text().splitlines()[0].split()[1:]
        some = {k: float(v) for k, v in (f.split("=") for f in fields) if k.startswith("avg")}
        return {
            "pressure_some_avg10": some["avg10"],
            "pressure_some_avg60": some["avg60"],
            "loadavg_1min": os.getloadavg()[0],
        }
    except (OSError, KeyError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- comparison


def compare(
    ex: Exchange, work: Path, rb_means: dict[str, float], result: Any, tol: float
) -> dict[str, Any]:
    rf_means = {k: float(v) for k, v in result.mean().items()}
    per_user_rb = np.load(work / "recbole_per_user.npz")
    rb_users = ex.user_tok[per_user_rb["uid"]].tolist()
    rf_users = ex.users.ids[result.users].tolist()
    same_users = sorted(rb_users) == sorted(rf_users)
    pos_rf = {t: j for j, t in enumerate(rf_users)}
    align = np.array([pos_rf.get(t, -1) for t in rb_users], dtype=np.int64)
    rows = {}
    for name in sorted(rb_means, key=lambda n: (METRICS.index(n.split("@")[0]), n)):
        mean_diff = abs(rf_means.get(name, float("nan")) - rb_means[name])
        user_diff = float("nan")
        if same_users and name in per_user_rb and name in result.per_user:
            user_diff = float(
                np.max(np.abs(result.per_user[name][align] - per_user_rb[name]), initial=0.0)
            )
        rows[name] = {
            "recbole": rb_means[name],
            "recfunnel": rf_means.get(name, float("nan")),
            "abs_diff_mean": mean_diff,
            "max_abs_diff_per_user": user_diff,
        }
    diffs = [r["abs_diff_mean"] for r in rows.values()]
    diffs += [r["max_abs_diff_per_user"] for r in rows.values()]
    max_diff = float(max(diffs)) if diffs else float("nan")
    return {
        "same_test_users": same_users,
        "n_test_users_recbole": len(rb_users),
        "n_test_users_recfunnel": len(rf_users),
        "metrics": rows,
        "max_abs_diff": max_diff,
        "tolerance": tol,
        "identical": bool(same_users and np.isfinite(max_diff) and max_diff <= tol),
    }


def summary(times: list[float]) -> dict[str, Any]:
    return {"seconds": times, "best_s": min(times), "median_s": statistics.median(times)}


def print_report(report: dict[str, Any]) -> None:
    out = Console(width=None if sys.stdout.isatty() else 120)
    rb, rf = report["recbole"]["eval"], report["recfunnel"]["eval"]
    sp = report["speedup"]
    t = Table(title="Full-ranking evaluation time, MovieLens-1M test split")
    for col in ("evaluator", "best (s)", "median (s)", "runs"):
        t.add_column(col, justify="left" if col == "evaluator" else "right")
    t.add_row(
        f"RecBole {report['recbole']['recbole_version']} Trainer.evaluate "
        f"({report['recbole']['users_per_batch']} users/batch)",
        f"{rb['best_s']:.3f}",
        f"{rb['median_s']:.3f}",
        str(len(rb["seconds"])),
    )
    knn = report["recbole"].get("eval_itemknn")
    if knn:
        t.add_row(
            "  (RecBole incl. ItemKNN full_sort_predict scoring)",
            f"{knn['best_s']:.3f}",
            f"{knn['median_s']:.3f}",
            str(len(knn["seconds"])),
        )
    t.add_row(
        "recfunnel FullRanking.evaluate",
        f"{rf['best_s']:.3f}",
        f"{rf['median_s']:.3f}",
        str(len(rf["seconds"])),
    )
    out.print(t)
    verdict = "[green]met[/]" if sp["best"] >= TARGET_SPEEDUP else "[red]NOT met[/]"
    out.print(
        f"recfunnel speed-up over RecBole (RecBole s / recfunnel s): best {sp['best']:.2f}x, "
        f"median {sp['median']:.2f}x (target >= {TARGET_SPEEDUP:g}x: {verdict})"
    )
    m = Table(title="Metric values (mean over test users)")
    for col in ("metric", "RecBole", "recfunnel", "|diff| mean", "max |diff| per user"):
        m.add_column(col, justify="left" if col == "metric" else "right")
    for name, row in report["comparison"]["metrics"].items():
        m.add_row(
            name,
            f"{row['recbole']:.10f}",
            f"{row['recfunnel']:.10f}",
            f"{row['abs_diff_mean']:.2e}",
            f"{row['max_abs_diff_per_user']:.2e}",
        )
    out.print(m)
    if report["machine"]["busy"]:
        before = report["machine"]["cpu_load"]["before_recbole"]["pressure_some_avg10"]
        out.print(
            f"[yellow]warning: other work was using the CPUs when the benchmark started (CPU "
            f"pressure {before:.0f}% over 10 s): timings may be noisy; rerun when idle[/]"
        )
    cmp_ = report["comparison"]
    ok = "[green]identical[/]" if cmp_["identical"] else "[red]DIFFERENT[/]"
    out.print(
        f"metrics {ok}: max abs diff {cmp_['max_abs_diff']:.2e} (tolerance {cmp_['tolerance']:g}); "
        f"test users: RecBole {cmp_['n_test_users_recbole']}, "
        f"recfunnel {cmp_['n_test_users_recfunnel']}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    data_dir = resolve_data_dir(args.data_dir)
    tmp = None
    if args.work_dir is None:
        if args.reuse_recbole:
            raise SystemExit("--reuse-recbole needs --work-dir")
        tmp = tempfile.mkdtemp(prefix="eval_vs_recbole_")
        work = Path(tmp)
    else:
        work = args.work_dir.expanduser().resolve()
        work.mkdir(parents=True, exist_ok=True)
    load: dict[str, Any] = {"before_recbole": cpu_load()}
    try:
        if not args.reuse_recbole:
            run_recbole(args, data_dir, work)
        load["after_recbole"] = cpu_load()
        rb = json.loads((work / "recbole_result.json").read_text(encoding="utf-8"))
        console.print("loading the exported split and scores into recfunnel ...")
        t0 = time.perf_counter()
        ex = Exchange(work)
        load_s = time.perf_counter() - t0
        load["before_recfunnel"] = cpu_load()
        times, result = run_recfunnel(args, ex)
        load["after_recfunnel"] = cpu_load()
        comparison = compare(ex, work, rb["eval"]["metrics"], result, args.tol)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    rf_eval = summary(times)
    report: dict[str, Any] = {
        "benchmark": "full-ranking evaluation, recfunnel vs RecBole 1.2.1",
        "dataset": {
            "data_dir": str(data_dir),
            "inter_file": rb["inter_file"],
            "n_users": rb["n_users"],
            "n_items": rb["n_items"],
            "n_interactions": rb["n_interactions"],
            "split_counts": rb["split_counts"],
            "valid_test_overlap_pairs": rb["valid_test_overlap_pairs"],
        },
        "protocol": {
            "eval_args": {
                "split": {"RS": [0.8, 0.1, 0.1]},
                "order": "RO",
                "group_by": "user",
                "mode": "full",
            },
            "threshold": None,
            "seed": args.seed,
            "metrics": list(METRICS),
            "topk": list(args.topk),
            "masked_at_test": "train + valid items",
            "scores": "RecBole ItemKNN (k=100) on train, made tie-free: each user's items "
            "ranked by score with ties broken by a fixed random item order (seed), "
            "score = n_items - rank",
            "timed": "one full evaluation of all test users (masking, top-k, metrics); "
            "score lookup is a row gather from the precomputed matrix on both sides",
        },
        "recbole": {
            k: rb[k]
            for k in (
                "recbole_version",
                "torch_version",
                "torch_threads",
                "numpy_version",
                "users_per_batch",
                "eval_batch_size",
                "eval",
                "eval_itemknn",
                "itemknn_fit_seconds",
            )
        },
        "recfunnel": {
            "numpy_version": np.__version__,
            "batch_size": args.recfunnel_batch_size or "harness default",
            "load_seconds": load_s,
            "eval": rf_eval,
        },
        "speedup": {
            "best": rb["eval"]["best_s"] / rf_eval["best_s"],
            "median": rb["eval"]["median_s"] / rf_eval["median_s"],
            "target": TARGET_SPEEDUP,
            "definition": "RecBole seconds / recfunnel seconds",
        },
        "comparison": comparison,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "cpu_load": load,
            # Only the reading taken before anything ran is free of this benchmark's own load.
            "busy": bool(
                load["before_recbole"] is not None
                and load["before_recbole"]["pressure_some_avg10"] > BUSY_PRESSURE
            ),
        },
        "warmup_runs": args.warmup,
        "total_seconds": time.perf_counter() - started,
    }
    report["speedup"]["target_met"] = report["speedup"]["best"] >= TARGET_SPEEDUP
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_report(report)
    console.print(f"wrote {args.output}")
    return 0 if comparison["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
