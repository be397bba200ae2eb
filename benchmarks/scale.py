"""Benchmark: training time and peak memory of the candidate generators as the data grows.

Issue "Candidate generation", target *Scale*. On the foundation's synthetic data
(:class:`~recfunnel.data.synthetic.SyntheticGenerator`) at 1M, 10M and 50M interactions, it
measures the training time (per epoch / iteration) and the peak memory of ALS, BPR, LightGCN
and EASE, fits the log-log slope of time against interactions (1.0 = linear), and sweeps EASE
over catalogue sizes to say where its dense item x item matrix stops being practical.

Data. ``n_users = size / 50`` (mean 50 interactions per user, log-normal activity, at least
5), ``n_items`` fixed (``--items``, default 20,000), seed 0: the log grows by adding users to
a fixed catalogue, so density and activity per user stay constant and only the interaction
count moves. Each size is generated once, in its own process, and written as CSR arrays to a
temporary ``.npz``; every model then fits in a fresh subprocess that loads it.

Models (recfunnel, registry names, default hyper-parameters except the epoch counts):

* ``als``: ``--als-iterations`` (2) iterations, implicit's CG solver; time per iteration.
* ``bpr``, ``lightgcn``: ``--epochs`` (1) epochs, no validation data, so no early stopping. An
  epoch that would take more than ``--epoch-budget`` seconds (120) is cut after that long (at
  least 3 batches) and its time **extrapolated** from the mean batch time x batches per epoch;
  the table says so ("extrap k/M batches"). LightGCN propagates over the whole graph at every
  batch, so its batch cost grows with the interactions; it bounds the batches per epoch
  (``max_batches``) by growing the batch, and batches are counted at the size it used.
* ``ease``: the dense closed form on the ``--ease-items`` (10,000) most popular items of each
  log (the filter EASE's own error message recommends); its item-count sweep is separate.
* Peers measured in the same run on the same matrix: ``implicit-als`` (implicit's ALS called
  directly, same settings as ours) and ``implicit-bpr`` (implicit's CPU BPR: SGD, uniform
  negatives, one negative per pair; ours uses Adam on batches with hard negatives, so the ratio
  is the price of that choice, not of a slower implementation of the same thing).

Memory. Per model, from the child: ``baseline`` = resident set after loading the data and
building the :class:`InteractionMatrix`; ``fit peak`` = the peak resident set during ``fit``
alone (Linux: the peak is reset through ``/proc/self/clear_refs`` just before ``fit`` and read
from ``VmHWM`` after); ``extra`` = fit peak - baseline, the memory training itself needs. The
whole-process peak (``wait4`` rusage, interpreter and imports included) is kept in the JSON.

EASE sweep. On the ``--ease-base`` log (1M), EASE and ItemKNN (its sparse replacement) are
fitted on the top 2k, 5k, 10k and 15k items (``--ease-sweep``); time and memory are fitted
as power laws over the larger points and extrapolated to where EASE exceeds this machine's RAM
or an hour of fitting.

Threads. Every model gets ``--threads`` threads (default 1; BLAS, torch and implicit alike).
One thread is the default because on a shared machine a 2-thread OpenBLAS spin-waits: under
load, a 1,000-item EASE took 1-6 s on 2 threads against 0.1-0.2 s on one. Timings are
wall-clock and noisy on a shared machine (the load average before each run is recorded).

Run (2 cores: ``--quick`` 3-5 minutes, the default sizes about 40 minutes):

    .venv/bin/python benchmarks/scale.py --quick
    .venv/bin/python benchmarks/scale.py
    .venv/bin/python benchmarks/scale.py --sizes 1M,10M --models als,bpr --timeout 600

Writes ``reports/scale/scale.json`` and ``reports/scale/scale.png`` (``--quick``:
``scale_quick.*``). The JSON is rewritten after every run, so an interrupted run keeps what it
measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("als", "implicit-als", "bpr", "implicit-bpr", "lightgcn", "ease")
#: Ours -> the peer measured beside it.
PEERS = {"als": "implicit-als", "bpr": "implicit-bpr"}
USERS_PER_INTERACTION = 1 / 50
GIB = 2**30


# ---- command line ---------------------------------------------------------------------------
def parse_size(text: str) -> int:
    """``"1M"`` -> 1_000_000, ``"100k"`` -> 100_000, ``"2500000"`` -> 2_500_000."""
    text = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(text[-1:], 1)
    number = text[:-1] if scale != 1 else text
    return round(float(number) * scale)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="1M,10M,50M", help="interaction counts, comma-separated")
    p.add_argument("--quick", action="store_true", help="sizes 100k,1M and a short EASE sweep")
    p.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    p.add_argument("--items", type=int, default=20_000, help="catalogue size (fixed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="threads per model (all models)")
    p.add_argument("--als-iterations", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1, help="epochs for BPR / LightGCN")
    p.add_argument("--epoch-budget", type=float, default=120.0, help="seconds before a BPR / "
                   "LightGCN epoch is cut and extrapolated")  # fmt: skip
    p.add_argument("--ease-items", type=int, default=10_000, help="EASE's top-k items per size")
    p.add_argument("--ease-base", default="1M", help="log the EASE sweep is run on")
    p.add_argument("--ease-sweep", default="2000,5000,10000,15000", help="item counts")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per model run")
    p.add_argument("--output", type=Path, default=None, help="JSON path (PNG beside it)")
    p.add_argument("--work-dir", type=Path, default=None, help="keep the .npz data here")
    p.add_argument("--replot", action="store_true", help="redraw and print an existing JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes = "100k,1M"
        args.ease_sweep = "1000,2000,5000"
    stem = "scale_quick" if args.quick else "scale"
    args.output = args.output or ROOT / "reports" / "scale" / f"{stem}.json"
    args.sizes = sorted(parse_size(s) for s in args.sizes.split(","))
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    args.ease_base = parse_size(args.ease_base)
    args.ease_sweep = [int(s) for s in args.ease_sweep.split(",") if s.strip()]
    return args


# ---- memory of the current process (Linux /proc; public kernel interface) --------------------
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current resident set (Linux >= 4.0), so the next read of it is the
    peak of what follows rather than of the whole process life (imports, data loading)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


# ---- child: generate one log -----------------------------------------------------------------
def child_generate(spec: dict[str, Any]) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import scipy.sparse as sp

    from recfunnel.data.synthetic import SyntheticGenerator

    started = time.perf_counter()
    gen = SyntheticGenerator(
        n_users=spec["n_users"],
        n_items=spec["n_items"],
        n_interactions=spec["n_interactions"],
        seed=spec["seed"],
        progress=True,
    )
    inter = gen.generate().interactions
    seconds = time.perf_counter() - started

    def codes(column: Any) -> npt.NDArray[np.int32]:
        # User k is "u{k}" and item k is "i{k}": strip the prefix in Arrow, no Python strings.
        arr = pa.array(column)
        return pc.cast(pc.utf8_slice_codeunits(arr, 1), pa.int32()).to_numpy()

    user, item = codes(inter["user_id"]), codes(inter["item_id"])
    del inter
    shape = (spec["n_users"], spec["n_items"])
    csr = sp.csr_matrix((np.ones(len(user), np.float32), (user, item)), shape=shape)
    del user, item
    csr.sum_duplicates()
    csr.sort_indices()
    np.savez(spec["out"], indptr=csr.indptr, indices=csr.indices, shape=np.array(shape))
    return {"generate_seconds": seconds, "nnz": int(csr.nnz)}


# ---- child: fit one model --------------------------------------------------------------------
class _BudgetSpent(Exception):
    """Raised inside ``fit`` once the epoch budget is spent: the rest is extrapolated."""


def _load(path: str, top_items: int | None) -> Any:
    """The saved CSR, restricted to the ``top_items`` most popular items (renumbered)."""
    import scipy.sparse as sp

    z = np.load(path, allow_pickle=False)
    shape = tuple(int(s) for s in z["shape"])
    csr = sp.csr_matrix((np.ones(len(z["indices"]), np.float32), z["indices"], z["indptr"]), shape)
    if top_items is not None and top_items < shape[1]:
        counts = np.bincount(csr.indices, minlength=shape[1])
        keep = np.sort(np.argsort(-counts, kind="stable")[:top_items])
        csr = csr[:, keep].tocsr()
        csr.sort_indices()
    return csr


def _matrix(csr: Any) -> Any:
    from recfunnel.core.ids import IdIndex
    from recfunnel.core.matrix import InteractionMatrix

    n_users, n_items = csr.shape
    return InteractionMatrix(
        users=IdIndex((f"u{k}" for k in range(n_users)), kind="user"),
        items=IdIndex((f"i{k}" for k in range(n_items)), kind="item"),
        user=np.repeat(np.arange(n_users, dtype=np.int32), np.diff(csr.indptr)),
        item=csr.indices.astype(np.int32),
        value=np.ones(csr.nnz, np.float32),
        timestamp=np.zeros(csr.nnz),
    )


def _budgeted(cls: type, state: dict[str, Any]) -> type:
    """``cls`` whose batch step stops training once ``state["budget"]`` seconds are spent.

    The BPR-trained models expose no "max batches" knob; wrapping their per-batch ``_step``
    (the shared hook of :mod:`recfunnel.candidates._training`) times a fraction of an epoch
    without changing what a batch does."""

    def _step(self: Any, *args: Any, **kwargs: Any) -> float:
        now = time.perf_counter()
        if state["first"] is None:
            state["first"] = now
        elif state["steps"] >= state["min_steps"] and now - state["first"] > state["budget"]:
            raise _BudgetSpent
        loss: float = cls._step(self, *args, **kwargs)
        state["steps"] += 1
        state["last"] = time.perf_counter()
        return loss

    return type(cls.__name__, (cls,), {"_step": _step})


def _fit_ours(name: str, spec: dict[str, Any], csr: Any, out: dict[str, Any]) -> None:
    from recfunnel.candidates import generator_class

    threads = spec["threads"]
    matrix = _matrix(csr)
    t0 = time.perf_counter()
    matrix.to_csr()  # what fit() does first: timed apart, to leave it out of per-epoch times
    out["prepare_seconds"] = time.perf_counter() - t0
    params: dict[str, Any]
    state = {"first": None, "last": None, "steps": 0, "min_steps": 3}
    state["budget"] = spec["epoch_budget"]
    cls = generator_class(name)
    if name == "als":
        params = {"iterations": spec["als_iterations"], "num_threads": threads}
    elif name in ("bpr", "lightgcn"):
        params = {"max_epochs": spec["epochs"], "threads": threads}
        cls = _budgeted(cls, state)
    elif name == "ease":
        params = {}
    else:  # itemknn (EASE sweep)
        params = {}
    model = cls(**params)
    out["params"] = {k: v for k, v in model.get_params().items() if k != "progress"}
    out["baseline_rss_kib"] = _status_kib("VmRSS")
    out["peak_reset"] = _reset_peak_rss()
    started = time.perf_counter()
    try:
        model.fit(matrix)
        budget_spent = False
    except _BudgetSpent:
        budget_spent = True
    out["fit_seconds"] = time.perf_counter() - started
    out["fit_peak_rss_kib"] = _status_kib("VmHWM")
    if name == "als":
        out["epochs"] = spec["als_iterations"]
        out["per_epoch_seconds"] = (out["fit_seconds"] - out["prepare_seconds"]) / out["epochs"]
        out["regularization"] = model.regularization_
    elif name in ("bpr", "lightgcn"):
        # LightGCN grows its batch with the data (``max_batches``): the size training used.
        batch_size = getattr(model, "batch_size_", model.batch_size)
        out["batch_size"] = batch_size
        batches = math.ceil(csr.nnz / batch_size)
        out["batches_per_epoch"] = batches
        out["setup_seconds"] = state["first"] - started if state["first"] else None
        if budget_spent:
            per_batch = (state["last"] - state["first"]) / state["steps"]
            out["per_epoch_seconds"] = per_batch * batches
            out["extrapolated"] = {"batches_run": state["steps"], "of": batches * spec["epochs"]}
            out["epochs"] = state["steps"] / batches
        else:
            seconds = [h["seconds"] for h in model.history_]
            out["per_epoch_seconds"] = float(np.mean(np.diff([0.0, *seconds])))
            out["epochs"] = len(seconds)
    else:
        out["epochs"] = 1
        out["per_epoch_seconds"] = out["fit_seconds"]


def _fit_peer(name: str, spec: dict[str, Any], csr: Any, out: dict[str, Any]) -> None:
    from threadpoolctl import threadpool_limits

    threads = spec["threads"]
    if name == "implicit-als":
        from implicit.cpu.als import AlternatingLeastSquares

        # The settings our ALS passes: confidence 1 + alpha (alpha 2), λ "auto", CG, float32.
        active = max(int((np.diff(csr.indptr) > 0).sum()), 1)
        reg = 0.35 * csr.nnz / active
        conf = csr.copy()
        conf.data = 1.0 + 2.0 * conf.data
        engine: Any = AlternatingLeastSquares(
            factors=64, regularization=reg, alpha=1.0, dtype=np.float32, use_cg=True,
            iterations=spec["als_iterations"], num_threads=threads, random_state=0,
        )  # fmt: skip
        epochs = spec["als_iterations"]
        data = conf
    else:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        engine = BayesianPersonalizedRanking(
            factors=64, learning_rate=0.01, regularization=0.01, iterations=spec["epochs"],
            num_threads=threads, random_state=0,
        )  # fmt: skip
        epochs = spec["epochs"]
        data = csr
    out["params"] = {"factors": 64, "iterations": epochs, "num_threads": threads}
    out["baseline_rss_kib"] = _status_kib("VmRSS")
    out["peak_reset"] = _reset_peak_rss()
    started = time.perf_counter()
    with threadpool_limits(1, "blas"):
        engine.fit(data, show_progress=False)
    out["fit_seconds"] = time.perf_counter() - started
    out["fit_peak_rss_kib"] = _status_kib("VmHWM")
    out["epochs"] = epochs
    out["per_epoch_seconds"] = out["fit_seconds"] / epochs


def child_fit(spec: dict[str, Any]) -> dict[str, Any]:
    name = spec["model"]
    csr = _load(spec["data"], spec.get("top_items"))
    out: dict[str, Any] = {"n_users": csr.shape[0], "n_items": csr.shape[1], "nnz": int(csr.nnz)}
    try:
        if name.startswith("implicit-"):
            _fit_peer(name, spec, csr, out)
        else:
            _fit_ours(name, spec, csr, out)
    except MemoryError:
        out["status"] = "out of memory (MemoryError)"
        return out
    out["status"] = "ok"
    return out


def child_main(mode: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    os.environ.setdefault("TQDM_MININTERVAL", "5")
    result = child_generate(spec) if mode == "generate" else child_fit(spec)
    Path(spec["result"]).write_text(json.dumps(result))


# ---- parent: run a child, with a timeout and its own peak memory ----------------------------
def run_child(
    mode: str, spec: dict[str, Any], work: Path, tag: str, timeout: float, threads: int
) -> dict[str, Any]:
    spec = {**spec, "result": str(work / f"{tag}.result.json")}
    spec_path = work / f"{tag}.spec.json"
    spec_path.write_text(json.dumps(spec))
    log_path = work / f"{tag}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", mode, str(spec_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        timed_out = False
        while True:
            # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max of all).
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout:
                timed_out = True
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    result: dict[str, Any] = {}
    result_path = Path(spec["result"])
    if result_path.exists():
        result = json.loads(result_path.read_text())
    code = proc.returncode
    if timed_out:
        result["status"] = f"timeout (> {timeout:.0f} s)"
    elif code == -signal.SIGKILL:
        result["status"] = "killed by SIGKILL (out of memory?)"
    elif code != 0 or ("status" not in result and mode == "fit"):
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        text = " | ".join(tail)
        result["status"] = "out of memory" if "MemoryError" in text else f"error: {text[-300:]}"
    result.setdefault("status", "ok")
    result.update(wall_seconds=wall, process_peak_rss_kib=usage.ru_maxrss, load_before=load)
    return result


# ---- analysis --------------------------------------------------------------------------------
def loglog_slope(x: list[float], y: list[float]) -> float | None:
    """Least-squares slope of log y on log x (None with fewer than two points)."""
    pts = [(a, b) for a, b in zip(x, y, strict=True) if a and b and a > 0 and b > 0]
    if len(pts) < 2:
        return None
    lx, ly = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def fit_extra_gib(r: dict[str, Any]) -> float | None:
    if r.get("fit_peak_rss_kib") is None or r.get("baseline_rss_kib") is None:
        return None
    return float(max(r["fit_peak_rss_kib"] - r["baseline_rss_kib"], 0) / 2**20)


def slopes(runs: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    out = {}
    for model in sorted({r["model"] for r in runs}):
        ok = [r for r in runs if r["model"] == model and r["status"] == "ok"]
        nnz = [float(r["nnz"]) for r in ok]
        out[model] = {
            "time_per_epoch": loglog_slope(nnz, [r["per_epoch_seconds"] for r in ok]),
            "fit_peak_rss": loglog_slope(nnz, [r["fit_peak_rss_kib"] for r in ok]),
            "fit_extra_rss": loglog_slope(nnz, [fit_extra_gib(r) or 0.0 for r in ok]),
        }
    return out


def ease_practicality(sweep: list[dict[str, Any]], ram_gib: float) -> dict[str, Any]:
    """Power laws of EASE's fit time and memory in the item count, from the sweep's points of
    at least 5,000 items (below that fixed costs blur the exponent), and where they cross this
    machine's RAM and one hour."""
    ok = [r for r in sweep if r["model"] == "ease" and r["status"] == "ok"]
    big = [r for r in ok if r["n_items"] >= 5_000] or ok
    if len(big) < 2:
        return {}
    n = np.array([r["n_items"] for r in big], float)
    t = np.array([r["fit_seconds"] for r in big])
    m = np.array([fit_extra_gib(r) or 1e-9 for r in big])
    bt, at = np.polyfit(np.log(n), np.log(t), 1)
    bm, _ = np.polyfit(np.log(n), np.log(m), 1)
    # Memory is dominated by dense n x n float64 arrays: fit its constant on n² itself (the
    # fitted exponent is < 2 when small catalogues carry fixed costs).
    largest = int(np.argmax(n))
    per_cell = float(m[largest] * GIB / n[largest] ** 2)
    ram_items = math.sqrt(ram_gib * GIB / per_cell)
    hour_items = float(np.exp((math.log(3600) - at) / bt))
    table = []
    for items in (20_000, 50_000, 100_000, 200_000, 500_000):
        table.append(
            {
                "n_items": items,
                "fit_seconds": float(np.exp(at) * items**bt),
                "fit_extra_gib": per_cell * items**2 / GIB,
                "dense_float64_gib": items**2 * 8 / GIB,
            }
        )
    return {
        "time_exponent": float(bt),
        "memory_exponent": float(bm),
        "bytes_per_item_pair": per_cell,
        "items_at_ram": ram_items,
        "items_at_one_hour": hour_items,
        "ram_gib": ram_gib,
        "extrapolated": table,
    }


# ---- output ----------------------------------------------------------------------------------
def _gib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 2**20:.2f}"


def _fmt_size(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def print_tables(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    t = Table(title="Training time and peak memory vs interactions (wall clock, shared machine)")
    for col in ("size", "model", "users", "items", "nnz", "s/epoch", "how", "fit s"):
        t.add_column(col, justify="right")
    for col in ("base GiB", "fit peak GiB", "extra GiB", "status"):
        t.add_column(col, justify="right")
    for r in report["runs"]:
        how = "-"
        if r.get("extrapolated"):
            how = f"extrap {r['extrapolated']['batches_run']}/{r['extrapolated']['of']} batches"
        elif r.get("per_epoch_seconds") is not None:
            how = f"{r.get('epochs', '')} ep measured"
        pe = r.get("per_epoch_seconds")
        extra = fit_extra_gib(r)
        t.add_row(
            _fmt_size(r["size"]),
            r["model"],
            f"{r.get('n_users', '-'):,}" if "n_users" in r else "-",
            f"{r.get('n_items', '-'):,}" if "n_items" in r else "-",
            f"{r.get('nnz', 0):,}",
            "-" if pe is None else f"{pe:.2f}",
            how,
            "-" if r.get("fit_seconds") is None else f"{r['fit_seconds']:.1f}",
            _gib(r.get("baseline_rss_kib")),
            _gib(r.get("fit_peak_rss_kib")),
            "-" if extra is None else f"{extra:.2f}",
            r["status"],
        )
    console.print(t)

    s = Table(title="log-log slopes vs interactions (1.0 = linear)")
    for col in ("model", "time/epoch", "fit peak RSS", "fit extra RSS"):
        s.add_column(col, justify="right")
    for model, sl in report["slopes"].items():
        s.add_row(model, *("-" if v is None else f"{v:.2f}" for v in sl.values()))
    console.print(s)

    p = Table(title="Ours vs peer (same run, same matrix): seconds per epoch and ratio")
    for col in ("size", "ours", "s/epoch", "peer", "s/epoch", "ours / peer"):
        p.add_column(col, justify="right")
    for row in report["peers"]:
        p.add_row(
            _fmt_size(row["size"]),
            row["ours"],
            f"{row['ours_seconds']:.2f}",
            row["peer"],
            f"{row['peer_seconds']:.2f}",
            f"{row['ratio']:.2f}",
        )
    console.print(p)

    e = Table(title=f"EASE vs ItemKNN over catalogue size ({_fmt_size(report['ease_base'])} log)")
    for col in ("model", "items", "nnz kept", "fit s", "fit peak GiB", "extra GiB", "status"):
        e.add_column(col, justify="right")
    for r in report["ease_sweep"]:
        extra = fit_extra_gib(r)
        e.add_row(
            r["model"],
            f"{r.get('n_items', r['top_items']):,}",
            f"{r.get('nnz', 0):,}",
            "-" if r.get("fit_seconds") is None else f"{r['fit_seconds']:.1f}",
            _gib(r.get("fit_peak_rss_kib")),
            "-" if extra is None else f"{extra:.2f}",
            r["status"],
        )
    console.print(e)
    prac = report.get("ease_practicality") or {}
    if prac:
        x = Table(title="EASE extrapolated (time ∝ items^a, memory ∝ items²)")
        for col in ("items", "fit s (extrap)", "fit extra GiB (extrap)", "one n x n float64 GiB"):
            x.add_column(col, justify="right")
        for row in prac["extrapolated"]:
            x.add_row(
                f"{row['n_items']:,}",
                f"{row['fit_seconds']:,.0f}",
                f"{row['fit_extra_gib']:,.1f}",
                f"{row['dense_float64_gib']:,.1f}",
            )
        console.print(x)
    console.print(report.get("ease_statement", ""))


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    runs = [r for r in report["runs"] if r["status"] == "ok"]
    colours = {m: f"C{k}" for k, m in enumerate(MODELS)}
    for ax, key, label in (
        (axes[0], "per_epoch_seconds", "seconds per epoch / iteration"),
        (axes[1], "fit_peak_rss_kib", "peak RSS during fit (GiB)"),
    ):
        for model in MODELS:
            pts = sorted((r["nnz"], r[key]) for r in runs if r["model"] == model)
            if not pts:
                continue
            x = np.array([p[0] for p in pts], float)
            y = np.array([p[1] for p in pts], float) / (2**20 if key.endswith("kib") else 1)
            peer = model.startswith("implicit-")
            name = (
                f"{model} (top {report['config']['ease_items']:,} items)"
                if model == "ease"
                else model
            )
            slope = (
                report["slopes"]
                .get(model, {})
                .get("time_per_epoch" if key == "per_epoch_seconds" else "fit_peak_rss")
            )
            ax.plot(
                x,
                y,
                "o:" if peer else "o-",
                color=colours[model],
                label=f"{name} (slope {slope:.2f})" if slope is not None else name,
            )
            extrap = [r["nnz"] for r in runs if r["model"] == model and r.get("extrapolated")]
            if key == "per_epoch_seconds" and extrap:
                ex = [(a, b) for a, b in zip(x, y, strict=True) if a in extrap]
                ax.plot(*zip(*ex, strict=True), "s", mfc="white", color=colours[model], ms=9)
        if runs:
            lo, hi = min(r["nnz"] for r in runs), max(r["nnz"] for r in runs)
            ys = [ln.get_ydata()[0] for ln in ax.get_lines() if len(ln.get_ydata())]
            if ys and hi > lo:
                y0 = float(np.exp(np.mean(np.log(ys))))
                ax.plot([lo, hi], [y0, y0 * hi / lo], "k--", lw=1, label="linear (slope 1)")
        ax.set(xscale="log", yscale="log", xlabel="interactions", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("Training time (hollow squares: extrapolated epoch)")
    axes[1].set_title("Peak memory of fit")

    ax = axes[2]
    sweep = [r for r in report["ease_sweep"] if r["status"] == "ok"]
    twin = ax.twinx()
    for model, colour in (("ease", colours["ease"]), ("itemknn", "C7")):
        pts = sorted((r["n_items"], r["fit_seconds"], fit_extra_gib(r)) for r in sweep
                     if r["model"] == model)  # fmt: skip
        if not pts:
            continue
        n = np.array([p[0] for p in pts], float)
        ax.plot(n, [p[1] for p in pts], "o-", color=colour, label=f"{model}: fit seconds")
        twin.plot(n, [p[2] for p in pts], "^:", color=colour,
                  label=f"{model}: fit extra GiB")  # fmt: skip
    prac = report.get("ease_practicality") or {}
    if prac:
        ext = prac["extrapolated"]
        n = np.array([row["n_items"] for row in ext], float)
        ax.plot(n, [row["fit_seconds"] for row in ext], "--", color=colours["ease"], alpha=0.5,
                label=f"EASE time extrap (∝ n^{prac['time_exponent']:.2f})")  # fmt: skip
        twin.plot(n, [row["fit_extra_gib"] for row in ext], "-.", color=colours["ease"],
                  alpha=0.5, label="EASE memory extrap (∝ n²)")  # fmt: skip
        twin.axhline(prac["ram_gib"], color="red", lw=1, label=f"RAM {prac['ram_gib']:.0f} GiB")
    for a in (ax, twin):
        a.set(xscale="log", yscale="log")
    ax.set(xlabel="items", ylabel="fit seconds", title="EASE vs items (ItemKNN for contrast)")
    twin.set_ylabel("fit peak - baseline RSS (GiB)")
    ax.grid(True, which="both", alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    fig.suptitle("recfunnel candidate generators at scale (synthetic data; wall clock, shared "
                 "2-core machine)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def peer_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for size in sorted({r["size"] for r in runs}):
        by = {r["model"]: r for r in runs if r["size"] == size and r["status"] == "ok"}
        for ours, peer in PEERS.items():
            if ours in by and peer in by:
                a, b = by[ours]["per_epoch_seconds"], by[peer]["per_epoch_seconds"]
                rows.append({"size": size, "ours": ours, "ours_seconds": a, "peer": peer,
                             "peer_seconds": b, "ratio": a / b})  # fmt: skip
    return rows


def ease_statement(prac: dict[str, Any]) -> str:
    if not prac:
        return "EASE: too few sweep points to extrapolate."
    return (
        f"EASE fit time grows as items^{prac['time_exponent']:.2f} over the sweep (n³ for the "
        f"Cholesky inverse once it dominates) and the memory its fit needs as items² "
        f"(~{prac['bytes_per_item_pair']:.0f} bytes per item pair; one dense float64 n x n "
        f"matrix is 8). Extrapolated from the sweep, it reaches this "
        f"machine's {prac['ram_gib']:.0f} GiB of RAM at ~{prac['items_at_ram']:,.0f} items and "
        f"an hour of fitting at ~{prac['items_at_one_hour']:,.0f} items; at 100k items it would "
        f"need ~{prac['extrapolated'][2]['fit_extra_gib']:,.0f} GiB. Beyond a few tens of "
        "thousands of items, ItemKNN (sparse top-k neighbours, memory ∝ items x k) and ALS "
        "(memory ∝ (users + items) x factors, time linear in interactions) take over."
    )


def build_report(args: argparse.Namespace, state: dict[str, Any]) -> dict[str, Any]:
    runs = state["runs"]
    prac = ease_practicality(state["ease_sweep"], state["ram_gib"])
    return {
        "benchmark": "scale",
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": state["machine"],
        "data": state["data"],
        "runs": runs,
        "slopes": slopes(runs),
        "peers": peer_rows(runs),
        "ease_base": args.ease_base,
        "ease_sweep": state["ease_sweep"],
        "ease_practicality": prac,
        "ease_statement": ease_statement(prac),
    }


def save(args: argparse.Namespace, state: dict[str, Any]) -> dict[str, Any]:
    report = build_report(args, state)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return report


# ---- driver ----------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    import implicit
    import scipy
    import torch

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "ram_gib": ram / GIB,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "implicit": implicit.__version__,
        "load_at_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.replot:
        report = json.loads(args.output.read_text())
        plot(report, args.output.with_suffix(".png"))
        print_tables(report)
        return
    from tqdm import tqdm

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="recfunnel-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    state: dict[str, Any] = {"runs": [], "ease_sweep": [], "data": [], "machine": machine}
    state["ram_gib"] = machine["ram_gib"]
    base = args.ease_base if args.ease_base in args.sizes else None
    if "ease" in args.models and base is None:
        base = min(args.sizes, key=lambda s: abs(math.log(s / args.ease_base)))
        args.ease_base = base
    fit_spec = {
        "threads": args.threads,
        "als_iterations": args.als_iterations,
        "epochs": args.epochs,
        "epoch_budget": args.epoch_budget,
    }
    sweep = [("ease", n) for n in args.ease_sweep] + [("itemknn", n) for n in args.ease_sweep]
    total = len(args.sizes) * (1 + len(args.models)) + (len(sweep) if "ease" in args.models else 0)
    bar = tqdm(total=total, desc="scale", unit="run", file=sys.stderr, dynamic_ncols=True)
    for size in args.sizes:
        n_users = max(1_000, round(size * USERS_PER_INTERACTION))
        data = work / f"data_{size}.npz"
        bar.set_postfix_str(f"generate {_fmt_size(size)}")
        if not data.exists():
            spec = {"n_users": n_users, "n_items": args.items, "n_interactions": size,
                    "seed": args.seed, "out": str(data)}  # fmt: skip
            gen = run_child("generate", spec, work, f"gen_{size}", args.timeout * 2, args.threads)
            state["data"].append({"size": size, "n_users": n_users, "n_items": args.items, **gen})
            tqdm.write(f"generated {_fmt_size(size)}: {gen.get('generate_seconds', 0):.0f} s, "
                       f"peak {_gib(gen['process_peak_rss_kib'])} GiB, {gen['status']}",
                       file=sys.stderr)  # fmt: skip
            if gen["status"] != "ok":
                for model in args.models:
                    state["runs"].append({"size": size, "model": model, "nnz": 0,
                                          "status": f"no data: {gen['status']}"})  # fmt: skip
                bar.update(1 + len(args.models))
                continue
        bar.update(1)
        for model in args.models:
            bar.set_postfix_str(f"{model} @ {_fmt_size(size)}")
            spec = {**fit_spec, "model": model, "data": str(data)}
            if model == "ease":
                spec["top_items"] = min(args.ease_items, args.items)
            r = run_child("fit", spec, work, f"{model}_{size}", args.timeout, args.threads)
            state["runs"].append({"size": size, "model": model, **r})
            save(args, state)
            pe = r.get("per_epoch_seconds")
            tqdm.write(f"{model:>13} @ {_fmt_size(size):>4}: "
                       f"{'-' if pe is None else f'{pe:.2f}'} s/epoch, "
                       f"fit peak {_gib(r.get('fit_peak_rss_kib'))} GiB, {r['status']}",
                       file=sys.stderr)  # fmt: skip
            bar.update(1)
        if size == base and "ease" in args.models:
            # Right after its log is made, so a later size that fails leaves the sweep intact.
            for model, items in sweep:
                bar.set_postfix_str(f"{model} sweep {items:,} items")
                spec = {**fit_spec, "model": model, "data": str(data), "top_items": items}
                tag = f"sweep_{model}_{items}"
                r = run_child("fit", spec, work, tag, args.timeout, args.threads)
                state["ease_sweep"].append({"size": base, "model": model, "top_items": items, **r})
                save(args, state)
                tqdm.write(f"{model:>8} sweep {items:>7,} items: {r.get('fit_seconds', 0):.1f} s, "
                           f"fit peak {_gib(r.get('fit_peak_rss_kib'))} GiB, {r['status']}",
                           file=sys.stderr)  # fmt: skip
                bar.update(1)
        if args.work_dir is None:
            data.unlink(missing_ok=True)
    bar.close()
    report = save(args, state)
    plot(report, args.output.with_suffix(".png"))
    print_tables(report)
    print(f"wrote {args.output} and {args.output.with_suffix('.png')}")
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        child_main(sys.argv[2], sys.argv[3])
    else:
        main()
