"""FriendEngagement: known answers on a tiny graph, a brute-force reference on synthetic social
data, online friendships, and a save / load round trip that needs the graph attached again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recfunnel.core.errors import ConfigError, NotFittedError
from recfunnel.core.graph import SocialGraph
from recfunnel.data.synthetic import SyntheticGenerator
from recfunnel.features import FeaturePipeline, FriendEngagement, RetrievalFeatures


def tiny() -> tuple[SocialGraph, pd.DataFrame]:
    """Friendships a-b, a-c, a-d, b-c; e in the graph alone; engagements below (b twice on x)."""
    edges = pd.DataFrame({"src_user_id": ["a", "a", "a", "b"], "dst_user_id": ["b", "c", "d", "c"]})
    graph = SocialGraph.from_edges(edges, users=list("abcde"), mutual=False)
    events = pd.DataFrame(
        {
            "user_id": ["b", "b", "b", "c", "c", "d", "a", "zed"],
            "item_id": ["x", "x", "y", "x", "z", "q", "y", "x"],
        }
    )
    return graph, events


ROWS = pd.DataFrame(
    {
        "user_id": ["a", "a", "a", "b", "c", "e", "zed", "a"],
        "item_id": ["x", "y", "z", "y", "y", "x", "x", "unknown"],
    }
)


def test_known_answers() -> None:
    graph, events = tiny()
    block = FriendEngagement().attach_graph(graph).fit(ROWS, events).transform(ROWS)
    assert block.dense_names == ("friends_engaged", "friends_engaged_share")
    count = block.dense[:, 0].tolist()
    share = block.dense[:, 1].astype(float).round(6).tolist()
    # a (3 friends): x by b and c (b's two events count once), y by b, z by c; b (friends a, c):
    # y by a; c (friends a, b): y by a and b; e has no friend; zed is not in the graph;
    # an item absent from the log counts 0.
    assert count == [2.0, 1.0, 1.0, 1.0, 2.0, 0.0, 0.0, 0.0]
    assert share == [round(2 / 3, 6), round(1 / 3, 6), round(1 / 3, 6), 0.5, 1.0, 0.0, 0.0, 0.0]


def test_matches_brute_force_on_synthetic_social_data() -> None:
    data = SyntheticGenerator(
        n_users=100, n_items=50, n_interactions=1000, social=True, avg_degree=5
    ).generate(seed=2)
    graph = SocialGraph.from_edges(data.edges, users=data.users.user_id.tolist())
    events = data.interactions[["user_id", "item_id"]]
    rng = np.random.default_rng(0)
    rows = pd.DataFrame(
        {
            "user_id": rng.choice(data.users.user_id.to_numpy(), 400),
            "item_id": rng.choice(data.items.item_id.to_numpy(), 400),
        }
    )
    out = FriendEngagement().attach_graph(graph).fit(rows, events).transform(rows).dense
    friends: dict[str, set[str]] = {}
    for s, d in zip(data.edges["src_user_id"], data.edges["dst_user_id"], strict=True):
        friends.setdefault(s, set()).add(d)
        friends.setdefault(d, set()).add(s)
    engagers = events.groupby("item_id")["user_id"].agg(set).to_dict()
    for k, (u, i) in enumerate(zip(rows["user_id"], rows["item_id"], strict=True)):
        mine = friends.get(u, set())
        n = len(mine & engagers.get(i, set()))
        assert out[k, 0] == n
        assert out[k, 1] == pytest.approx(n / len(mine) if mine else 0.0)
    assert out[:, 0].max() > 0


def test_an_online_friendship_counts_at_once() -> None:
    graph, events = tiny()
    step = FriendEngagement().attach_graph(graph).fit(ROWS, events)
    rows = pd.DataFrame({"user_id": ["e", "zed"], "item_id": ["x", "y"]})
    assert step.transform(rows).dense.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    graph.add_edges(["e", "zed"], ["b", "b"])  # e and zed (joining the graph) befriend b
    graph.add_edges(["b", "b"], ["e", "zed"])
    assert step.transform(rows).dense.tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_save_load_needs_the_graph(tmp_path: Path) -> None:
    graph, events = tiny()
    frame = ROWS.assign(score_pop=np.arange(len(ROWS), dtype=float))
    pipe = FeaturePipeline(
        [("ret", RetrievalFeatures()), ("friends", FriendEngagement().attach_graph(graph))],
        normalize=False,
    ).fit(frame, events)
    want = pipe.transform(frame)
    loaded = FeaturePipeline.load(pipe.save(tmp_path / "pipe"))
    with pytest.raises(NotFittedError, match="attach_graph"):
        loaded.transform(frame)
    step = loaded.named_steps["friends"]
    assert isinstance(step, FriendEngagement)
    step.attach_graph(graph)
    got = loaded.transform(frame)
    assert got.dense_names == want.dense_names
    np.testing.assert_array_equal(got.dense, want.dense)


def test_needs_the_event_log() -> None:
    graph, _ = tiny()
    with pytest.raises(ConfigError, match="event log"):
        FriendEngagement().attach_graph(graph).fit(ROWS)
    with pytest.raises(NotFittedError, match="not fitted"):
        FriendEngagement().attach_graph(graph).transform(ROWS)
