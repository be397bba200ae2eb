from __future__ import annotations

import numpy as np
import pytest

from recfunnel.core.topk import topk


def _reference(row: np.ndarray, k: int, priority: np.ndarray) -> list[int]:
    rank = np.empty_like(priority)
    rank[priority] = np.arange(len(priority))
    finite = [j for j in range(len(row)) if np.isfinite(row[j])]
    return sorted(finite, key=lambda j: (-row[j], rank[j]))[:k]


@pytest.mark.parametrize("seed", range(5))
def test_matches_sorted_reference_on_tie_heavy_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(200):
        b, n, k = rng.integers(1, 5), rng.integers(1, 40), rng.integers(1, 45)
        s = rng.integers(0, 4, (b, n)).astype(np.float32)
        s[rng.random((b, n)) < 0.2] = -np.inf
        priority = rng.permutation(n) if rng.random() < 0.5 else np.arange(n)
        idx, val = topk(s, k, tie_priority=priority)
        assert idx.shape == (b, k) and val.shape == (b, k)
        for r in range(b):
            got = [j for j in idx[r] if j >= 0]
            assert got == _reference(s[r], k, priority)
            assert np.all(np.isneginf(val[r][idx[r] < 0]))


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="k must be positive"):
        topk(np.zeros((1, 3)), 0)
    with pytest.raises(ValueError, match="NaN"):
        topk(np.array([[np.nan, 1.0]]), 1)
    with pytest.raises(ValueError, match="2-D"):
        topk(np.zeros(3), 1)
