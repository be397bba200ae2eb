"""Co-engagement against a dense reference, with the interactions' user index differing from
the graph's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recfunnel.candidates.friends.co_engagement import CoEngagement
from recfunnel.core.errors import ConfigError
from recfunnel.core.graph import SocialGraph
from recfunnel.core.ids import IdIndex
from recfunnel.core.matrix import InteractionMatrix

RNG = np.random.default_rng(3)
N_USERS, N_ITEMS = 40, 25
GRAPH_USERS = [f"u{k}" for k in range(N_USERS)]
# Users u0..u34 engage (u35..u39 never do); the matrix also holds x0, x1, unknown to the graph.
LOG = [
    (f"u{u}", f"i{i}")
    for u in range(35)
    for i in RNG.choice(N_ITEMS, RNG.integers(1, 6), replace=False, p=None)
] + [("x0", "i1"), ("x1", "i1"), ("u3", "i4"), ("u3", "i4")]  # repeats count once
INTER = InteractionMatrix.from_arrays(
    [u for u, _ in LOG],
    [i for _, i in LOG],
    users=IdIndex(sorted({u for u, _ in LOG}, reverse=True)),
)


def graph() -> SocialGraph:
    src = [f"u{k}" for k in range(0, N_USERS - 1, 2)]
    dst = [f"u{k + 1}" for k in range(0, N_USERS - 1, 2)]
    edges = pd.DataFrame({"src_user_id": src + dst, "dst_user_id": dst + src})
    return SocialGraph.from_edges(edges, users=GRAPH_USERS)


def reference(idf: bool) -> np.ndarray:
    """Dense cosine over the graph users' binary item sets, items BM25-idf weighted."""
    x = np.zeros((N_USERS, N_ITEMS))
    for u, i in LOG:
        if u in GRAPH_USERS:
            x[int(u[1:]), int(i[1:])] = 1.0
    active = (x.sum(axis=1) > 0).sum()
    df = x.sum(axis=0)
    w = np.log(1 + (active - df + 0.5) / (df + 0.5)) if idf else np.ones(N_ITEMS)
    v = x * w
    norms = np.linalg.norm(v, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(v @ v.T / np.outer(norms, norms))


@pytest.mark.parametrize("idf", [True, False])
def test_scores_equal_the_dense_reference(idf: bool) -> None:
    model = CoEngagement(idf=idf).fit(graph(), interactions=INTER)
    sim = reference(idf)
    for r, rec in enumerate(model.recommend(GRAPH_USERS, n=N_USERS)):
        want = {k for k in range(N_USERS) if k not in (r, r ^ 1) and sim[r, k] > 0}
        rows = [int(u[1:]) for u in rec.ids]
        assert set(rows) == want
        np.testing.assert_allclose(rec.scores, sim[r, rows], rtol=1e-5)
    assert model.recommend(["u36"], n=5)[0].ids == ()  # never engaged


def test_caps_sample_and_stay_deterministic() -> None:
    g = graph()
    full = CoEngagement().fit(g, interactions=INTER).recommend(GRAPH_USERS, n=10)
    capped = CoEngagement(max_items=1, max_users_per_item=2).fit(g, interactions=INTER)
    again = CoEngagement(max_items=1, max_users_per_item=2).fit(g, interactions=INTER)
    lists = capped.recommend(GRAPH_USERS, n=10)
    assert lists == again.recommend(GRAPH_USERS, n=10)
    assert all(len(c) <= 2 for c in lists)  # one item, two of its users (one may be excluded)
    assert sum(len(c) for c in full) > sum(len(c) for c in lists)


def test_needs_interactions() -> None:
    with pytest.raises(ConfigError, match="interactions"):
        CoEngagement().fit(graph())
    with pytest.raises(ConfigError, match="max_items"):
        CoEngagement(max_items=0).fit(graph(), interactions=INTER)
