"""FriendsItems: known answers on a hand-built graph, a dense reference on synthetic social data,
alignment by id, online friendships and persistence without the graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recfunnel.candidates import load_generator, make_generator
from recfunnel.candidates.social_items import FriendsItems
from recfunnel.core.errors import ConfigError, NotFittedError
from recfunnel.core.graph import SocialGraph
from recfunnel.core.ids import IdIndex
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.data.synthetic import SyntheticGenerator

DAY = 86_400.0


def tiny() -> tuple[SocialGraph, InteractionMatrix]:
    """a - b, a - c, b - d friendships; e is in the graph with no friend; f is not in it.

    Engagements (user: item@day): b: x@0, y@1, y@3 (twice y); c: y@2, z@4; d: x@4; a: w@0;
    e: x@1; f: z@2. The interactions' user index is in another order than the graph's.
    """
    edges = pd.DataFrame(
        {"src_user_id": ["a", "a", "b"], "dst_user_id": ["b", "c", "d"], "timestamp": 1.0}
    )
    graph = SocialGraph.from_edges(edges, users=list("abcde"), mutual=False)
    users = ["b", "b", "b", "c", "c", "d", "a", "e", "f"]
    items = ["x", "y", "y", "y", "z", "x", "w", "x", "z"]
    days = [0, 1, 3, 2, 4, 4, 0, 1, 2]
    m = InteractionMatrix.from_arrays(
        users,
        items,
        timestamp=np.array(days, float) * DAY,
        users=IdIndex(list("fedcba")),
        items=IdIndex(list("wxyz"), kind="item"),
    )
    return graph, m


def scores_of(model: FriendsItems, m: InteractionMatrix, user: str) -> dict[str, float]:
    row = model.score_users(m.users.encode([user]))[0]
    return dict(zip(m.items.ids.tolist(), row.tolist(), strict=True))


def test_known_answers_uniform_count() -> None:
    graph, m = tiny()
    model = FriendsItems().fit(m, graph=graph)
    # a's friends b and c: x by b; y by b and c; z by c.
    assert scores_of(model, m, "a") == {"w": 0.0, "x": 1.0, "y": 2.0, "z": 1.0}
    # b's friends a and d: w by a, x by d.
    assert scores_of(model, m, "b") == {"w": 1.0, "x": 1.0, "y": 0.0, "z": 0.0}
    # e is in the graph without friends; f has no graph row: all-zero rows.
    assert not model.score_users(m.users.encode(["e", "f"])).any()
    rec = model.recommend(["a"], n=3)[0]
    assert rec.ids == ("y", "x", "z") and rec.scores == (2.0, 1.0, 1.0)


def test_known_answers_activity_weighting_and_degree_norm() -> None:
    graph, m = tiny()
    model = FriendsItems(friend_weighting="activity", degree_norm=True).fit(m, graph=graph)
    wb, wc = 1 / np.log(2 + 2), 1 / np.log(2 + 2)  # b and c engaged with 2 distinct items each
    norm = 1 / np.log(1 + 2)  # a has two friends
    got = scores_of(model, m, "a")
    np.testing.assert_allclose(
        [got["w"], got["x"], got["y"], got["z"]],
        [0.0, wb * norm, (wb + wc) * norm, wc * norm],
        rtol=1e-6,
    )


def test_known_answers_time_decay_uses_the_latest_engagement() -> None:
    graph, m = tiny()
    model = FriendsItems(half_life=2 * DAY).fit(m, graph=graph)
    t_max = 4.0  # days
    decay = lambda day: 0.5 ** ((t_max - day) / 2.0)  # noqa: E731
    got = scores_of(model, m, "a")
    # x: b@0; y: b's latest (day 3) + c@2; z: c@4.
    np.testing.assert_allclose(
        [got["w"], got["x"], got["y"], got["z"]],
        [0.0, decay(0), decay(3) + decay(2), decay(4)],
        rtol=1e-6,
    )


def test_matches_a_dense_reference_on_synthetic_social_data() -> None:
    data = SyntheticGenerator(
        n_users=120, n_items=60, n_interactions=1500, social=True, avg_degree=6
    ).generate(seed=5)
    graph = SocialGraph.from_edges(data.edges, users=data.users.user_id.tolist())
    inter = data.interactions
    inter = inter[~inter["user_id"].isin(["u0", "u1"])]  # graph users without engagement
    m = InteractionMatrix.from_arrays(inter["user_id"].to_numpy(), inter["item_id"].to_numpy())
    model = FriendsItems(friend_weighting="activity").fit(m, graph=graph)
    # Reference: dense friendship and engagement tables built straight from the data frames.
    users = m.users.ids.tolist()
    pos = {u: k for k, u in enumerate(users)}
    friend = np.zeros((len(users), len(users)))
    for s, d in zip(data.edges["src_user_id"], data.edges["dst_user_id"], strict=True):
        if s in pos and d in pos:
            friend[pos[s], pos[d]] = friend[pos[d], pos[s]] = 1.0
    engaged = np.zeros((len(users), m.n_items))
    engaged[m.user, m.item] = 1.0
    weight = 1.0 / np.log(2.0 + engaged.sum(axis=1))
    expected = friend @ (weight[:, None] * engaged)
    got = model.score_users(np.arange(m.n_users))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert (got.sum(axis=1) > 0).mean() > 0.9  # nearly everyone has an engaged friend


def test_similar_items_is_cosine_over_interactions() -> None:
    graph, m = tiny()
    model = FriendsItems().fit(m, graph=graph)
    x = m.to_csr().toarray()
    norms = np.sqrt(x.sum(axis=0))
    cosine = (x.T @ x) / np.outer(norms, norms)
    np.testing.assert_allclose(model._score_similar(np.arange(m.n_items)), cosine, rtol=1e-6)
    assert model.similar_items(["x"], n=1)[0].ids == ("y",)


def test_an_online_friendship_changes_the_next_answer_without_refit() -> None:
    graph, m = tiny()
    model = FriendsItems().fit(m, graph=graph)
    assert not model.score_users(m.users.encode(["e"])).any()
    graph.add_edges(["e", "d"], ["d", "e"])  # a request and its acceptance: friends
    assert scores_of(model, m, "e")["x"] == 1.0
    # f had no graph row at fit; joining the graph later makes it servable.
    graph.add_edges(["f", "c"], ["c", "f"])
    assert scores_of(model, m, "f") == {"w": 0.0, "x": 0.0, "y": 1.0, "z": 1.0}
    graph.remove_edges(["f"], ["c"])
    assert not model.score_users(m.users.encode(["f"])).any()


def test_load_needs_the_graph_again(tmp_path: Path) -> None:
    graph, m = tiny()
    model = make_generator("friends_items", half_life=DAY).fit(m, graph=graph)
    loaded = load_generator(model.save(tmp_path / "m"))
    with pytest.raises(NotFittedError, match="attach_graph"):
        loaded.recommend(["a"], n=2)
    assert loaded.similar_items(["x"], n=2) == model.similar_items(["x"], n=2)
    assert isinstance(loaded, FriendsItems)
    loaded.attach_graph(graph)
    users = m.users.ids.tolist()
    assert loaded.recommend(users, n=3) == model.recommend(users, n=3)


def test_bad_inputs_are_refused() -> None:
    graph, m = tiny()
    with pytest.raises(ConfigError, match="needs the social graph"):
        FriendsItems().fit(m)
    with pytest.raises(ConfigError, match="friend_weighting"):
        FriendsItems(friend_weighting="pagerank").fit(m, graph=graph)
    with pytest.raises(ConfigError, match="half_life"):
        FriendsItems(half_life=0.0).fit(m, graph=graph)
    undated = InteractionMatrix.from_arrays(["a", "b"], ["x", "y"])
    with pytest.raises(ConfigError, match="timestamp"):
        FriendsItems(half_life=DAY).fit(undated, graph=graph)
