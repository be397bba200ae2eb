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


def test_dense_and_blocked_similarities_are_identical(monkeypatch) -> None:
    import recfunnel.candidates.itemknn as knn
    from recfunnel.core.matrix import InteractionMatrix

    rng = np.random.default_rng(1)
    # Above the Gram kernel's threshold (50k stored entries), with shrinkage and ties.
    users = rng.integers(0, 2000, 120_000)
    items = (rng.zipf(1.3, 120_000) - 1) % 700
    data = InteractionMatrix.from_arrays(users.astype(str), items.astype(str))
    assert data.to_csr().nnz >= 50_000
    for shrink in (0.0, 10.0):
        dense = knn.ItemKNN(k=25, shrink=shrink).fit(data).similarity_
        monkeypatch.setattr(knn, "DENSE_MAX_ITEMS", 0)
        blocked = knn.ItemKNN(k=25, shrink=shrink, block_size=128).fit(data).similarity_
        monkeypatch.undo()
        assert (dense != blocked).nnz == 0 and dense.nnz == blocked.nnz > 0


def test_large_inputs_take_the_kernel_path_with_the_same_answer() -> None:
    rng = np.random.default_rng(2)
    # >= 1M entries: the numba threshold kernel; rows with few and with many positives, ties.
    sim = (rng.integers(0, 6, size=(1100, 1000)) * (rng.random((1100, 1000)) < 0.3)).astype(
        np.float32
    ) / 5
    sim[:50, :] = 0.0
    sim[50:60, :5] = 0.4  # fewer positives than k
    sim[50:60, 5:] = 0.0
    for k in (1, 7, 100, 400):
        got = _top_neighbours(sim, k)
        idx, val = topk(sim, k)
        want = np.zeros_like(got)
        rows = np.repeat(np.arange(len(sim)), k)
        keep = (idx.ravel() >= 0) & (val.ravel() != 0)
        want[rows[keep], idx.ravel()[keep]] = True
        assert (got == want).all(), k
