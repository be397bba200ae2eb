"""Cold-start benchmark of the two-tower model against popularity on MovieLens.

Protocol (per dataset, everything seeded):

1. A share ``--holdout`` of the *users* is held out entirely; the model never sees them.
2. Model selection mimics them: 10% of the remaining users keep only their first 3
   interactions (by time) in the training data, and the rest of theirs is the validation set
   for early stopping (NDCG@10). Measured on ordinary validation interactions instead, the
   best epoch for known users comes late, long after new users' quality has peaked (it falls
   from the second epoch on). Another ``--valid-cold`` share (10%) of the users keeps *none*
   of theirs in the training data: they are the new users the model is selected on for
   ``k = 0`` (trained on, even with 3 interactions, a user's demographics, nearly unique with
   the zip code, let the tower recall their items, which flattered it). Every rating is a
   positive (no threshold).
3. Each held-out user's interactions are sorted by time; the first ``k`` are revealed as history
   (``k = 0``: pure feature cold start, only the demographics), the rest are the targets.
4. Full ranking over the whole catalogue (revealed items masked), NDCG@10 and Recall@10 per
   user, percentile bootstrap 95% intervals over users, and the paired difference two-tower -
   popularity with its own bootstrap interval. Popularity is fitted on all training users'
   interactions and ranks the most popular items not in the revealed history.
5. The two-tower's popularity prior (``popularity_prior="auto"``, see
   :class:`~recfunnel.candidates.two_tower.TwoTower`) is part of the model: its two weights
   (no history / a short one) and its demographic segments (``segment_prior="auto"``: item
   popularity among users of the same, e.g., gender and age group) are selected inside ``fit``
   on the validation users of step 2, never on the held-out users, and reported as
   ``popularity_prior`` and ``segments``.

``--warm`` adds the standard warm-user comparison: ml-100k, per-user random split 8:1:1 with
seed 2020 (RecBole's RO), NDCG@10 on test with train and validation items masked, the same
table as for the other models (EASE and popularity are run here too, for reference).

Usage::

    .venv/bin/python benchmarks/cold_start.py                       # ml-100k and ml-1m, + warm
    .venv/bin/python benchmarks/cold_start.py --datasets ml-100k --no-warm
    .venv/bin/python benchmarks/cold_start.py --param temperature=0.1 --param dim=32

Writes a JSON report (default ``reports/cold_start.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from recfunnel.candidates.popularity import Popularity
from recfunnel.candidates.two_tower import TwoTower
from recfunnel.core.ids import IdIndex
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.core.schema import Dataset
from recfunnel.data.datasets import DEFAULT_CACHE_DIR, load
from recfunnel.data.splits import random_split
from recfunnel.evaluation.bootstrap import paired_test
from recfunnel.evaluation.harness import EvaluationResult, evaluate

METRICS = ("ndcg@10", "recall@10")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _summary(result: EvaluationResult) -> dict[str, Any]:
    ci = result.ci95()
    return {m: {"mean": float(result.per_user[m].mean()), "ci95": list(ci[m])} for m in METRICS} | {
        "n_users": len(result.users)
    }


def _scorer(user_vecs: npt.NDArray[np.float32], item_vecs: npt.NDArray[np.float32]) -> Any:
    def score(users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return (user_vecs[users].astype(np.float64) @ item_vecs.T.astype(np.float64)).astype(
            np.float32
        )

    return score


@dataclass
class ColdSplit:
    """Training users' interactions (fit / valid parts) and the held-out users' timelines."""

    name: str
    dataset: Dataset
    items: IdIndex
    train: InteractionMatrix  # all training users' interactions
    fit: InteractionMatrix
    valid: InteractionMatrix
    heldout: pd.DataFrame  # held-out users' rows, sorted by time, with "_pos" 0, 1, ...
    heldout_users: IdIndex
    heldout_features: pd.DataFrame  # one row per held-out user, in heldout_users order


def split_users(
    name: str, *, cache_dir: Path, holdout: float, seed: int, valid_k: int = 3,
    valid_cold: float = 0.1,
) -> ColdSplit:  # fmt: skip
    ds = load(name, cache_dir=cache_dir)
    inter = ds.interactions.reset_index(drop=True)
    inter["user_id"] = inter["user_id"].astype(str)
    inter["item_id"] = inter["item_id"].astype(str)
    rng = np.random.default_rng(seed)
    all_users = np.array(sorted(inter["user_id"].unique()))
    held = set(rng.choice(all_users, size=round(holdout * len(all_users)), replace=False))
    is_held = inter["user_id"].isin(held).to_numpy()
    catalogue = pd.unique(pd.concat([inter["item_id"], ds.items["item_id"].astype(str)]))
    items = IdIndex(catalogue.tolist(), kind="item")
    tr = inter[~is_held]
    train = InteractionMatrix.from_arrays(
        tr["user_id"].to_numpy(),
        tr["item_id"].to_numpy(),
        tr["value"].to_numpy(),
        tr["timestamp"].to_numpy(),
        users=IdIndex(pd.unique(tr["user_id"]).tolist(), kind="user"),
        items=items,
    )
    fit, valid = _validation_users(train, share=0.1, k=valid_k, cold=valid_cold, seed=seed)
    te = inter[is_held].copy()
    te["_row"] = np.arange(len(te))
    te = te.sort_values(["user_id", "timestamp", "_row"], kind="stable")
    te["_pos"] = te.groupby("user_id").cumcount()
    held_users = IdIndex(pd.unique(te["user_id"]).tolist(), kind="user")
    feats = ds.users.assign(user_id=ds.users["user_id"].astype(str)).set_index("user_id")
    feats = feats.reindex(pd.Index(held_users.ids.tolist(), name="user_id")).reset_index()
    return ColdSplit(name, ds, items, train, fit, valid, te, held_users, feats)


def _validation_users(
    train: InteractionMatrix, *, share: float, k: int, cold: float, seed: int
) -> tuple[InteractionMatrix, InteractionMatrix]:
    """Early stopping on users like the held-out ones: a share of the training users keep only
    their first ``k`` interactions (by time) in the fit part, another share ``cold`` none; the
    rest of theirs is the validation part. Everyone else's interactions are all fitted on."""
    rng = np.random.default_rng(seed + 1)
    n = train.n_users
    chosen = np.zeros(n, dtype=bool)
    chosen[rng.choice(n, size=round(share * n), replace=False)] = True
    # Drawn after (and apart from) the first share, which stays what it was without them.
    new = rng.choice(np.flatnonzero(~chosen), size=round(cold * n), replace=False)
    order = np.lexsort((np.arange(len(train)), train.timestamp, train.user))
    rank = np.empty(len(train), dtype=np.int64)
    counts = np.bincount(train.user, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank[order] = np.arange(len(train)) - np.repeat(starts, counts)
    to_valid = (chosen[train.user] & (rank >= k)) | np.isin(train.user, new)
    return train.subset(~to_valid), train.subset(to_valid)


def reveal(
    split: ColdSplit, k: int
) -> tuple[InteractionMatrix, InteractionMatrix, list[list[str]]]:
    """The first ``k`` interactions of each held-out user (as a matrix and as id lists) and the
    rest (the targets)."""
    te = split.heldout

    def matrix(frame: pd.DataFrame) -> InteractionMatrix:
        return InteractionMatrix.from_arrays(
            frame["user_id"].to_numpy(),
            frame["item_id"].to_numpy(),
            users=split.heldout_users,
            items=split.items,
        )

    shown = te[te["_pos"] < k]
    history = shown.groupby("user_id")["item_id"].apply(list).to_dict()
    lists = [history.get(u, []) for u in split.heldout_users.ids.tolist()]
    return matrix(shown), matrix(te[te["_pos"] >= k]), lists


def cold_start(name: str, args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    split = split_users(
        name, cache_dir=args.cache_dir, holdout=args.holdout, seed=args.seed,
        valid_cold=args.valid_cold,
    )  # fmt: skip
    ds = split.dataset
    started = time.perf_counter()
    model = TwoTower(**params).fit(
        split.fit, valid=split.valid, user_features=ds.users, item_features=ds.items
    )
    fit_s = time.perf_counter() - started
    pop = Popularity().fit(split.train)
    out: dict[str, Any] = {
        "dataset": name,
        "n_train_users": split.train.n_users,
        "n_heldout_users": len(split.heldout_users),
        "n_items": len(split.items),
        "fit_seconds": round(fit_s, 1),
        "popularity_prior": None if model.prior_ is None else model.prior_.tolist(),
        "segments": {
            "columns": model.segment_columns_.tolist(),
            "n": len(model.segment_keys_),
        },
        "k": {},
    }
    for k in args.ks:
        revealed, test, history = reveal(split, k)
        started = time.perf_counter()
        vecs = model.user_vectors_from_features(split.heldout_features, history=history)
        tt = evaluate(
            _scorer(vecs, model.item_vectors()), test=test, train=revealed, ks=[10],
            metrics=["ndcg", "recall"],
        )  # fmt: skip
        scores = pop.item_scores_
        pp = evaluate(
            lambda u, s=scores: np.broadcast_to(s, (len(u), len(s))),
            test=test, train=revealed, ks=[10], metrics=["ndcg", "recall"],
        )  # fmt: skip
        assert np.array_equal(tt.users, pp.users)
        row: dict[str, Any] = {
            "two_tower": _summary(tt),
            "popularity": _summary(pp),
            "seconds": round(time.perf_counter() - started, 1),
        }
        for m in METRICS:
            diff = paired_test(pp.per_user[m], tt.per_user[m], metric=m, n_resamples=1000)
            row[f"diff_{m}"] = {"mean": diff.difference, "ci95": list(diff.ci95)}
        out["k"][str(k)] = row
    return out


def warm(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    ds = load("ml-100k", cache_dir=args.cache_dir)
    m = InteractionMatrix.from_dataset(ds)
    split = random_split(m, (0.8, 0.1, 0.1), seed=2020)
    out: dict[str, Any] = {"dataset": "ml-100k", "split": "ro:0.8,0.1,0.1 seed 2020"}
    models: dict[str, Any] = {"two_tower": TwoTower(**params), "popularity": Popularity()}
    try:
        from recfunnel.candidates.ease import EASE

        models["ease"] = EASE()
    except ImportError:  # EASE is another engineer's module; the table works without it
        pass
    for label, model in models.items():
        started = time.perf_counter()
        if label == "two_tower":
            model.fit(
                split.train, valid=split.valid, user_features=ds.users, item_features=ds.items
            )
        else:
            model.fit(split.train)
        fit_s = time.perf_counter() - started
        res = evaluate(
            model, test=split.test, train=split.train, exclude=[split.valid], ks=[10],
            metrics=["ndcg", "recall"],
        )  # fmt: skip
        out[label] = _summary(res) | {"fit_seconds": round(fit_s, 1)}
        if label == "two_tower" and model.prior_ is not None:
            out[label]["popularity_prior"] = model.prior_.tolist()
    return out


def _fmt(s: dict[str, Any], metric: str) -> str:
    lo, hi = s[metric]["ci95"]
    return f"{s[metric]['mean']:.4f} [{lo:.4f}, {hi:.4f}]"


def print_report(report: dict[str, Any]) -> None:
    for res in report["cold_start"]:
        print(
            f"\n## {res['dataset']}: {res['n_heldout_users']} held-out users, "
            f"{res['n_train_users']} training users, fit {res['fit_seconds']} s, "
            f"popularity prior (cold, short) {res.get('popularity_prior')}, segments "
            f"{res.get('segments')}"
        )
        print("| k | metric | two-tower [95% CI] | popularity [95% CI] | diff [95% CI] |")
        print("|---|---|---|---|---|")
        for k, row in res["k"].items():
            for m in METRICS:
                d = row[f"diff_{m}"]
                print(
                    f"| {k} | {m} | {_fmt(row['two_tower'], m)} | {_fmt(row['popularity'], m)} "
                    f"| {d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] |"
                )
    if "warm" in report:
        w = report["warm"]
        print(f"\n## warm users, {w['dataset']} {w['split']}")
        print("| model | ndcg@10 [95% CI] | recall@10 [95% CI] | fit s |")
        print("|---|---|---|---|")
        for label in ("two_tower", "ease", "popularity"):
            if label in w:
                s = w[label]
                print(
                    f"| {label} | {_fmt(s, 'ndcg@10')} | {_fmt(s, 'recall@10')} "
                    f"| {s['fit_seconds']} |"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-1m"])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--holdout", type=float, default=0.15, help="share of users held out")
    parser.add_argument("--ks", type=int, nargs="+", default=[0, 3], help="revealed items")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--valid-cold", type=float, default=0.1,
        help="share of training users held out of fitting entirely, to select k=0 on",
    )  # fmt: skip
    parser.add_argument("--warm", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a TwoTower hyper-parameter (JSON value), repeatable",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=Path("reports/cold_start.json"))
    args = parser.parse_args(argv)
    params: dict[str, Any] = {"verbose": True}
    for item in args.param:
        key, _, value = item.partition("=")
        params[key.strip()] = _parse_value(value)
    report: dict[str, Any] = {
        "params": TwoTower(**params).get_params(),
        "protocol": {
            "holdout": args.holdout,
            "ks": args.ks,
            "seed": args.seed,
            "valid_cold": args.valid_cold,
        },
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "cold_start": [cold_start(name, args, params) for name in args.datasets],
    }
    if args.warm:
        report["warm"] = warm(args, params)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print_report(report)
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
