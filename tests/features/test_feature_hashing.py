"""The stable hash: pinned values, its definition, process independence, buckets, OOV."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from recfunnel.core.errors import ConfigError
from recfunnel.features.hashing import (
    MISSING_ID,
    N_RESERVED,
    OOV_ID,
    bucket_of,
    frequent_hashes,
    hash_buckets,
    stable_hash64,
)

VALUES = ["", "a", "user_42", "é", "日本", 25, 2.5, True, None]
GOLDEN = {
    "0": [
        18309376646232785731, 6539243125055167529, 9479358779071714237, 15217149402070620094,
        9780685295916061820, 3918675511318821425, 11858691903582146153, 4675854262876650529,
        10767654463245657981,
    ],
    "item_id": [
        4284609250384660251, 15532643405603318822, 8653884699587478279, 7358546670817041745,
        15761613355322922651, 6104847706815107009, 12728889858293022945, 5578323022924284506,
        11758040843817086794,
    ],
}  # fmt: skip


@pytest.mark.parametrize("seed", ["0", "item_id"])
def test_golden_values(seed: str) -> None:
    assert stable_hash64(VALUES, seed).tolist() == GOLDEN[seed]


def test_definition_is_blake2b_of_seed_and_canonical_value() -> None:
    canon = ["", "a", "user_42", "é", "日本", "25", "2.5", "True", "\x00missing"]
    expected = [
        int.from_bytes(
            hashlib.blake2b(f"item_id\x1f{c}".encode(), digest_size=8).digest(), "little"
        )
        for c in canon
    ]
    assert stable_hash64(VALUES, "item_id").tolist() == expected


def test_same_in_other_processes_whatever_pythonhashseed() -> None:
    code = (
        "import json, sys; from recfunnel.features.hashing import stable_hash64;"
        "v = json.loads(sys.argv[1]);"
        "print(json.dumps(stable_hash64(v, 'item_id').tolist()))"
    )
    for hashseed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(VALUES)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(out.stdout) == GOLDEN["item_id"]


def test_dtype_does_not_change_the_hash() -> None:
    as_int = stable_hash64(np.array([25, 3], dtype=np.int64))
    as_float = stable_hash64(pd.Series([25.0, 3.0, np.nan]))[:2]
    as_str = stable_hash64(pd.Series(["25", "3"], dtype="string"))
    assert as_int.tolist() == as_float.tolist() == as_str.tolist()
    assert stable_hash64([None]).tolist() == stable_hash64([float("nan")]).tolist()


def test_seed_changes_the_hash_and_matches_the_tower_hash() -> None:
    from recfunnel.candidates._tower_features import stable_hash

    values = [f"v{i}" for i in range(200)]
    assert (stable_hash64(values, 1) != stable_hash64(values, 2)).all()
    for salt in ("", "categorical:genre"):
        ours = (stable_hash64(values, salt) % np.uint64(977)).astype(np.int64)
        assert ours.tolist() == stable_hash(values, 977, salt=salt).tolist()


def test_reserved_ids_and_frequency_threshold() -> None:
    train = stable_hash64(["x", "x", "y", "z", "z", "z"])
    kept = frequent_hashes(train, 2)
    query = ["x", "y", "z", "never", None]
    h = stable_hash64(query)
    ids = hash_buckets(h, pd.isna(pd.Series(query)).to_numpy(), 10, kept=kept)[:, 0]
    assert ids[1] == ids[3] == OOV_ID and ids[4] == MISSING_ID
    assert ids[0] == N_RESERVED + int(h[0] % np.uint64(10))
    # Without a vocabulary an unseen value keeps its own bucket.
    free = hash_buckets(h, np.zeros(5, bool), 10)[:, 0]
    assert free[3] == N_RESERVED + int(h[3] % np.uint64(10))
    assert (hash_buckets(h, np.zeros(5, bool), 10, kept=kept[:0])[:, 0] == OOV_ID).all()


def test_two_hash_functions_cut_collisions_as_independent_ones_would() -> None:
    n_buckets, n = 64, 3000
    h = stable_hash64([f"item{i}" for i in range(n)], "double")
    b0, b1 = bucket_of(h, n_buckets, 0), bucket_of(h, n_buckets, 1)
    i, j = np.triu_indices(n, 1)
    single = (b0[i] == b0[j]).mean()
    both = ((b0[i] == b0[j]) & (b1[i] == b1[j])).mean()
    assert single == pytest.approx(1 / n_buckets, rel=0.05)
    assert both == pytest.approx(1 / n_buckets**2, rel=0.25)
    ids = hash_buckets(h, np.zeros(n, bool), n_buckets, n_hashes=2)
    assert ids.shape == (n, 2) and ids.min() >= N_RESERVED and ids.max() < N_RESERVED + n_buckets


def test_buckets_are_uniform() -> None:
    from scipy.stats import chisquare

    h = stable_hash64([f"user_{i}" for i in range(20_000)])
    counts = np.bincount(bucket_of(h, 100), minlength=100)
    assert chisquare(counts).pvalue > 0.001


def test_bad_parameters() -> None:
    h = stable_hash64(["a"])
    with pytest.raises(ConfigError):
        bucket_of(h, 0)
    with pytest.raises(ConfigError):
        bucket_of(h, 2**31 + 1, 1)
    with pytest.raises(ConfigError):
        hash_buckets(h, np.zeros(1, bool), 8, n_hashes=3)
