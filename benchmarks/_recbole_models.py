"""RecBole side of benchmarks/models_vs_recbole.py: train and test ONE RecBole 1.2.1 model.

Runs inside the RecBole venv (benchmarks/setup_recbole_venv.sh); it never imports recfunnel.
The driver starts one process per model and times the whole process (imports included).

What it does, following ``recbole.quick_start.run_recbole`` step by step (minus the FLOPs
count, which only logs):

1. ``Config`` with the model's own defaults (``properties/model/<Model>.yaml``) plus the
   benchmark protocol: ``eval_args: {split: {RS: [0.8, 0.1, 0.1]}, order: RO, group_by: user,
   mode: full}``, every interaction a positive (``threshold: None``), no filtering, metrics
   NDCG / Recall / MRR / Hit / Precision at k = 10, 20, ``valid_metric: NDCG@10``,
   ``stopping_step: 10``, seed 2020, ``metric_decimal_place: 16``; only the ``.inter`` file is
   read (``load_col: {inter: [...]}``, so ``.user`` / ``.item`` beside it change nothing);
   ``eval_batch_size`` = ``--users-per-batch`` x item_num (a full-sort batch is counted in
   user x item cells; this changes speed, never metric values);
2. ``init_seed`` -> ``create_dataset`` -> ``data_preparation`` (the split), ``init_seed``
   again, the model, ``get_trainer(...)``, ``trainer.fit(train, valid, saved=True)`` (early
   stopping on valid NDCG@10) and ``trainer.evaluate(test, load_best_model=True)``;
3. writes ``--result`` (JSON: test metrics, best valid result, best epoch, per-epoch history,
   timings, config, split hash; ``timing.train_s`` = model constructor + ``Trainer.fit``,
   because ItemKNN and EASE compute everything in their constructor) and ``--per-user``
   (``.npz``, no pickle: each test user's token and RecBole's own per-user metric values,
   taken from the data struct of that final test evaluation, so their means are exactly
   RecBole's reported test metrics);
4. with ``--export-split DIR``: the exact train / valid / test split (RecBole internal ids +
   ``id2token``) as ``.npy`` / ``.json``, as benchmarks/_recbole_side.py does. The split only
   depends on the data and the seed (both ``init_seed`` calls come before any model code);
   the sha256 of the split is recorded in every result, so the driver can check that every
   model saw the same split. ``--split-only`` stops after the export.
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import recbole  # noqa: E402
import torch  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import get_model, get_trainer, init_logger, init_seed  # noqa: E402

T_IMPORTED = time.perf_counter()

METRICS = ["NDCG", "Recall", "MRR", "Hit", "Precision"]


def log(msg: str) -> None:
    print(f"[recbole-models] {msg}", file=sys.stderr, flush=True)


def to_float(x: Any) -> float:
    if isinstance(x, tuple):
        return float(sum(float(v) for v in x))
    if isinstance(x, torch.Tensor):
        return float(x.item())
    return float(x)


def protocol_config(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    inter = args.data_path / args.dataset / f"{args.dataset}.inter"
    with inter.open(encoding="utf-8") as f:
        fields = [h.split(":")[0] for h in f.readline().rstrip("\n").split("\t")]
    for needed in ("user_id", "item_id"):
        if needed not in fields:
            raise SystemExit(f"{inter} has no {needed} column")
    load_cols = [f for f in ("user_id", "item_id", "rating", "timestamp") if f in fields]
    cfg = {
        "data_path": str(args.data_path),
        "checkpoint_dir": str(work / "saved"),
        "use_gpu": False,
        "seed": args.seed,
        "reproducibility": True,
        "state": "INFO",
        "show_progress": False,
        "log_wandb": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "RATING_FIELD": "rating" if "rating" in fields else None,
        "TIME_FIELD": "timestamp" if "timestamp" in fields else None,
        "load_col": {"inter": load_cols},
        "unload_col": None,
        "threshold": None,
        "val_interval": None,
        "rm_dup_inter": None,
        "filter_inter_by_user_or_item": False,
        "user_inter_num_interval": None,
        "item_inter_num_interval": None,
        "eval_args": {
            "split": {"RS": [0.8, 0.1, 0.1]},
            "order": "RO",
            "group_by": "user",
            "mode": "full",
        },
        "metrics": METRICS,
        "topk": list(args.topk),
        "valid_metric": f"NDCG@{args.topk[0]}",
        "valid_metric_bigger": True,
        "stopping_step": 10,
        "eval_step": 1,
        "metric_decimal_place": 16,  # RecBole rounds metric means to 4 places by default
        "eval_batch_size": 4096,  # replaced once item_num is known
    }
    if args.epochs:
        cfg["epochs"] = args.epochs
    return cfg


def split_arrays(loaders: dict[str, Any], uid_field: str, iid_field: str) -> dict[str, np.ndarray]:
    out = {}
    for name, loader in loaders.items():
        feat = loader.dataset.inter_feat
        out[f"{name}_user"] = feat[uid_field].numpy().astype(np.int64)
        out[f"{name}_item"] = feat[iid_field].numpy().astype(np.int64)
    return out


def split_hash(arrays: dict[str, np.ndarray], id2token: dict[str, list[str]]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    h.update(json.dumps(id2token, sort_keys=True).encode())
    return h.hexdigest()


def per_user_values(trainer: Any, struct: Any, topk: list[int]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, metric in trainer.evaluator.metric_class.items():
        pos_index, pos_len = metric.used_info(struct)
        if len(inspect.signature(metric.metric_info).parameters) == 2:
            values = metric.metric_info(pos_index, pos_len)
        else:
            values = metric.metric_info(pos_index)
        for k in topk:
            out[f"{name}@{k}"] = np.asarray(values[:, k - 1], dtype=np.float64)
    return out


def config_snapshot(config: Any, model_name: str) -> dict[str, Any]:
    keys = [
        "epochs",
        "train_batch_size",
        "learner",
        "learning_rate",
        "weight_decay",
        "train_neg_sample_args",
        "eval_batch_size",
        "stopping_step",
        "valid_metric",
        "eval_args",
        "threshold",
        "load_col",
        "seed",
    ]
    model_yaml = Path(recbole.__file__).parent / "properties" / "model" / f"{model_name}.yaml"
    if model_yaml.exists():
        for line in model_yaml.read_text(encoding="utf-8").splitlines():
            key = line.split("#")[0].split(":")[0].strip()
            if key and not line.startswith((" ", "\t")) and key not in keys:
                keys.append(key)
    snap = {}
    for key in keys:
        try:
            value = config[key]
        except (KeyError, TypeError):
            continue
        snap[key] = json.loads(json.dumps(value, default=str))
    return snap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="RecBole model name, e.g. BPR")
    ap.add_argument("--dataset", required=True, help="dataset name, e.g. ml-100k")
    ap.add_argument(
        "--data-path", type=Path, required=True, help="folder holding <dataset>/<dataset>.inter"
    )
    ap.add_argument("--work-dir", type=Path, required=True, help="RecBole's log/ and saved/")
    ap.add_argument("--result", type=Path, help="result JSON to write")
    ap.add_argument("--per-user", type=Path, help="per-user metrics .npz to write")
    ap.add_argument("--export-split", type=Path, default=None, help="write the split here")
    ap.add_argument("--split-only", action="store_true", help="stop after exporting the split")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--topk", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--users-per-batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=0, help="cap on epochs (0: RecBole default)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would otherwise parse "--key=value" arguments
    args.data_path = args.data_path.expanduser().resolve()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work_dir.expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # RecBole writes log/, log_tensorboard/ and saved/ relative to the cwd

    t = {"import_s": T_IMPORTED - T_START}
    t0 = time.perf_counter()
    config = Config(model=args.model, dataset=args.dataset, config_dict=protocol_config(args, work))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    t["config_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dataset = create_dataset(config)
    eval_batch_size = args.users_per_batch * dataset.item_num
    config["eval_batch_size"] = eval_batch_size
    train_data, valid_data, test_data = data_preparation(config, dataset)
    t["data_s"] = time.perf_counter() - t0
    log(
        f"{args.model} on {args.dataset}: {dataset.user_num - 1} users x "
        f"{dataset.item_num - 1} items, {dataset.inter_num} interactions; data + split "
        f"{t['data_s']:.1f}s; eval_batch_size={eval_batch_size}; torch threads "
        f"{torch.get_num_threads()}"
    )

    uid_field, iid_field = dataset.uid_field, dataset.iid_field
    arrays = split_arrays(
        {"train": train_data, "valid": valid_data, "test": test_data}, uid_field, iid_field
    )
    id2token = {
        "user": [str(x) for x in dataset.field2id_token[uid_field].tolist()],
        "item": [str(x) for x in dataset.field2id_token[iid_field].tolist()],
    }
    digest = split_hash(arrays, id2token)
    counts = {p: len(arrays[f"{p}_user"]) for p in ("train", "valid", "test")}
    n_items = dataset.item_num
    valid_pairs = set((arrays["valid_user"] * n_items + arrays["valid_item"]).tolist())
    overlap = int(
        sum(p in valid_pairs for p in (arrays["test_user"] * n_items + arrays["test_item"]))
    )
    if args.export_split is not None:
        out = args.export_split.expanduser().resolve()
        out.mkdir(parents=True, exist_ok=True)
        for key, value in arrays.items():
            np.save(out / f"{key}.npy", value)
        (out / "id2token.json").write_text(json.dumps(id2token), encoding="utf-8")
        meta = {
            "dataset": args.dataset,
            "inter_file": str(args.data_path / args.dataset / f"{args.dataset}.inter"),
            "seed": args.seed,
            "split_sha256": digest,
            "split_counts": counts,
            "n_users": int(dataset.user_num - 1),
            "n_items": int(dataset.item_num - 1),
            "n_interactions": int(dataset.inter_num),
            "valid_test_overlap_pairs": overlap,
            "exported_by_model_run": args.model,
            "recbole_version": recbole.__version__,
        }
        (out / "split_meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        log(f"split exported to {out} (sha256 {digest[:12]}..)")
    if args.split_only:
        return
    if args.result is None or args.per_user is None:
        raise SystemExit("--result and --per-user are required unless --split-only")

    t0 = time.perf_counter()
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_class = get_model(config["model"])  # imports RecBole's model modules
    t["model_lookup_s"] = time.perf_counter() - t0
    # Traditional models (ItemKNN, EASE) do their whole computation in the constructor, so
    # the constructor counts as training time, beside Trainer.fit.
    t0 = time.perf_counter()
    model = model_class(config, train_data._dataset).to(config["device"])
    t["model_construct_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    t["trainer_init_s"] = time.perf_counter() - t0

    # Per-epoch history: wrap the trainer's own epoch methods (no behaviour change).
    history: list[dict[str, Any]] = []
    saved_epochs: list[int] = []
    orig_train, orig_valid, orig_save = (
        trainer._train_epoch,
        trainer._valid_epoch,
        trainer._save_checkpoint,
    )

    def train_epoch(train_loader: Any, epoch_idx: int, *a: Any, **kw: Any) -> Any:
        s = time.perf_counter()
        loss = orig_train(train_loader, epoch_idx, *a, **kw)
        history.append(
            {"epoch": int(epoch_idx), "train_s": time.perf_counter() - s, "loss": to_float(loss)}
        )
        return loss

    def valid_epoch(valid_loader: Any, *a: Any, **kw: Any) -> Any:
        s = time.perf_counter()
        score, result = orig_valid(valid_loader, *a, **kw)
        if history:
            history[-1]["valid_s"] = time.perf_counter() - s
            history[-1]["valid"] = {k: float(v) for k, v in result.items()}
        return score, result

    def save_checkpoint(epoch: int, *a: Any, **kw: Any) -> Any:
        saved_epochs.append(int(epoch))
        return orig_save(epoch, *a, **kw)

    trainer._train_epoch = train_epoch
    trainer._valid_epoch = valid_epoch
    trainer._save_checkpoint = save_checkpoint

    t0 = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=True, show_progress=False
    )
    t["fit_s"] = time.perf_counter() - t0
    t["train_s"] = t["model_construct_s"] + t["fit_s"]
    t["train_epochs_s"] = sum(h["train_s"] for h in history)
    t["valid_epochs_s"] = sum(h.get("valid_s", 0.0) for h in history)

    # The final test evaluation, exactly as run_recbole does it; its data struct is kept to
    # get RecBole's own per-user metric values.
    captured = {}
    orig_struct = trainer.eval_collector.get_data_struct

    def capture() -> Any:
        captured["struct"] = orig_struct()
        return captured["struct"]

    trainer.eval_collector.get_data_struct = capture
    t0 = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    t["test_eval_s"] = time.perf_counter() - t0
    trainer.eval_collector.get_data_struct = orig_struct
    per_user = per_user_values(trainer, captured["struct"], list(args.topk))
    uid = test_data.uid_list.numpy().astype(np.int64)
    user_token = np.asarray([id2token["user"][u] for u in uid.tolist()], dtype=str)
    args.per_user.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.per_user, user_token=user_token, **per_user)  # type: ignore[arg-type]
    test_metrics = {k.lower(): float(v) for k, v in test_result.items()}
    max_mean_diff = max(
        abs(float(per_user[k].mean()) - test_metrics[k]) for k in per_user if k in test_metrics
    )
    t["in_process_total_s"] = time.perf_counter() - T_START

    best_epoch = saved_epochs[-1] if saved_epochs else None
    result = {
        "model": args.model,
        "dataset": args.dataset,
        "seed": args.seed,
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "epochs_cap": args.epochs or None,
        "config": config_snapshot(config, args.model),
        "users_per_batch": args.users_per_batch,
        "eval_batch_size": int(eval_batch_size),
        "split_sha256": digest,
        "split_counts": counts,
        "valid_test_overlap_pairs": overlap,
        "n_users": int(dataset.user_num - 1),
        "n_items": int(dataset.item_num - 1),
        "n_test_users": len(uid),
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "best_valid_score": float(best_valid_score),
        "best_valid": {k.lower(): float(v) for k, v in (best_valid_result or {}).items()},
        "test": test_metrics,
        "per_user_mean_max_abs_diff": float(max_mean_diff),
        "timing": t,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "history": history,
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2), encoding="utf-8")
    log(
        f"{args.model}: test ndcg@{args.topk[0]} {test_metrics.get(f'ndcg@{args.topk[0]}'):.4f}, "
        f"best epoch {best_epoch} of {len(history)}, train {t['train_s']:.1f}s, "
        f"test eval {t['test_eval_s']:.2f}s"
    )


if __name__ == "__main__":
    main()
