"""RecBole side of benchmarks/eval_vs_recbole.py.  Runs inside the RecBole venv
(see benchmarks/setup_recbole_venv.sh); it never imports recfunnel.

What it does, in RecBole 1.2.1 terms:

1. builds the dataset from the atomic ``.inter`` file in ``--data-dir`` with the protocol
   ``eval_args: {split: {RS: [0.8, 0.1, 0.1]}, order: RO, group_by: user, mode: full}``,
   every interaction a positive (no threshold, no filtering), ``seed`` 2020;
2. exports the exact train / valid / test split from the dataloaders (RecBole internal ids,
   plus the ``id2token`` maps) to ``--out-dir`` as ``.npy`` + ``.json``;
3. fits RecBole's ItemKNN on the train split, turns its full score matrix into a matrix with
   no ties (each user's items ranked by ItemKNN score, ties broken by a fixed random item
   order, score = n_items - rank: exact small integers in float32) and saves it as
   ``scores.npy`` (n_users x n_items in RecBole's internal id order, padding row/column 0);
4. times ``Trainer.evaluate(test_data, load_best_model=False)`` with a tiny model whose
   ``full_sort_predict`` returns rows of that precomputed matrix (so only evaluation is
   timed), ``--repeats`` times, and once with the real ItemKNN ``full_sort_predict``
   (evaluation including ItemKNN's own scoring, for reference);
5. writes full-precision metric means and per-user values to ``recbole_result.json`` and
   ``recbole_per_user.npz`` (plain arrays, no pickle).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import recbole  # noqa: E402
import torch  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.model.abstract_recommender import GeneralRecommender  # noqa: E402
from recbole.model.general_recommender import ItemKNN  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import InputType, ModelType, init_seed  # noqa: E402
from tqdm import tqdm  # noqa: E402

DATASET = "bench"  # RecBole dataset name; not a name with a bundled properties/dataset/*.yaml
METRICS = ["NDCG", "Recall", "MRR", "Hit", "Precision", "MAP"]


class PrecomputedScores(GeneralRecommender):
    """A RecBole model whose scores are rows of a fixed matrix (internal id order)."""

    input_type = InputType.POINTWISE
    type = ModelType.GENERAL

    def __init__(self, config, dataset, scores: torch.Tensor) -> None:
        super().__init__(config, dataset)
        assert scores.shape == (self.n_users, self.n_items), (scores.shape, self.n_users)
        self.scores = scores
        # Trainer builds an optimizer over the parameters: it needs at least one.
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def calculate_loss(self, interaction):
        return self.dummy.sum()

    def predict(self, interaction):
        return self.scores[interaction[self.USER_ID], interaction[self.ITEM_ID]]

    def full_sort_predict(self, interaction):
        return self.scores[interaction[self.USER_ID]].reshape(-1)


def log(msg: str) -> None:
    print(f"[recbole-side] {msg}", file=sys.stderr, flush=True)


def find_inter_file(data_dir: Path) -> Path:
    files = sorted(data_dir.glob("*.inter"))
    if len(files) != 1:
        raise SystemExit(f"expected exactly one *.inter file in {data_dir}, found {files}")
    return files[0]


def read_header(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as f:
        return f.readline().rstrip("\n").split("\t")


def no_tie_scores(raw: np.ndarray, seed: int) -> np.ndarray:
    """Order-preserving, tie-free version of ``raw`` (padding row/column 0 left at 0).

    Each row's real items are ranked by score descending, ties broken by a fixed random item
    order; the new score is ``n_real_items - rank`` (1..n_real_items, exact in float32).
    """
    n_users, n_items = raw.shape
    real = raw[:, 1:]
    n_real = n_items - 1
    perm = np.random.default_rng(seed).permutation(n_real)
    # stable sort over permuted columns == ties broken by position in the random permutation
    order_in_perm = np.argsort(-real[:, perm], axis=1, kind="stable")
    order = perm[order_in_perm]
    out = np.zeros((n_users, n_items), dtype=np.float32)
    ranked_values = np.arange(n_real, 0, -1, dtype=np.float32)
    rows = np.arange(n_users)[:, None]
    out[rows, order + 1] = ranked_values[None, :]
    out[0, :] = 0.0
    return out


def export_split(out: Path, name: str, loader, uid_field: str, iid_field: str) -> int:
    feat = loader.dataset.inter_feat
    u = feat[uid_field].numpy().astype(np.int64)
    i = feat[iid_field].numpy().astype(np.int64)
    np.save(out / f"{name}_user.npy", u)
    np.save(out / f"{name}_item.npy", i)
    return len(u)


def per_user_metrics(trainer: Trainer, test_data, topk: list[int]) -> dict[str, np.ndarray]:
    """One more (untimed) evaluation, keeping RecBole's data struct to get per-user values."""
    captured = {}
    original = trainer.eval_collector.get_data_struct

    def capture():
        struct = original()
        captured["struct"] = struct
        return struct

    trainer.eval_collector.get_data_struct = capture
    try:
        trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    finally:
        trainer.eval_collector.get_data_struct = original
    struct = captured["struct"]
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


def time_eval(
    trainer: Trainer, test_data, repeats: int, desc: str, warmup: int = 0
) -> tuple[list[float], dict]:
    for _ in range(warmup):
        trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    times = []
    result = None
    for _ in tqdm(range(repeats), desc=desc, unit="run", file=sys.stderr, leave=True):
        t0 = time.perf_counter()
        result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        times.append(time.perf_counter() - t0)
    return times, {k.lower(): float(v) for k, v in result.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--topk", type=int, nargs="+", default=[10, 20])
    ap.add_argument(
        "--users-per-batch",
        type=int,
        default=256,
        help="users per full-sort batch; eval_batch_size = this * item_num",
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="untimed evaluations first")
    ap.add_argument(
        "--itemknn-repeats",
        type=int,
        default=1,
        help="timed evaluations with ItemKNN's own full_sort_predict (0: skip)",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config would otherwise read "--key=value" arguments

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "recbole_work"
    (work / "dataset" / DATASET).mkdir(parents=True, exist_ok=True)
    inter = find_inter_file(args.data_dir.expanduser().resolve())
    link = work / "dataset" / DATASET / f"{DATASET}.inter"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(inter)
    os.chdir(work)  # RecBole writes log_tensorboard/ and saved/ relative to the cwd

    header = read_header(inter)
    fields = [h.split(":")[0] for h in header]
    for needed in ("user_id", "item_id"):
        if needed not in fields:
            raise SystemExit(f"{inter} has no {needed} column (header: {header})")
    load_cols = [f for f in ("user_id", "item_id", "rating", "timestamp") if f in fields]

    config_dict = {
        "data_path": str(work / "dataset"),
        "checkpoint_dir": str(work / "saved"),
        "use_gpu": False,
        "seed": args.seed,
        "reproducibility": True,
        "show_progress": False,
        "log_wandb": False,
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "RATING_FIELD": "rating" if "rating" in fields else None,
        "TIME_FIELD": "timestamp" if "timestamp" in fields else None,
        "load_col": {"inter": load_cols},
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
        "train_neg_sample_args": None,
        "metrics": METRICS,
        "topk": list(args.topk),
        "valid_metric": f"MRR@{args.topk[0]}",
        "metric_decimal_place": 16,  # RecBole rounds means to 4 places by default
        "eval_batch_size": 4096,  # replaced below once item_num is known
    }
    t_all = time.perf_counter()
    log(
        f"RecBole {recbole.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), data {inter}"
    )
    config = Config(model="ItemKNN", dataset=DATASET, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    eval_batch_size = args.users_per_batch * dataset.item_num
    config["eval_batch_size"] = eval_batch_size
    train_data, valid_data, test_data = data_preparation(config, dataset)
    t_data = time.perf_counter() - t0
    log(
        f"dataset {dataset.user_num - 1} users x {dataset.item_num - 1} items, "
        f"{dataset.inter_num} interactions; split in {t_data:.1f}s; "
        f"eval_batch_size={eval_batch_size} ({args.users_per_batch} users/batch)"
    )

    uid_field, iid_field = dataset.uid_field, dataset.iid_field
    counts = {
        name: export_split(out, name, loader, uid_field, iid_field)
        for name, loader in (("train", train_data), ("valid", valid_data), ("test", test_data))
    }
    id2token = {
        "user": [str(t) for t in dataset.field2id_token[uid_field].tolist()],
        "item": [str(t) for t in dataset.field2id_token[iid_field].tolist()],
    }
    (out / "id2token.json").write_text(json.dumps(id2token), encoding="utf-8")
    # (user, item) pairs of valid and test that coincide: RecBole does not mask such an item
    # at test time (it is a positive), which a plain "exclude valid" protocol would.
    n_items = dataset.item_num
    valid_pairs = set(
        (np.load(out / "valid_user.npy") * n_items + np.load(out / "valid_item.npy")).tolist()
    )
    test_pairs = (
        np.load(out / "test_user.npy") * n_items + np.load(out / "test_item.npy")
    ).tolist()
    overlap = sum(p in valid_pairs for p in test_pairs)

    init_seed(config["seed"], config["reproducibility"])
    t0 = time.perf_counter()
    itemknn = ItemKNN(config, train_data.dataset)
    t_fit = time.perf_counter() - t0
    raw = itemknn.pred_mat.tocsr().toarray().astype(np.float32)
    scores = no_tie_scores(raw, args.seed)
    np.save(out / "scores.npy", scores)
    log(f"ItemKNN fitted in {t_fit:.1f}s; tie-free score matrix {scores.shape} saved")

    model = PrecomputedScores(config, train_data.dataset, torch.from_numpy(scores))
    trainer = Trainer(config, model)
    times, metrics = time_eval(
        trainer, test_data, args.repeats, "RecBole evaluate (precomputed)", args.warmup
    )
    per_user = per_user_metrics(trainer, test_data, list(args.topk))
    np.savez(
        out / "recbole_per_user.npz", uid=test_data.uid_list.numpy().astype(np.int64), **per_user
    )
    log(f"RecBole evaluate: best {min(times):.3f}s, median {statistics.median(times):.3f}s")

    itemknn_block = None
    if args.itemknn_repeats > 0:
        knn_trainer = Trainer(config, itemknn)
        knn_times, knn_metrics = time_eval(
            knn_trainer, test_data, args.itemknn_repeats, "RecBole evaluate (ItemKNN scoring)"
        )
        itemknn_block = {
            "label": "Trainer.evaluate with ItemKNN.full_sort_predict (includes scoring; "
            "raw scores have ties, so metrics may differ slightly)",
            "seconds": knn_times,
            "best_s": min(knn_times),
            "median_s": statistics.median(knn_times),
            "metrics": knn_metrics,
        }

    result = {
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy_version": np.__version__,
        "inter_file": str(inter),
        "seed": args.seed,
        "topk": list(args.topk),
        "n_users": int(dataset.user_num - 1),
        "n_items": int(dataset.item_num - 1),
        "n_interactions": int(dataset.inter_num),
        "split_counts": counts,
        "n_test_users": len(test_data.uid_list),
        "valid_test_overlap_pairs": int(overlap),
        "users_per_batch": args.users_per_batch,
        "eval_batch_size": int(eval_batch_size),
        "data_seconds": t_data,
        "itemknn_fit_seconds": t_fit,
        "eval": {
            "label": "Trainer.evaluate(test_data, load_best_model=False), precomputed scores",
            "seconds": times,
            "best_s": min(times),
            "median_s": statistics.median(times),
            "metrics": metrics,
        },
        "eval_itemknn": itemknn_block,
        "total_seconds": time.perf_counter() - t_all,
    }
    (out / "recbole_result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    log(f"wrote {out / 'recbole_result.json'}")


if __name__ == "__main__":
    main()
