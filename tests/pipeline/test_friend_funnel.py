"""The friend funnel: beats its best source out of sample, persists, serves new members."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recfunnel.core.errors import ConfigError
from recfunnel.core.graph import SocialGraph
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.data.synthetic import SyntheticGenerator
from recfunnel.pipeline.friend_funnel import FriendFunnel
from recfunnel.pipeline.link_prediction import evaluate_link_prediction, temporal_edge_split

SOURCES = [
    ["mutual_friends", 60],
    ["adamic_adar", 30],
    ["ppr", 40],
    ["community_popular", 20],
    ["profile_similarity", 20],
]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, SocialGraph, InteractionMatrix]:
    d = SyntheticGenerator(
        n_users=3000, n_items=300, n_interactions=30_000, social=True, seed=3
    ).generate()
    g = SocialGraph.from_edges(d.edges, users=d.users["user_id"].tolist())
    return d.users, g, InteractionMatrix.from_dataset(d)


@pytest.fixture(scope="module")
def fitted(data: tuple[pd.DataFrame, SocialGraph, InteractionMatrix]) -> FriendFunnel:
    users, graph, inter = data
    split = temporal_edge_split(graph)
    return FriendFunnel(sources=SOURCES, seed=1).fit(
        split.train, user_features=users, interactions=inter
    )


def test_features_are_named_and_the_ranker_learned(fitted: FriendFunnel) -> None:
    names = fitted.feature_names_
    for expected in (
        "ppr_score",
        "ppr_rank",
        "n_sources",
        "mutual_friends",
        "adamic_adar",
        "jaccard",
        "candidate_reciprocity",
        "same_community",
        "co_engagement",
        "same_country",
        "interests_jaccard",
        "candidate_activity",
    ):
        assert expected in names
    assert fitted.training_rows_ > 1000
    assert fitted.ranker_.best_iteration_ >= 1


def test_funnel_at_least_matches_its_sources(
    data: tuple[pd.DataFrame, SocialGraph, InteractionMatrix],
) -> None:
    users, graph, inter = data
    split = temporal_edge_split(graph)
    from recfunnel.pipeline.link_prediction import make_friend_models

    models = make_friend_models(
        ["adamic_adar", "friend_funnel"], {"friend_funnel": {"sources": SOURCES, "seed": 1}}
    )
    run = evaluate_link_prediction(
        models, split, user_features=users, interactions=inter, ks=(10,), n_bootstrap=200
    )
    m = run.report.to_dict()["models"]
    funnel, aa = m["friend_funnel"]["metrics"]["ndcg@10"], m["adamic_adar"]["metrics"]["ndcg@10"]
    # Out of sample the ranker must not lose to a single one of its inputs by more than noise.
    assert funnel > 0.95 * aa, (funnel, aa)


def test_never_suggests_friends_self_or_blocked(fitted: FriendFunnel) -> None:
    g = fitted.graph_
    user = g.decode([int(np.argmax(g.degree()))])[0]
    got = fitted.recommend([user], 50)[0].ids
    friends = set(g.decode(g.neighbors(int(g.encode([user])[0]))).tolist())
    assert user not in got and not friends & set(got)
    victim = got[0]
    g.add_edges([user], [victim], kinds=["block"])
    try:
        assert victim not in fitted.recommend([user], 50)[0].ids
    finally:
        g.remove_edges([user], [victim])


def test_save_load_gives_identical_suggestions(
    fitted: FriendFunnel,
    data: tuple[pd.DataFrame, SocialGraph, InteractionMatrix],
    tmp_path: Path,
) -> None:
    users, _, inter = data
    ids = fitted.graph_.decode(np.arange(0, 3000, 300)).tolist()
    before = fitted.recommend(ids, 10)
    path = fitted.save(tmp_path / "friends")
    loaded = FriendFunnel.load(path, fitted.graph_, user_features=users, interactions=inter)
    after = loaded.recommend(ids, 10)
    assert [b.ids for b in before] == [a.ids for a in after]
    np.testing.assert_allclose([b.scores for b in before], [a.scores for a in after], rtol=1e-5)


def test_a_new_member_with_a_profile_gets_suggestions_from_their_community(
    fitted: FriendFunnel,
    data: tuple[pd.DataFrame, SocialGraph, InteractionMatrix],
) -> None:
    users, _, _ = data
    g = fitted.graph_
    template = users.iloc[7].to_dict()
    profile = pd.DataFrame([{**template, "user_id": "newcomer"}])
    g.add_users(["newcomer"])
    fitted.add_profiles(profile)
    got = fitted.recommend(["newcomer"], 10)[0].ids
    assert len(got) == 10
    community = users.set_index("user_id")["community"]
    share = np.mean([community[u] == template["community"] for u in got])
    assert share >= 0.5  # the population share of one community is about 0.1
    # A first friendship arrives: friends of that friend now lead, without refitting.
    friend = got[0]
    g.add_edges(["newcomer", friend], [friend, "newcomer"])
    after = fitted.recommend(["newcomer"], 10)[0].ids
    assert friend not in after
    fof = set(g.decode(g.neighbors(int(g.encode([friend])[0]))).tolist()) - {"newcomer"}
    assert fof & set(after[:5])


def test_diversity_spreads_suggestions_over_communities(fitted: FriendFunnel) -> None:
    g = fitted.graph_
    users = g.decode(np.arange(50, 250, 10)).tolist()
    plain = fitted.recommend(users, 10)
    fitted.set_params(diversity=0.6)
    try:
        mixed = fitted.recommend(users, 10)
    finally:
        fitted.set_params(diversity=0.0)

    def communities(lists: list) -> float:
        c = fitted.community_
        return float(np.mean([len({c[i] for i in g.encode(lst.ids)}) for lst in lists]))

    assert communities(mixed) > communities(plain)


def test_bad_configuration_is_refused(fitted: FriendFunnel) -> None:
    with pytest.raises(ConfigError, match="quota"):
        FriendFunnel(sources=[["ppr", 0]]).fit(fitted.graph_)
    with pytest.raises(ConfigError, match="diversity"):
        FriendFunnel(diversity=1.5).fit(fitted.graph_)
