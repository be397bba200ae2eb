"""Item PageRank against networkx and a dense eigenvector computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recfunnel.features.pagerank import ItemPageRank, item_pagerank


def _co_engagement(x: np.ndarray) -> np.ndarray:
    c = x.T @ x
    np.fill_diagonal(c, 0.0)
    return c


def test_matches_networkx_on_a_random_graph() -> None:
    nx = pytest.importorskip("networkx")
    rng = np.random.default_rng(0)
    x = (rng.random((60, 40)) < 0.08).astype(float)
    x[:, 7] = 0.0  # an item nobody engaged with
    x[:, 8] = 0.0
    x[0, 8] = 1.0  # an item whose only user engaged with nothing else
    x[0, [i for i in range(40) if i != 8]] = 0.0
    c = _co_engagement(x)
    graph = nx.Graph()
    graph.add_nodes_from(range(40))
    for i, j in zip(*np.nonzero(np.triu(c)), strict=True):
        graph.add_edge(int(i), int(j), weight=float(c[i, j]))
    ref = nx.pagerank(graph, alpha=0.85, weight="weight", tol=1e-15, max_iter=10_000)
    ours = item_pagerank(sp.csr_matrix(x))
    np.testing.assert_allclose(ours, [ref[i] for i in range(40)], atol=1e-8, rtol=0)
    assert ours.sum() == pytest.approx(1.0, abs=1e-12)


def test_matches_the_dense_eigenvector_on_a_tiny_graph() -> None:
    x = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1]], dtype=float)
    c = _co_engagement(x)
    d, n = 0.85, 4
    deg = c.sum(axis=1)
    p = np.where(deg[:, None] > 0, c / np.where(deg > 0, deg, 1)[:, None], 1.0 / n)
    google = d * p + (1 - d) / n  # row-stochastic
    vals, vecs = np.linalg.eig(google.T)
    ref = np.real(vecs[:, np.argmax(np.real(vals))])
    ref /= ref.sum()
    np.testing.assert_allclose(item_pagerank(sp.csr_matrix(x), damping=d), ref, atol=1e-10)


def test_step_scales_by_catalog_and_gives_unseen_items_the_isolated_value() -> None:
    events = pd.DataFrame(
        {"user_id": ["u", "u", "v", "v", "w"], "item_id": ["a", "b", "a", "c", "d"]}
    )
    step = ItemPageRank().fit(events, events)
    values = step.transform(pd.DataFrame({"item_id": ["a", "b", "c", "d", "zzz"]})).dense[:, 0]
    assert values[:4].sum() == pytest.approx(4.0, abs=1e-5)
    assert values[4] == pytest.approx(values[3])  # d has no co-engagement: isolated too
    assert values[0] > values[1] == pytest.approx(values[2])
