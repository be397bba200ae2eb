"""The popularity sources: global degree ranking and the most-connected of one's community."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from recfunnel.candidates.friends.community import CommunityPopular
from recfunnel.candidates.friends.popular import PopularUsers
from recfunnel.core.errors import ConfigError, DataError, UnknownIdError
from recfunnel.core.graph import SocialGraph

G = nx.gnp_random_graph(50, 0.08, seed=2)
G.add_node(50)  # a user with no friends: never suggested


def social_graph(g: nx.Graph, times: dict[tuple[int, int], float] | None = None) -> SocialGraph:
    a, b = zip(*g.edges(), strict=True)
    t = [times[(x, y)] for x, y in zip(a, b, strict=True)] if times else [0.0] * len(a)
    edges = pd.DataFrame(
        {
            "src_user_id": [f"n{x}" for x in a + b],
            "dst_user_id": [f"n{x}" for x in b + a],
            "timestamp": t + t,
        }
    )
    return SocialGraph.from_edges(edges, users=[f"n{k}" for k in sorted(g.nodes)])


def degree_ranking(g: nx.Graph, among) -> list[str]:
    return [f"n{k}" for k in sorted(among, key=lambda k: (-g.degree(k), k)) if g.degree(k) > 0]


def test_popular_users_is_the_degree_ranking() -> None:
    graph = social_graph(G)
    model = PopularUsers().fit(graph)
    user = 50  # no friends: nothing to exclude but themself
    rec = model.recommend([f"n{user}"], n=10)[0]
    assert list(rec.ids) == degree_ranking(G, G.nodes)[:10]
    assert list(rec.scores) == [float(G.degree(int(u[1:]))) for u in rec.ids]
    # Another user gets the same list without themself and their friends.
    friends = {f"n{k}" for k in G[0]} | {"n0"}
    rec0 = model.recommend(["n0"], n=10)[0]
    assert list(rec0.ids) == [u for u in degree_ranking(G, G.nodes) if u not in friends][:10]


def test_recency_weighting() -> None:
    g = nx.Graph([(0, 1), (0, 2), (3, 4), (3, 5), (3, 6), (7, 8)])
    times = {e: 0.0 for e in g.edges()}
    times[(0, 1)] = times[(0, 2)] = 100.0  # 0's two friendships are the newest
    graph = social_graph(g, times)
    plain = PopularUsers().fit(graph).recommend(["n7"], n=2)[0]
    recent = PopularUsers(half_life=10.0).fit(graph).recommend(["n7"], n=2)[0]
    assert plain.ids == ("n3", "n0")
    assert recent.ids == ("n0", "n1")  # 0: 2 x 1; 3: 3 x 2**-10; 1, 2: 1 each
    assert recent.scores[0] == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="half_life"):
        PopularUsers(half_life=0.0).fit(graph)


def test_community_popular_ranks_within_the_group() -> None:
    graph = social_graph(G)
    community = {k: k % 3 for k in G.nodes}
    features = pd.DataFrame(
        {"user_id": [f"n{k}" for k in G.nodes], "club": [f"c{community[k]}" for k in G.nodes]}
    )
    features.loc[features.user_id == "n7", "club"] = None  # unknown group
    model = CommunityPopular(column="club").fit(graph, user_features=features)
    for user in (1, 2, 50):
        members = [k for k in G.nodes if community[k] == community[user] and k != 7]
        banned = {f"n{k}" for k in G[user]} | {f"n{user}"}
        want = [u for u in degree_ranking(G, members) if u not in banned][:5]
        assert list(model.recommend([f"n{user}"], n=5)[0].ids) == want
    # Unknown group: the global ranking.
    banned = {f"n{k}" for k in G[7]} | {"n7"}
    want = [u for u in degree_ranking(G, G.nodes) if u not in banned][:5]
    assert list(model.recommend(["n7"], n=5)[0].ids) == want


def test_community_popular_new_members() -> None:
    graph = social_graph(G)
    features = pd.DataFrame({"user_id": [f"n{k}" for k in G.nodes], "community": 0})
    features.loc[features.index % 2 == 1, "community"] = 1
    model = CommunityPopular().fit(graph, user_features=features)
    graph.add_users(["joiner", "stranger"])
    global_top = model.recommend(["joiner"], n=3)[0]
    assert list(global_top.ids) == degree_ranking(G, G.nodes)[:3]
    model.add_profiles(pd.DataFrame({"user_id": ["joiner", "stranger"], "community": [1, 9]}))
    odd = [k for k in G.nodes if k % 2 == 1]
    assert list(model.recommend(["joiner"], n=3)[0].ids) == degree_ranking(G, odd)[:3]
    # A group not seen at fit is unknown: the global ranking.
    assert model.recommend(["stranger"], n=3)[0].ids == global_top.ids
    with pytest.raises(UnknownIdError):
        model.add_profiles(pd.DataFrame({"user_id": ["ghost"], "community": [1]}))


def test_community_popular_needs_its_column() -> None:
    graph = social_graph(G)
    with pytest.raises(ConfigError, match="user_features"):
        CommunityPopular().fit(graph)
    with pytest.raises(DataError, match="community"):
        CommunityPopular().fit(graph, user_features=pd.DataFrame({"user_id": ["n1"]}))


def test_save_load_keeps_online_profiles(tmp_path) -> None:
    graph = social_graph(G)
    features = pd.DataFrame({"user_id": [f"n{k}" for k in G.nodes], "community": "a"})
    features.loc[features.index < 20, "community"] = "b"
    model = CommunityPopular().fit(graph, user_features=features)
    graph.add_users(["joiner"])
    model.add_profiles(pd.DataFrame({"user_id": ["joiner"], "community": ["b"]}))
    before = model.recommend(["joiner", "n3", "n30"], n=4)
    loaded = CommunityPopular.load(model.save(tmp_path / "m"), graph)
    assert loaded.recommend(["joiner", "n3", "n30"], n=4) == before
    assert np.array_equal(loaded.group_, model.group_)
