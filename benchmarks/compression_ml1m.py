"""Embedding compression on a real model: ALS (and BPR) item vectors of MovieLens-1M.

For each codec (float16, int8, PCA to fewer dimensions, PQ codes) of
``recfunnel.index.compression``: bytes per item, NDCG@10 on the test split (train and valid
items masked, RecBole's RO 8:1:1 split, seed 2020) before and after, and recall@100 of each
user's uncompressed top-100 kept by the compressed scores. The peer, in the same run on the
same vectors, is FAISS's own codecs called directly (``IndexScalarQuantizer`` fp16 / 8-bit,
``IndexPQ``) searched exhaustively: the recall@100 of its top-100 against the exact top-100
(masked the same way is not possible in FAISS, so the peer's recall is unmasked and ours is
also reported unmasked for that comparison).

    .venv/bin/python benchmarks/compression_ml1m.py                 # ALS (about 1 minute)
    .venv/bin/python benchmarks/compression_ml1m.py --models als,bpr

Writes ``reports/compression_ml1m.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from recfunnel.candidates import make_generator
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.data.datasets import DEFAULT_CACHE_DIR, load
from recfunnel.data.splits import random_split
from recfunnel.index.compression import compare_compression, make_codec

CODECS = ("fp16", "int8", "pca:32", "pca:16", "pq:16", "pq:8")


def _unmasked_recall(
    queries: npt.NDArray[np.float32], exact: npt.NDArray[np.int64], found: npt.NDArray[np.int64]
) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(exact, found, strict=True)]))


def _faiss_peer(spec: str, items: npt.NDArray[np.float32]) -> faiss.Index | None:
    d = items.shape[1]
    if spec == "fp16":
        return faiss.IndexScalarQuantizer(
            d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
    if spec == "int8":
        return faiss.IndexScalarQuantizer(
            d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    if spec.startswith("pq:"):
        m, _, nbits = spec[3:].partition("x")
        return faiss.IndexPQ(d, int(m), int(nbits or 8), faiss.METRIC_INNER_PRODUCT)
    return None  # FAISS has PCA only as a pre-transform; no like-for-like peer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="als")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--output", type=Path, default=Path("reports/compression_ml1m.json"))
    parser.add_argument("--queries", type=int, default=1000, help="users for the FAISS peer")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    data = load("ml-1m", cache_dir=args.cache_dir)
    split = random_split(InteractionMatrix.from_dataset(data), (0.8, 0.1, 0.1), seed=2020)
    doc: dict[str, Any] = {"dataset": "ml-1m", "split": "ro:0.8,0.1,0.1 seed 2020", "models": {}}
    for name in args.models.split(","):
        started = time.perf_counter()
        model: Any = make_generator(name).fit(split.train)
        print(f"{name}: fitted in {time.perf_counter() - started:.1f} s")
        rows = compare_compression(
            model, CODECS, test=split.test, train=split.train, exclude=[split.valid], k=10,
            overlap_k=100,
        )  # fmt: skip
        users = np.random.default_rng(0).choice(split.train.n_users, args.queries, replace=False)
        q = np.ascontiguousarray(model.user_vectors(users), dtype=np.float32)
        items = np.ascontiguousarray(model.item_vectors(), dtype=np.float32)
        exact = np.argsort(-(q @ items.T), axis=1, kind="stable")[:, :100]
        print(f"\n{name}: {items.shape[0]} items x {items.shape[1]}-d, float32 "
              f"{items.shape[1] * 4} B/item")  # fmt: skip
        header = (
            f"{'codec':8} {'B/item':>7} {'ratio':>6} {'NDCG@10':>8} {'orig':>7} {'loss %':>7} "
            f"{'R@100 masked':>12} {'R@100 ours':>10} {'R@100 FAISS':>11} {'ours/FAISS':>10}"
        )
        print(header)
        out = []
        for r in rows:
            codec = make_codec(r.codec).fit(items)
            ours = _unmasked_recall(
                q, exact, np.argsort(-(q @ codec.decode(codec.encode(items)).T), axis=1,
                                     kind="stable")[:, :100],
            )  # fmt: skip
            peer_index = _faiss_peer(r.codec, items)
            peer = None
            if peer_index is not None:
                peer_index.train(items)
                peer_index.add(items)
                _, found = peer_index.search(q, 100)
                peer = _unmasked_recall(q, exact, found)
            ratio = f"{ours / peer:10.3f}" if peer else f"{'-':>10}"
            peer_s = f"{peer:11.4f}" if peer is not None else f"{'-':>11}"
            print(
                f"{r.codec:8} {r.bytes_per_vector:7.1f} {r.compression_ratio:6.1f} "
                f"{r.ndcg_compressed:8.4f} {r.ndcg_original:7.4f} "
                f"{100 * r.ndcg_loss_relative:7.2f} {r.overlap_recall:12.4f} {ours:10.4f} "
                f"{peer_s} {ratio}"
            )
            out.append({**r.to_dict(), "recall100_unmasked": ours, "faiss_recall100": peer})
        doc["models"][name] = out
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=1))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
