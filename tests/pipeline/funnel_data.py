"""Seeded interaction logs shared by the funnel tests."""

from __future__ import annotations

import numpy as np

from recfunnel.core.matrix import InteractionMatrix


def clustered(seed: int = 0, n_users: int = 80, n_items: int = 60) -> InteractionMatrix:
    """Two taste clusters (even / odd items), timestamps, a few heavy items."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        pool = np.arange(u % 2, n_items, 2)
        weights = 1.0 / (1.0 + np.arange(len(pool)))
        k = int(rng.integers(6, 16))
        chosen = rng.choice(pool, size=k, replace=False, p=weights / weights.sum())
        users += [f"u{u}"] * k
        items += [f"i{i}" for i in chosen]
        ts += rng.uniform(0, 1e6, k).tolist()
    return InteractionMatrix.from_arrays(users, items, timestamp=ts)
