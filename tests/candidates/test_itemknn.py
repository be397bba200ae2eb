"""ItemKNN's neighbour selection agrees with the reference top-k (ties broken the same way)."""

from __future__ import annotations

import numpy as np

from recfunnel.candidates.itemknn import _top_neighbours
from recfunnel.core.topk import topk


def test_neighbour_mask_matches_topk_with_heavy_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        b, n, k = (int(v) for v in (rng.integers(1, 30), rng.integers(1, 60), rng.integers(1, 70)))
        # Few distinct values: many ties at the k-th, and many zeros (never neighbours).
        sim = rng.integers(0, 5, size=(b, n)).astype(np.float32) / 4
        got = _top_neighbours(sim, k)
        idx, val = topk(sim, min(k, n))
        want = np.zeros_like(got)
        for r in range(b):
            keep = (idx[r] >= 0) & (val[r] != 0)
            want[r, idx[r][keep]] = True
        assert (got == want).all(), (b, n, k)
