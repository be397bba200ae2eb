"""Popularity and ItemKNN against answers computed independently (brute force)."""

from __future__ import annotations

import numpy as np
import pytest

from recfunnel.candidates import ItemKNN, Popularity
from recfunnel.core.matrix import InteractionMatrix


def _random_log(seed: int, n_users: int = 40, n_items: int = 30, n: int = 300):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n)
    i = (rng.zipf(1.6, n) - 1) % n_items
    return InteractionMatrix.from_arrays([f"u{x}" for x in u], [f"i{x}" for x in i])


def _itemknn_reference(x: np.ndarray, k: int, shrink: float) -> np.ndarray:
    """RecBole's ComputeSimilarity('item') + pred = X W, written densely and slowly."""
    n = x.shape[1]
    norms = np.sqrt((x**2).sum(axis=0))
    w = np.zeros((n, n))
    for j in range(n):
        col = x.T @ x[:, j]
        col[j] = 0.0
        col = col / (norms[j] * norms + shrink + 1e-6)
        order = sorted(range(n), key=lambda i: (-col[i], i))[:k]
        for i in order:
            w[i, j] = col[i]
    return x @ w


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("k", "shrink"), [(5, 0.0), (10, 2.0), (100, 0.5)])
def test_itemknn_matches_dense_reference(seed: int, k: int, shrink: float) -> None:
    data = _random_log(seed)
    model = ItemKNN(k=k, shrink=shrink, block_size=7).fit(data)
    x = data.to_csr().toarray().astype(np.float64)
    np.testing.assert_allclose(
        model.score_users(np.arange(data.n_users)), _itemknn_reference(x, k, shrink), rtol=1e-5
    )


def test_popularity_counts_users_or_events() -> None:
    data = InteractionMatrix.from_arrays(list("aaabc"), list("xxyxz"))
    by_users = Popularity().fit(data).score_users(np.array([0]))[0]
    by_events = Popularity(count="events").fit(data).score_users(np.array([0]))[0]
    assert by_users.tolist() == [2.0, 1.0, 1.0]
    assert by_events.tolist() == [3.0, 1.0, 1.0]
    # Ties break toward the lower item index: y before z.
    assert Popularity().fit(data).recommend(["b"], n=2)[0].ids == ("y", "z")
