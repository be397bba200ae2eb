"""Mutual friends, Adamic–Adar and Jaccard against networkx, and the sparse two-hop machinery
against scipy."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recfunnel.candidates.friends import make_friend_generator
from recfunnel.candidates.friends._neighborhood import expand, sample_rows, top_per_row
from recfunnel.candidates.friends.adamic_adar import AdamicAdar
from recfunnel.candidates.friends.jaccard import Jaccard
from recfunnel.candidates.friends.mutual import MutualFriends
from recfunnel.core.errors import ConfigError
from recfunnel.core.friends import Candidates
from recfunnel.core.graph import SocialGraph


def social_graph(g: nx.Graph) -> SocialGraph:
    """Both directions of every networkx edge, ids ``"n<k>"``, every node in the index."""
    a, b = zip(*g.edges(), strict=True)
    src = [f"n{x}" for x in a + b]
    dst = [f"n{x}" for x in b + a]
    edges = pd.DataFrame({"src_user_id": src, "dst_user_id": dst})
    return SocialGraph.from_edges(edges, users=[f"n{k}" for k in sorted(g.nodes)])


def reference(g: nx.Graph, method: str) -> dict[tuple[str, str], float]:
    """Scores of every non-adjacent pair with a common neighbour, both orders."""
    pairs = [
        (u, v)
        for u in g.nodes
        for v in g.nodes
        if u != v and not g.has_edge(u, v) and any(True for _ in nx.common_neighbors(g, u, v))
    ]
    if method == "mutual_friends":
        scores = ((u, v, len(list(nx.common_neighbors(g, u, v)))) for u, v in pairs)
    elif method == "adamic_adar":
        scores = nx.adamic_adar_index(g, pairs)
    else:
        scores = nx.jaccard_coefficient(g, pairs)
    return {(f"n{u}", f"n{v}"): float(s) for u, v, s in scores}


def ours(model, graph: SocialGraph) -> dict[tuple[str, str], float]:
    users = graph.user_ids().tolist()
    out = {}
    for u, rec in zip(users, model.recommend(users, n=graph.n_users), strict=True):
        out.update({(u, v): s for v, s in zip(rec.ids, rec.scores, strict=True)})
    return out


GRAPHS = {
    "karate": nx.karate_club_graph(),
    "random": nx.gnp_random_graph(60, 0.1, seed=4),
}


@pytest.mark.parametrize("method", ["mutual_friends", "adamic_adar", "jaccard"])
@pytest.mark.parametrize("which", sorted(GRAPHS))
def test_known_answers_against_networkx(method: str, which: str) -> None:
    g = GRAPHS[which]
    graph = social_graph(g)
    got = ours(make_friend_generator(method).fit(graph), graph)
    want = reference(g, method)
    assert got.keys() == want.keys()  # the candidates are exactly the friends of friends
    for pair, value in want.items():
        assert got[pair] == pytest.approx(value, rel=1e-6), pair


@pytest.mark.parametrize("method", ["mutual_friends", "adamic_adar", "jaccard"])
def test_overlay_edits_are_seen(method: str) -> None:
    """After online friendships, unfriends and a new member, scores match networkx on the
    edited graph: the per-request path reads the overlay."""
    g = nx.gnp_random_graph(40, 0.12, seed=1)
    graph = social_graph(g)
    model = make_friend_generator(method).fit(graph)
    added = [(0, 5), (7, 30), (12, 13)]
    removed = [e for e in list(g.edges())[::9] if e not in added][:4]
    for u, v in added:
        graph.add_edges([f"n{u}", f"n{v}"], [f"n{v}", f"n{u}"])
        g.add_edge(u, v)
    for u, v in removed:
        graph.remove_edges([f"n{u}"], [f"n{v}"])
        graph.remove_edges([f"n{v}"], [f"n{u}"])
        g.remove_edge(u, v)
    graph.add_edges(["n40", "n3", "n40", "n9"], ["n3", "n40", "n9", "n40"])
    g.add_edges_from([(40, 3), (40, 9)])
    got = ours(model, graph)
    want = reference(g, method)
    assert got.keys() == want.keys()
    for pair, value in want.items():
        assert got[pair] == pytest.approx(value, rel=1e-6), pair


def test_adamic_adar_hand_computed() -> None:
    # a-b, a-c, b-e, c-e, c-d: a and e share b (degree 2) and c (degree 3); a and d share c.
    edges = pd.DataFrame({"src_user_id": list("aabcc"), "dst_user_id": list("bceed")})
    graph = SocialGraph.from_edges(edges, mutual=False)
    rec = AdamicAdar().fit(graph).recommend(["a"], n=5)[0]
    assert rec.ids == ("e", "d")
    np.testing.assert_allclose(rec.scores, [1 / np.log(2) + 1 / np.log(3), 1 / np.log(3)])


def test_hub_cap_is_a_deterministic_even_sample() -> None:
    # A star: hub h with 10 leaves, and user q friend of h. q's candidates go through h.
    leaves = [f"l{k}" for k in range(10)]
    src = ["q"] + ["h"] * 10
    dst = ["h", *leaves]
    graph = SocialGraph.from_edges(
        pd.DataFrame({"src_user_id": src, "dst_user_id": dst}), mutual=False
    )
    full = MutualFriends(max_neighbors=100).fit(graph).recommend(["q"], n=20)[0]
    assert sorted(full.ids) == sorted(leaves)
    capped = MutualFriends(max_neighbors=4).fit(graph).recommend(["q"], n=20)[0]
    # h's row (q, l0..l9 by row) sampled at positions floor(j * 11 / 4) = 0, 2, 5, 8.
    row = graph.decode(graph.neighbors(graph.encode(["h"])[0])).tolist()
    expected = {row[p] for p in (0, 2, 5, 8)} - {"q"}
    assert set(capped.ids) == expected
    assert MutualFriends(max_neighbors=4).fit(graph).recommend(["q"], n=20)[0] == capped
    with pytest.raises(ConfigError, match="max_neighbors"):
        Jaccard(max_neighbors=0).fit(graph)


def test_sample_rows_positions() -> None:
    indptr = np.array([0, 3, 10, 10])
    indices = np.arange(10)
    out_ptr, out_idx, out_data = sample_rows(indptr, indices, np.arange(10.0), 3)
    assert out_ptr.tolist() == [0, 3, 6, 6]
    assert out_idx.tolist() == [0, 1, 2, 3, 5, 7]  # row 1 (7 long): 3 + floor(j*7/3)
    assert out_data.tolist() == [0.0, 1.0, 2.0, 3.0, 5.0, 7.0]


def test_expand_equals_the_scipy_product() -> None:
    rng = np.random.default_rng(0)
    first = sp.random(7, 30, density=0.2, format="csr", random_state=1)
    second = sp.random(30, 50, density=0.1, format="csr", random_state=2)
    second.data[:] = 1.0
    weights = rng.random(first.nnz)
    got = expand(
        first.indptr.astype(np.int64),
        first.indices.astype(np.int64),
        weights,
        second.indptr.astype(np.int64),
        second.indices.astype(np.int64),
    )
    want = (
        sp.csr_matrix((weights, first.indices, first.indptr), shape=first.shape) @ second
    ).tocsr()
    want.eliminate_zeros()
    want.sort_indices()
    assert got.indptr.tolist() == want.indptr.tolist()
    assert got.index.tolist() == want.indices.tolist()
    np.testing.assert_allclose(got.score, want.data, rtol=1e-6)


def test_top_per_row_breaks_ties_by_lower_row() -> None:
    cand = Candidates(
        np.array([0, 4, 5]),
        np.array([9, 3, 7, 1, 2]),
        np.array([1.0, 2.0, 2.0, 0.5, 3.0], np.float32),
    )
    top = top_per_row(cand, 2)
    assert top.indptr.tolist() == [0, 2, 3]
    assert top.index.tolist() == [3, 7, 2]
