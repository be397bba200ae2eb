"""Feature hashing and streaming normalisation: recfunnel vs scikit-learn, same data, same run.

1. Hashing 1M string values into 2**20 buckets: ``recfunnel.features.hashing`` (BLAKE2b-64,
   each distinct value hashed once) vs ``sklearn.feature_extraction.FeatureHasher``
   (MurmurHash3-32 in Cython), on ids with repeats (Zipf over 100k distinct) and all distinct.
   FeatureHasher is timed on input already wrapped as it requires (one list per row).
2. Running mean / variance over 1M x 16 floats in batches: ``StreamingNormalizer.partial_fit``
   vs ``StandardScaler.partial_fit``, then ``transform`` of the whole matrix; statistics are
   checked to agree.

    .venv/bin/python benchmarks/feature_hashing.py            # defaults: 1M values, best of 3
    .venv/bin/python benchmarks/feature_hashing.py --n 200000 --repeats 5
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_hashing(n: int, repeats: int) -> None:
    from sklearn.feature_extraction import FeatureHasher

    from recfunnel.features.hashing import bucket_of, stable_hash64

    rng = np.random.default_rng(0)
    n_buckets = 2**20
    datasets = {
        "zipf ids (100k distinct)": [f"item_{i}" for i in (rng.zipf(1.2, n) % 100_000)],
        "all distinct": [f"user_{i}" for i in range(n)],
    }
    print(f"hashing {n:,} string values into {n_buckets:,} buckets (best of {repeats})")
    print(f"{'data':<28}{'recfunnel s':>12}{'sklearn s':>12}{'sklearn/ours':>14}")
    for label, values in datasets.items():
        ours_t, ours = best_of(
            lambda v=values: bucket_of(stable_hash64(v, "item"), n_buckets), repeats
        )
        wrapped = [[v] for v in values]
        hasher = FeatureHasher(n_features=n_buckets, input_type="string", alternate_sign=False)
        theirs_t, theirs = best_of(lambda w=wrapped, h=hasher: h.transform(w), repeats)
        assert ours.shape == (n,) and theirs.shape == (n, n_buckets)
        ratio = theirs_t / ours_t
        print(f"{label:<28}{ours_t:>12.3f}{theirs_t:>12.3f}{ratio:>13.2f}x")


def bench_normalizer(n: int, repeats: int, batch: int = 10_000, features: int = 16) -> None:
    from sklearn.preprocessing import StandardScaler

    from recfunnel.features.normalizer import StreamingNormalizer

    rng = np.random.default_rng(1)
    x = rng.normal(loc=5.0, scale=3.0, size=(n, features))
    chunks = [x[i : i + batch] for i in range(0, n, batch)]

    def ours_fit() -> StreamingNormalizer:
        norm = StreamingNormalizer(indicators=False)
        for c in chunks:
            norm.partial_fit(c)
        return norm

    def sk_fit() -> StandardScaler:
        scaler = StandardScaler()
        for c in chunks:
            scaler.partial_fit(c)
        return scaler

    ours_t, norm = best_of(ours_fit, repeats)
    sk_t, scaler = best_of(sk_fit, repeats)
    np.testing.assert_allclose(norm.mean_, scaler.mean_, rtol=1e-10)
    np.testing.assert_allclose(norm.var_, scaler.var_, rtol=1e-8)
    ours_tr, _ = best_of(lambda: norm.transform(x), repeats)
    sk_tr, _ = best_of(lambda: scaler.transform(x), repeats)
    print(
        f"\nnormaliser on {n:,} x {features} floats, batches of {batch:,} (best of {repeats}); "
        "statistics agree to 1e-8"
    )
    print(f"{'operation':<28}{'recfunnel s':>12}{'sklearn s':>12}{'sklearn/ours':>14}")
    print(f"{'partial_fit (all batches)':<28}{ours_t:>12.3f}{sk_t:>12.3f}{sk_t / ours_t:>13.2f}x")
    print(f"{'transform':<28}{ours_tr:>12.3f}{sk_tr:>12.3f}{sk_tr / ours_tr:>13.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="values / rows (default 1M)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side (best kept)")
    args = parser.parse_args()
    bench_hashing(args.n, args.repeats)
    bench_normalizer(args.n, args.repeats)


if __name__ == "__main__":
    main()
