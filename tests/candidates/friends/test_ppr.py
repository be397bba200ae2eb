"""Personalised PageRank by push against networkx's power iteration."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from recfunnel.candidates.friends.ppr import PersonalizedPageRank, push_pagerank
from recfunnel.core.errors import ConfigError
from recfunnel.core.graph import SocialGraph


def social_graph(g: nx.Graph) -> SocialGraph:
    a, b = zip(*g.edges(), strict=True)
    edges = pd.DataFrame(
        {"src_user_id": [f"n{x}" for x in a + b], "dst_user_id": [f"n{x}" for x in b + a]}
    )
    return SocialGraph.from_edges(edges, users=[f"n{k}" for k in sorted(g.nodes)])


G = nx.karate_club_graph()
GRAPH = social_graph(G)
DEG = np.array([G.degree(k) for k in sorted(G.nodes)])


@pytest.mark.parametrize("alpha", [0.15, 0.4])
@pytest.mark.parametrize("eps", [1e-3, 1e-5, 1e-8])
def test_within_the_push_tolerance_of_networkx(alpha: float, eps: float) -> None:
    for source in (0, 9, 33):
        exact = nx.pagerank(
            G, alpha=1 - alpha, personalization={source: 1.0}, tol=1e-14, weight=None
        )
        want = np.array([exact[k] for k in sorted(G.nodes)])
        nodes, score = push_pagerank(GRAPH, source, alpha, eps)
        got = np.zeros(len(want))
        got[nodes] = score
        # 0 <= exact - estimate < eps * degree, for every node (module docstring).
        assert (want - got >= -1e-12).all()
        assert (want - got < eps * DEG + 1e-12).all()


def test_ranking_matches_networkx_at_a_tight_tolerance() -> None:
    model = PersonalizedPageRank(alpha=0.2, eps=1e-9).fit(GRAPH)
    for source in (0, 5, 33):
        exact = nx.pagerank(G, alpha=0.8, personalization={source: 1.0}, tol=1e-14, weight=None)
        strangers = [k for k in G.nodes if k != source and not G.has_edge(source, k)]
        want = sorted(strangers, key=lambda k: (-exact[k], k))[:8]
        rec = model.recommend([f"n{source}"], n=8)[0]
        assert rec.ids == tuple(f"n{k}" for k in want)
        np.testing.assert_allclose(rec.scores, [exact[k] for k in want], rtol=1e-6)


def test_work_is_local() -> None:
    # A large tolerance stops after a few hops: few nodes touched.
    nodes, _ = push_pagerank(GRAPH, 0, 0.15, 0.05)
    assert 0 < len(nodes) < G.number_of_nodes()


def test_users_without_friends_and_graph_sizes() -> None:
    graph = social_graph(nx.path_graph(4))
    graph.add_users(["alone"])
    model = PersonalizedPageRank().fit(graph)
    assert model.recommend(["alone"], n=3)[0].ids == ()
    # The per-thread work arrays are reused across graphs of other sizes without leaking.
    first = PersonalizedPageRank(eps=1e-6).fit(GRAPH).recommend(["n0"], n=5)
    model.recommend(["n0"], n=3)
    assert PersonalizedPageRank(eps=1e-6).fit(GRAPH).recommend(["n0"], n=5) == first


@pytest.mark.parametrize("params", [{"alpha": 0.0}, {"alpha": 1.0}, {"eps": 0.0}])
def test_bad_parameters(params: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        PersonalizedPageRank(**params).fit(GRAPH)
