"""Benchmark: recfunnel's candidate generators against RecBole 1.2.1's models, on RecBole's
own protocol and its own exported split.

1. ``benchmarks/_recbole_models.py`` runs in RecBole's venv (benchmarks/setup_recbole_venv.sh),
   one process per model (Pop, ItemKNN, EASE, BPR, LightGCN by default), with RecBole's
   default hyper-parameters and the protocol ``eval_args: {split: {RS: [0.8, 0.1, 0.1]},
   order: RO, group_by: user, mode: full}``, every interaction positive, no filtering, seed
   2020, early stopping on valid NDCG@10 (``stopping_step`` 10). It writes test metrics,
   RecBole's per-user test values, best epoch, per-epoch history and timings. The first run
   also exports the split (train / valid / test token pairs); every run records the split's
   sha256, and the driver checks they agree.
2. recfunnel, in its own venv, one process per model (``python models_vs_recbole.py worker``):
   loads the exported split into ``IdIndex`` / ``InteractionMatrix``, fits
   ``make_generator(name).fit(train, valid=valid, user_features=..., item_features=...)`` and
   evaluates with ``FullRanking(test, train=train, exclude=[valid]).evaluate(model)``.
3. Both sides' per-user NDCG@10 / Recall@10 give percentile-bootstrap 95% intervals
   (``EvaluationResult.ci95``, users resampled) and a paired test on the same users. Times:
   training (RecBole: model constructor, where ItemKNN / EASE compute, + ``Trainer.fit``,
   i.e. training + the per-epoch validation early stopping needs; recfunnel: ``fit()``),
   measured inside each process, and the whole process (interpreter start, imports, data,
   fit, test evaluation), measured around the subprocess by this driver. Each pair of runs
   goes back to back so both see the same machine load, which is recorded too.

RecBole results are cached in ``reports/models_vs_recbole/recbole_cache.json`` (key: dataset,
model, seed, epoch cap, users per eval batch); ``--reuse-recbole`` reuses them, a plain run
re-measures both sides. Output: a table on stdout and ``reports/models_vs_recbole_<dataset>.json``.

Run:  .venv/bin/python benchmarks/models_vs_recbole.py --dataset ml-100k [--reuse-recbole]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"
DEFAULT_WORK = REPORTS / "models_vs_recbole"
DEFAULT_CACHE_DIR = Path("~/.cache/recfunnel")
DEFAULT_RF_MODELS = "pop,itemknn,ease,als,bpr,lightgcn,two_tower"
DEFAULT_RB_MODELS = "Pop,ItemKNN,EASE,BPR,LightGCN"
#: recfunnel registry name -> the RecBole model it is compared with.
RECBOLE_TWIN = {
    "pop": "Pop",
    "itemknn": "ItemKNN",
    "ease": "EASE",
    "bpr": "BPR",
    "lightgcn": "LightGCN",
    "neumf": "NeuMF",
    "multivae": "MultiVAE",
}
QUALITY_TOLERANCE = 0.03  # each shared model: recfunnel NDCG@10 >= (1 - 3%) x RecBole's
SPEEDUP_TARGET = 10.0
SPEEDUP_TARGET_MODEL = {"LightGCN": 30.0}
BUSY_PRESSURE = 10.0  # % of the last 10 s in which some runnable task waited for a CPU
CI_METRICS = ("ndcg@10", "recall@10")


# =========================================================================== worker
# `python models_vs_recbole.py worker ...`: one recfunnel model in its own process. Only the
# standard library and numpy are imported at module level, so the worker pays for nothing
# the driver needs (rich, ...).


def worker(argv: list[str]) -> None:
    t_start = time.perf_counter()
    ap = argparse.ArgumentParser(prog="models_vs_recbole.py worker")
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--cache-dir", type=Path, required=True)
    ap.add_argument("--split-dir", type=Path, required=True)
    ap.add_argument("--result", type=Path, required=True)
    ap.add_argument("--per-user", type=Path, required=True)
    ap.add_argument("--params", default="{}", help="JSON keyword arguments for the model")
    ap.add_argument("--topk", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--no-features", action="store_true")
    args = ap.parse_args(argv)

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    from recfunnel.candidates import make_generator
    from recfunnel.core.ids import IdIndex
    from recfunnel.core.matrix import InteractionMatrix
    from recfunnel.evaluation.harness import FullRanking

    t["import_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tokens = json.loads((args.split_dir / "id2token.json").read_text(encoding="utf-8"))
    user_tok = np.asarray(tokens["user"], dtype=object)  # index = RecBole internal id
    item_tok = np.asarray(tokens["item"], dtype=object)  # 0 is "[PAD]"
    users = IdIndex(sorted(user_tok[1:].tolist()), kind="user")
    items = IdIndex(sorted(item_tok[1:].tolist()), kind="item")

    def part(name: str) -> Any:
        u = np.load(args.split_dir / f"{name}_user.npy")
        i = np.load(args.split_dir / f"{name}_item.npy")
        return InteractionMatrix.from_arrays(user_tok[u], item_tok[i], users=users, items=items)

    train, valid, test = part("train"), part("valid"), part("test")
    t["split_load_s"] = time.perf_counter() - t0

    user_features = item_features = None
    t0 = time.perf_counter()
    if not args.no_features:
        from recfunnel.data.datasets import load

        ds = load(args.dataset, cache_dir=args.cache_dir)
        user_features, item_features = ds.users, ds.items
    t["features_load_s"] = time.perf_counter() - t0

    params = json.loads(args.params)
    model = make_generator(args.model, **params)
    # Kernels compiled by numba (EASE's Gram) load once per process: timed apart from fit,
    # counted in the whole-process time, as the evaluator's kernel below.
    t0 = time.perf_counter()
    if hasattr(model, "warm_up"):
        model.warm_up()
    t["fit_jit_warmup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.fit(train, valid=valid, user_features=user_features, item_features=item_features)
    t["fit_s"] = time.perf_counter() - t0

    # The evaluator's numba kernel is compiled (or loaded from numba's cache) on first use;
    # timed apart so that test_eval_s is the evaluation itself. Both count in the process time.
    t0 = time.perf_counter()
    try:
        from recfunnel.evaluation._kernels import warm_up
    except ImportError:
        warm_up = None
    if warm_up is not None:
        warm_up()
    t["eval_jit_warmup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    protocol = FullRanking(test, train=train, exclude=[valid])
    result = protocol.evaluate(model, ks=tuple(args.topk))
    t["test_eval_s"] = time.perf_counter() - t0
    t["in_process_total_s"] = time.perf_counter() - t_start

    extras: dict[str, Any] = {}
    for attr in ("best_epoch_", "n_epochs_", "epochs_run_", "history_", "best_score_"):
        value = getattr(model, attr, None)
        if value is not None:
            try:
                extras[attr.rstrip("_")] = json.loads(json.dumps(value, default=float))
            except (TypeError, ValueError):
                extras[attr.rstrip("_")] = repr(value)[:2000]
    args.per_user.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.per_user,
        user_token=np.asarray(users.ids[result.users], dtype=str),
        **result.per_user,
    )
    out = {
        "model": args.model,
        "repr": repr(model),
        "params": model.get_params(),
        "test": result.mean(),
        "coverage": result.coverage,
        "n_test_users": len(result.users),
        "timing": t,
        "features_passed": not args.no_features,
        "fit_info": extras,
        "numpy_version": np.__version__,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")


# =========================================================================== driver


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="recfunnel candidate generators vs RecBole 1.2.1 models on RecBole's split",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--dataset", default="ml-100k", help="ml-100k or ml-1m (atomic files)")
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help="folder holding <dataset>/<dataset>.inter (recfunnel datasets fetch puts it there)",
    )
    ap.add_argument("--models", default=DEFAULT_RF_MODELS, help="recfunnel registry names")
    ap.add_argument("--recbole-models", default=DEFAULT_RB_MODELS, help="RecBole model names")
    ap.add_argument(
        "--params",
        default="{}",
        help='JSON {"model": {kwargs}} for recfunnel models (default: their defaults)',
    )
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument(
        "--recbole-epochs",
        type=int,
        default=0,
        help="cap RecBole's epochs (0: RecBole's default, 300, with early stopping)",
    )
    ap.add_argument(
        "--recbole-epochs-for",
        default="",
        help="apply --recbole-epochs only to these RecBole models (comma list; empty: all)",
    )
    ap.add_argument(
        "--recbole-users-per-batch",
        type=int,
        default=256,
        help="RecBole full-sort eval batch in users (eval_batch_size = this x item_num)",
    )
    ap.add_argument("--recbole-threads", type=int, default=0, help="0: torch's default")
    ap.add_argument(
        "--recbole-venv",
        type=Path,
        default=ROOT / ".venv-recbole",
        help="venv made by benchmarks/setup_recbole_venv.sh",
    )
    ap.add_argument(
        "--reuse-recbole",
        nargs="?",
        const="*",
        default="",
        metavar="MODELS",
        help="reuse cached RecBole results where present (run only the missing ones); "
        "optionally only for these models (comma list, e.g. BPR,LightGCN)",
    )
    ap.add_argument(
        "--skip-recfunnel", action="store_true", help="RecBole side only (fills the cache)"
    )
    ap.add_argument(
        "--no-features",
        action="store_true",
        help="do not load/pass user and item feature tables to recfunnel models",
    )
    ap.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--timeout", type=float, default=7200.0, help="per-process limit, seconds")
    args = ap.parse_args(argv)
    args.cache_dir = args.cache_dir.expanduser().resolve()
    args.work_dir = args.work_dir.expanduser().resolve()
    if args.output is None:
        args.output = REPORTS / f"models_vs_recbole_{args.dataset}.json"
    return args


def cpu_load() -> dict[str, float] | None:
    """Linux CPU pressure ("some" avg10/avg60, %) and 1-min load average, if readable."""
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


def run_timed(
    cmd: list[str], env: dict[str, str], log_path: Path, timeout: float
) -> dict[str, Any]:
    """Run ``cmd`` to completion; wall seconds around the whole process, its CPU seconds."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    before_load = cpu_load()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        try:
            proc = subprocess.run(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = -9
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "returncode": rc,
        "wall_s": wall,
        "cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
        "cpu_load_before": before_load,
        "cpu_load_after": cpu_load(),
        "log": str(log_path),
    }


def tail(path: str, n: int = 25) -> str:
    try:
        return "\n".join(Path(path).read_text(encoding="utf-8").splitlines()[-n:])
    except OSError:
        return ""


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        from rich.console import Console

        self.args = args
        self.console = Console(stderr=True)
        self.tag = f"{args.dataset}_seed{args.seed}"
        self.split_dir = args.work_dir / "split" / self.tag
        self.cache_path = args.work_dir / "recbole_cache.json"
        self.rb_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
        }
        self.rb_env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        self.rf_env = dict(os.environ)
        self.split_exported_now = False
        self.capped = {m.strip() for m in args.recbole_epochs_for.split(",") if m.strip()}

    def epoch_cap(self, model: str) -> int:
        """The epoch cap for a RecBole model (0: RecBole's default)."""
        cap = int(self.args.recbole_epochs or 0)
        return cap if cap and (not self.capped or model in self.capped) else 0

    # ---------------------------------------------------------------- RecBole
    def cache_key(self, model: str) -> str:
        cap = self.epoch_cap(model)
        return (
            f"{self.args.dataset}|{model}|seed{self.args.seed}|"
            f"epochs{cap or 'default'}|upb{self.args.recbole_users_per_batch}"
        )

    def load_cache(self) -> dict[str, Any]:
        if self.cache_path.exists():
            cache: dict[str, Any] = json.loads(self.cache_path.read_text(encoding="utf-8"))
            return cache
        return {}

    def store_cache(self, key: str, entry: dict[str, Any]) -> None:
        cache = self.load_cache()
        cache[key] = entry
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(cache, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.cache_path)

    def recbole_cmd(self, model: str, extra: list[str]) -> list[str]:
        a = self.args
        cmd = [
            str(a.recbole_venv / "bin" / "python"),
            str(ROOT / "benchmarks" / "_recbole_models.py"),
            "--model",
            model,
            "--dataset",
            a.dataset,
            "--data-path",
            str(a.cache_dir),
            "--work-dir",
            str(a.work_dir / "recbole_work" / self.tag),
            "--seed",
            str(a.seed),
            "--topk",
            "10",
            "20",
            "--users-per-batch",
            str(a.recbole_users_per_batch),
            "--threads",
            str(a.recbole_threads),
        ]
        if self.epoch_cap(model):
            cmd += ["--epochs", str(self.epoch_cap(model))]
        return cmd + extra

    def export_split(self) -> None:
        """Split only, from a RecBole process (needed when every model result is reused)."""
        cmd = self.recbole_cmd("Pop", ["--export-split", str(self.split_dir), "--split-only"])
        self.console.print(f"exporting RecBole's split to {self.split_dir} ...")
        run = run_timed(
            cmd,
            self.rb_env,
            self.args.work_dir / "logs" / f"{self.tag}_split.log",
            self.args.timeout,
        )
        if run["returncode"] != 0:
            raise SystemExit(f"split export failed:\n{tail(run['log'])}")
        self.split_exported_now = True

    def run_recbole(self, model: str) -> dict[str, Any] | None:
        key = self.cache_key(model)
        reuse = self.args.reuse_recbole
        if reuse == "*" or model in {m.strip() for m in reuse.split(",")}:
            entry = self.load_cache().get(key)
            if entry and Path(entry["per_user_file"]).exists():
                self.console.print(f"RecBole {model}: reusing cached result ({key})")
                return {**entry, "from_cache": True}
        stem = f"{self.tag}_{model}" + (
            f"_ep{self.epoch_cap(model)}" if self.epoch_cap(model) else ""
        )
        res_path = self.args.work_dir / "recbole" / f"{stem}.json"
        pu_path = self.args.work_dir / "recbole" / f"{stem}_per_user.npz"
        extra = ["--result", str(res_path), "--per-user", str(pu_path)]
        if not self.split_exported_now:
            extra += ["--export-split", str(self.split_dir)]
        self.console.print(f"RecBole {model}: training ({key}) ...")
        run = run_timed(
            self.recbole_cmd(model, extra),
            self.rb_env,
            self.args.work_dir / "logs" / f"{stem}.log",
            self.args.timeout,
        )
        if run["returncode"] != 0:
            self.console.print(
                f"[red]RecBole {model} failed[/] (rc {run['returncode']}):\n{tail(run['log'])}"
            )
            return {"model": model, "error": f"exit status {run['returncode']}", "process": run}
        if "--export-split" in extra:
            self.split_exported_now = True
        entry = json.loads(res_path.read_text(encoding="utf-8"))
        entry.update(
            {
                "process": run,
                "per_user_file": str(pu_path),
                "result_file": str(res_path),
                "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
        )
        self.store_cache(key, entry)
        self.console.print(
            f"  RecBole {model}: NDCG@10 {entry['test']['ndcg@10']:.4f}, train "
            f"{entry['timing']['train_s']:.1f}s, process {run['wall_s']:.1f}s, epochs "
            f"{entry['epochs_run']} (best {entry['best_epoch']})"
        )
        return {**entry, "from_cache": False}

    # ---------------------------------------------------------------- recfunnel
    def run_recfunnel(self, model: str, params: dict[str, Any]) -> dict[str, Any]:
        stem = f"{self.tag}_{model}"
        res_path = self.args.work_dir / "recfunnel" / f"{stem}.json"
        pu_path = self.args.work_dir / "recfunnel" / f"{stem}_per_user.npz"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "worker",
            "--model",
            model,
            "--dataset",
            self.args.dataset,
            "--cache-dir",
            str(self.args.cache_dir),
            "--split-dir",
            str(self.split_dir),
            "--result",
            str(res_path),
            "--per-user",
            str(pu_path),
            "--params",
            json.dumps(params),
        ]
        if self.args.no_features:
            cmd.append("--no-features")
        self.console.print(f"recfunnel {model}: fitting ...")
        run = run_timed(
            cmd,
            self.rf_env,
            self.args.work_dir / "logs" / f"{stem}_recfunnel.log",
            self.args.timeout,
        )
        if run["returncode"] != 0:
            self.console.print(
                f"[red]recfunnel {model} failed[/] (rc {run['returncode']}):\n{tail(run['log'])}"
            )
            return {"model": model, "error": f"exit status {run['returncode']}", "process": run}
        entry: dict[str, Any] = json.loads(res_path.read_text(encoding="utf-8"))
        entry.update({"process": run, "per_user_file": str(pu_path), "result_file": str(res_path)})
        self.console.print(
            f"  recfunnel {model}: NDCG@10 {entry['test']['ndcg@10']:.4f}, fit "
            f"{entry['timing']['fit_s']:.2f}s, process {run['wall_s']:.1f}s"
        )
        return entry


# ------------------------------------------------------------------------------ statistics


def per_user(path: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    with np.load(path) as z:
        return z["user_token"].astype(str), {k: z[k] for k in z.files if k != "user_token"}


def add_statistics(row: dict[str, Any], n_resamples: int) -> None:
    """CIs for each side (recfunnel's bootstrap) and a paired test where both sides ran."""
    from recfunnel.evaluation.bootstrap import paired_test
    from recfunnel.evaluation.harness import EvaluationResult

    values: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    for side in ("recbole", "recfunnel"):
        res = row.get(side)
        if not res or "error" in res or "per_user_file" not in res:
            continue
        users, vals = per_user(res["per_user_file"])
        values[side] = (users, vals)
        er = EvaluationResult(
            users=np.arange(len(users)),
            per_user={m: vals[m] for m in CI_METRICS if m in vals},
            coverage={},
        )
        res["ci95"] = {k: list(v) for k, v in er.ci95(n_resamples=n_resamples).items()}
        res["per_user_mean"] = {k: float(v.mean()) for k, v in er.per_user.items()}
    if len(values) == 2:
        (ub, vb), (uf, vf) = values["recbole"], values["recfunnel"]
        same = sorted(ub.tolist()) == sorted(uf.tolist())
        row["same_test_users"] = same
        if same:
            pos = {u: j for j, u in enumerate(uf.tolist())}
            align = np.array([pos[u] for u in ub.tolist()], dtype=np.int64)
            row["paired"] = {
                m: paired_test(vb[m], vf[m][align], metric=m, n_resamples=2 * n_resamples).to_dict()
                for m in CI_METRICS
                if m in vb and m in vf
            }


def judge(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def ok(side: dict[str, Any] | None) -> bool:
        return side is not None and "error" not in side and "test" in side

    for row in rows.values():
        rb, rf = row.get("recbole"), row.get("recfunnel")
        if rb is None or rf is None or not (ok(rb) and ok(rf)):
            continue
        rb_model = rb["model"]
        target = SPEEDUP_TARGET_MODEL.get(rb_model, SPEEDUP_TARGET)
        q = rf["test"]["ndcg@10"] / rb["test"]["ndcg@10"] if rb["test"]["ndcg@10"] else float("nan")
        fit_x = rb["timing"]["train_s"] / max(rf["timing"]["fit_s"], 1e-9)
        wall_x = rb["process"]["wall_s"] / max(rf["process"]["wall_s"], 1e-9)
        cpu_x = rb["process"]["cpu_s"] / max(rf["process"]["cpu_s"], 1e-9)
        row["ratios"] = {
            "ndcg@10": q,
            "recall@10": rf["test"]["recall@10"] / rb["test"]["recall@10"]
            if rb["test"]["recall@10"]
            else float("nan"),
            "speedup_fit": fit_x,
            "speedup_wall": wall_x,
            "speedup_cpu": cpu_x,
        }
        row["targets"] = {
            "quality_within_3pct": bool(q >= 1.0 - QUALITY_TOLERANCE),
            "speedup_target": target,
            "speedup_fit_met": bool(fit_x >= target),
            "speedup_wall_met": bool(wall_x >= target),
        }
    best = {}
    for side in ("recbole", "recfunnel"):
        cands = [(r[side]["test"]["ndcg@10"], name) for name, r in rows.items() if ok(r.get(side))]
        best[side] = {"model": max(cands)[1], "ndcg@10": max(cands)[0]} if cands else None
    met = None
    if best["recbole"] and best["recfunnel"]:
        met = best["recfunnel"]["ndcg@10"] >= best["recbole"]["ndcg@10"]
    return {"best": best, "recfunnel_best_ge_recbole_best": met}


# ------------------------------------------------------------------------------ output


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(width=None if sys.stdout.isatty() else 200)
    rows = report["rows"]

    def fmt_ci(side: dict[str, Any] | None, metric: str) -> str:
        if not side:
            return "-"
        if "error" in side:
            return f"[red]{side['error']}[/]"
        ci = side.get("ci95", {}).get(metric)
        value = side["test"][metric]
        return f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{value:.4f}"

    def fmt_s(side: dict[str, Any] | None, key: str) -> str:
        if not side or "error" in side:
            return "-"
        timing = side["timing"]
        v = timing.get("train_s", timing["fit_s"]) if key == "train" else side["process"]["wall_s"]
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"

    def mark(value: float, good: bool) -> str:
        return f"[green]{value:.3g}x ✓[/]" if good else f"[red]{value:.3g}x ✗[/]"

    ds = report["dataset"]
    title = (
        f"{ds['name']}: {ds['n_users']} users x {ds['n_items']} items, RecBole split "
        f"RS 0.8/0.1/0.1 RO by user, seed {report['protocol']['seed']}, full ranking"
    )
    t1 = Table(title=f"NDCG@10 [95% CI] and train (fit) seconds - {title}")
    t2 = Table(
        title="Recall@10 [95% CI] and whole-process wall seconds (imports + data + fit + test)"
    )
    for t, metric, what in ((t1, "ndcg@10", "train"), (t2, "recall@10", "wall")):
        for col in (
            "model",
            f"RecBole {metric}",
            f"recfunnel {metric}",
            "ratio",
            f"RecBole {what} s",
            f"recfunnel {what} s",
            "speed-up",
        ):
            t.add_column(col, justify="left" if col == "model" else "right")
    t2.add_column("CPU-s speed-up", justify="right")  # less sensitive to other load
    for name, row in rows.items():
        rb, rf = row.get("recbole"), row.get("recfunnel")
        label = name
        if rb and "epochs_run" in rb and rb.get("epochs_run", 1) > 1:
            label += f" (RB {rb['best_epoch'] + 1}/{rb['epochs_run']} ep)"
        if rb and rb.get("epochs_cap"):
            label += f" [yellow]cap {rb['epochs_cap']} ep[/]"
        if rb and rb.get("from_cache"):
            label += " [dim]RB cached[/]"
        note = row.get("note")
        ratios, targets = row.get("ratios"), row.get("targets")
        for t, metric, what in ((t1, "ndcg@10", "train"), (t2, "recall@10", "wall")):
            if ratios:
                q = ratios[metric]
                qs = f"{q:.3f}"
                if metric == "ndcg@10":
                    good = targets["quality_within_3pct"]
                    qs = f"[green]{qs} ✓[/]" if good else f"[red]{qs} ✗[/]"
                sp = ratios["speedup_fit" if what == "train" else "speedup_wall"]
                sps = mark(sp, sp >= targets["speedup_target"])
            else:
                qs, sps = "-", "-"
            rf_cell = fmt_ci(rf, metric) if rf else f"[dim]{note or '-'}[/]"
            cells = [label, fmt_ci(rb, metric), rf_cell, qs, fmt_s(rb, what), fmt_s(rf, what), sps]
            if t is t2:
                cells.append(f"{ratios['speedup_cpu']:.3g}x" if ratios else "-")
            t.add_row(*cells)
    out.print(t1)
    out.print(t2)
    j = report["judgement"]
    b = j["best"]
    if b["recbole"] and b["recfunnel"]:
        verdict = "[green]met[/]" if j["recfunnel_best_ge_recbole_best"] else "[red]NOT met[/]"
        out.print(
            f"best NDCG@10: RecBole {b['recbole']['model']} {b['recbole']['ndcg@10']:.4f}, "
            f"recfunnel {b['recfunnel']['model']} {b['recfunnel']['ndcg@10']:.4f} "
            f"(target recfunnel best >= RecBole best: {verdict})"
        )
    out.print(
        f"targets: each shared model's NDCG@10 ratio >= {1 - QUALITY_TOLERANCE:.2f}; speed-up >= "
        f"{SPEEDUP_TARGET:g}x (LightGCN >= {SPEEDUP_TARGET_MODEL['LightGCN']:g}x), shown on fit "
        "time (table 1) and whole-process wall time (table 2). RecBole fit = model constructor "
        "(where ItemKNN / EASE compute) + Trainer.fit (training + the per-epoch validation its "
        "early stopping needs); recfunnel fit = fit() (with its own early stopping, if any)."
    )
    m = report["machine"]
    out.print(
        f"machine: {m['cpu_count']} CPUs; CPU pressure before the first run "
        f"{(m['cpu_load_start'] or {}).get('pressure_some_avg10', float('nan')):.0f}% "
        f"(avg10), max reading {m['max_pressure_avg10']:.0f}% (readings after a run include "
        "its own load)"
        + (
            " [yellow]- busy machine: timings are noisy, compare ratios of back-to-back runs[/]"
            if m["busy"]
            else ""
        )
    )
    if report["split"].get("consistent") is False:
        out.print("[red]the RecBole runs did not all see the same split (sha256 differs)[/]")


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        worker(argv[1:])
        return 0
    args = parse_args(argv)
    started = time.perf_counter()
    from recfunnel.candidates import REGISTRY

    bench = Bench(args)
    console = bench.console
    inter = args.cache_dir / args.dataset / f"{args.dataset}.inter"
    if not inter.exists():
        raise SystemExit(f"no {inter}: run `recfunnel datasets fetch {args.dataset}` first")
    if not (args.recbole_venv / "bin" / "python").exists():
        raise SystemExit(
            f"no RecBole venv at {args.recbole_venv}: run `bash benchmarks/setup_recbole_venv.sh`"
        )
    params_all = json.loads(args.params)
    rf_models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    rb_models = [m.strip() for m in args.recbole_models.split(",") if m.strip()]

    # Rows: twins first (RecBole run then recfunnel run, back to back), then the rest.
    rows: dict[str, dict[str, Any]] = {}
    for m in rf_models:
        rows[m] = {
            "recfunnel_name": m,
            "recbole_name": RECBOLE_TWIN.get(m) if RECBOLE_TWIN.get(m) in rb_models else None,
        }
    for m in rb_models:
        if not any(r["recbole_name"] == m for r in rows.values()):
            rows[m.lower()] = {"recfunnel_name": None, "recbole_name": m}

    load_start = cpu_load()
    pressures = [load_start["pressure_some_avg10"]] if load_start else []
    if load_start and load_start["pressure_some_avg10"] > BUSY_PRESSURE:
        console.print(
            f"[yellow]CPU pressure is {load_start['pressure_some_avg10']:.0f}% before "
            "starting: other work is running, timings will be noisy[/]"
        )

    order = sorted(
        rows, key=lambda n: (rows[n]["recbole_name"] is None, rows[n]["recfunnel_name"] is None)
    )
    for name in order:
        row = rows[name]
        if row["recbole_name"]:
            row["recbole"] = bench.run_recbole(row["recbole_name"])
            if (
                row["recbole"]
                and "process" in row["recbole"]
                and not row["recbole"].get("from_cache")
            ):
                p = row["recbole"]["process"]
                pressures += [
                    x["pressure_some_avg10"]
                    for x in (p["cpu_load_before"], p["cpu_load_after"])
                    if x
                ]
        rf = row["recfunnel_name"]
        if rf and not args.skip_recfunnel:
            if rf not in REGISTRY:
                row["note"] = "not registered yet"
                console.print(f"recfunnel {rf}: not in recfunnel.candidates.REGISTRY, skipped")
                continue
            if not (bench.split_dir / "split_meta.json").exists():
                bench.export_split()
            row["recfunnel"] = bench.run_recfunnel(rf, params_all.get(rf, {}))
            p = row["recfunnel"]["process"]
            pressures += [
                x["pressure_some_avg10"] for x in (p["cpu_load_before"], p["cpu_load_after"]) if x
            ]
        elif rf:
            row["note"] = "skipped (--skip-recfunnel)"
    if not (bench.split_dir / "split_meta.json").exists():
        bench.export_split()

    meta = json.loads((bench.split_dir / "split_meta.json").read_text(encoding="utf-8"))
    hashes = {
        r["recbole"]["model"]: r["recbole"].get("split_sha256")
        for r in rows.values()
        if r.get("recbole") and "error" not in r["recbole"]
    }
    consistent = all(h == meta["split_sha256"] for h in hashes.values())
    if not consistent:
        console.print(
            f"[red]split hashes differ: exported {meta['split_sha256']}, runs {hashes}[/]"
        )

    for row in rows.values():
        add_statistics(row, args.n_resamples)
        for side in ("recbole", "recfunnel"):
            res = row.get(side)
            if res and "test" in res and "per_user_mean" in res:
                diff = abs(res["per_user_mean"]["ndcg@10"] - res["test"]["ndcg@10"])
                if diff > 1e-9:
                    console.print(
                        f"[red]{side} {res['model']}: per-user mean differs from the "
                        f"reported NDCG@10 by {diff:.2e}[/]"
                    )
    judgement = judge(rows)
    n_test = {
        side: sorted(
            {
                r[side]["n_test_users"]
                for r in rows.values()
                if r.get(side) and "n_test_users" in r[side]
            }
        )
        for side in ("recbole", "recfunnel")
    }
    report: dict[str, Any] = {
        "benchmark": "candidate generation: recfunnel vs RecBole 1.2.1 on RecBole's protocol",
        "dataset": {
            "name": args.dataset,
            "inter_file": str(inter),
            "n_users": meta["n_users"],
            "n_items": meta["n_items"],
            "n_interactions": meta["n_interactions"],
            "split_counts": meta["split_counts"],
            "valid_test_overlap_pairs": meta["valid_test_overlap_pairs"],
            "n_test_users": n_test,
        },
        "protocol": {
            "eval_args": {
                "split": {"RS": [0.8, 0.1, 0.1]},
                "order": "RO",
                "group_by": "user",
                "mode": "full",
            },
            "threshold": None,
            "filtering": None,
            "seed": args.seed,
            "metrics": ["ndcg", "recall", "mrr", "hit", "precision"],
            "topk": [10, 20],
            "valid_metric": "ndcg@10",
            "stopping_step": 10,
            "masked_at_test": "train + valid items",
            "recbole_hyper_parameters": "RecBole defaults (properties/model/<Model>.yaml, "
            "overall.yaml: epochs 300, train_batch_size 2048, adam lr 0.001, uniform 1 negative)",
            "recbole_eval_batch_size": f"{args.recbole_users_per_batch} users x item_num",
            "recbole_epoch_cap": args.recbole_epochs or None,
            "recbole_epoch_cap_models": args.recbole_epochs_for
            or ("all" if args.recbole_epochs else None),
            "recfunnel_params": params_all or "defaults",
            "recfunnel_features": not args.no_features,
            "ci": f"percentile bootstrap over test users, {args.n_resamples} resamples, seed 0 "
            "(recfunnel EvaluationResult.ci95) on each side's per-user values",
            "paired": "recfunnel.evaluation.bootstrap.paired_test(recbole, recfunnel) on the same "
            "users: difference = recfunnel - RecBole",
            "times": "fit: recfunnel timing.fit_s = fit(); RecBole timing.train_s = model "
            "constructor + Trainer.fit (incl. per-epoch validation for early stopping); "
            "process wall_s / cpu_s: the whole subprocess, measured by the driver",
        },
        "split": {
            "dir": str(bench.split_dir),
            "sha256": meta["split_sha256"],
            "per_recbole_run": hashes,
            "consistent": consistent,
        },
        "rows": rows,
        "judgement": judgement,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "cpu_load_start": load_start,
            "max_pressure_avg10": max(pressures) if pressures else float("nan"),
            "pressure_readings_avg10": pressures,
            # The readings taken after a run include that run's own load (RecBole's 2 torch
            # threads fill both cores), so "busy" means: busy at the start, or in more than a
            # third of all readings.
            "busy": bool(
                (load_start is not None and load_start["pressure_some_avg10"] > BUSY_PRESSURE)
                or sum(p > BUSY_PRESSURE for p in pressures) * 3 > len(pressures)
            ),
        },
        "recbole_cache": str(bench.cache_path),
        "total_seconds": time.perf_counter() - started,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print_report(report)
    console.print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
