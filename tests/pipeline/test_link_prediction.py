"""Temporal edge split and link-prediction evaluation: no leakage, new members, known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recfunnel.core.errors import ConfigError
from recfunnel.core.graph import SocialGraph
from recfunnel.data.synthetic import SyntheticGenerator
from recfunnel.pipeline.link_prediction import (
    evaluate_link_prediction,
    make_friend_models,
    temporal_edge_split,
)


def both(pairs: list[tuple[str, str, float]]) -> pd.DataFrame:
    rows = [(a, b, t) for a, b, t in pairs] + [(b, a, t) for a, b, t in pairs]
    return pd.DataFrame(rows, columns=["src_user_id", "dst_user_id", "timestamp"])


@pytest.fixture(scope="module")
def graph() -> SocialGraph:
    data = SyntheticGenerator(
        n_users=1500, n_items=100, n_interactions=7500, social=True, seed=4
    ).generate()
    return SocialGraph.from_edges(data.edges, users=data.users["user_id"].tolist())


def test_train_holds_only_the_past_and_test_only_the_future(graph: SocialGraph) -> None:
    split = temporal_edge_split(graph, test_fraction=0.25)
    _, _, t_train = split.train.friendship_pairs()
    assert (t_train < split.cutoff).all()
    assert (split.test.timestamp >= split.cutoff).all()
    # Every test pair is new (not a training friendship) and joins two warm users.
    train = split.train.adjacency()
    assert train[split.test.user, split.test.item].sum() == 0
    deg = split.train.degree()
    assert (deg[split.test.user] > 0).all() and (deg[split.test.item] > 0).all()
    # A quarter of the friendships (by the quantile, ties aside) lie at or after the cut-off.
    _, _, t = graph.friendship_pairs()
    assert abs((t >= split.cutoff).mean() - 0.25) < 0.01


def test_new_members_have_no_past_and_reveal_their_first_edges_in_time_order() -> None:
    edges = both(
        [
            ("a", "b", 1),
            ("b", "c", 2),
            ("c", "a", 3),
            ("n", "a", 10),
            ("n", "b", 11),
            ("n", "c", 12),
            ("a", "d", 13),
        ]
    )
    g = SocialGraph.from_edges(edges)
    split = temporal_edge_split(g, cutoff=5.0)
    assert sorted(g.decode(split.new_members).tolist()) == ["d", "n"]
    g1, targets, members = split.new_member_graph(1)
    assert g.decode(members).tolist() == ["n"]  # d has one edge only: nothing left to predict
    n = int(g.encode(["n"])[0])
    assert g1.decode(g1.neighbors(n)).tolist() == ["a"]  # its first edge, by time
    assert sorted(g.decode(targets.item).tolist()) == ["b", "c"]
    g0, targets0, _ = split.new_member_graph(0)
    assert len(g0.neighbors(n)) == 0 and len(targets0) == 4  # n: a, b, c; d: a


def test_friendships_without_times_are_refused() -> None:
    g = SocialGraph.from_edges(both([("a", "b", np.nan), ("b", "c", 1.0)]))
    with pytest.raises(ConfigError, match="no timestamp"):
        temporal_edge_split(g)


def test_known_answer_on_a_tiny_graph() -> None:
    # Past: a-b, b-c. Future: a-c (c is a's only friend-of-friend: rank 1 for mutual friends).
    g = SocialGraph.from_edges(both([("a", "b", 1), ("b", "c", 2), ("c", "d", 2.5), ("a", "c", 9)]))
    split = temporal_edge_split(g, cutoff=5.0)
    run = evaluate_link_prediction(
        make_friend_models(["mutual_friends"]),
        split,
        ks=(1,),
        metrics=("hit", "mrr"),
        n_bootstrap=50,
    )
    means = run.report.to_dict()["models"]["mutual_friends"]["metrics"]
    # a's candidates: c (via b). c's candidates: a (via b) — both predicted first.
    assert means == {"hit@1": 1.0, "mrr@1": 1.0}


def test_graph_heuristics_beat_popularity_on_synthetic_data(graph: SocialGraph) -> None:
    split = temporal_edge_split(graph)
    run = evaluate_link_prediction(
        make_friend_models(["popular_users", "adamic_adar"]), split, ks=(10,), n_bootstrap=200
    )
    doc = run.report.to_dict()
    pop = doc["models"]["popular_users"]["ci95"]["ndcg@10"]
    aa = doc["models"]["adamic_adar"]["ci95"]["ndcg@10"]
    assert aa[0] > pop[1]  # CIs apart
