"""The funnel with a social graph: friends_items retrieval and friend-engagement ranker features
(``features.friend_engagement``), the graph re-attached after load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recfunnel.candidates import make_generator
from recfunnel.core.errors import ConfigError, NotFittedError
from recfunnel.core.graph import SocialGraph
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.data.synthetic import SyntheticGenerator
from recfunnel.features import FriendEngagement
from recfunnel.pipeline.funnel import Funnel
from recfunnel.pipeline.funnel_config import FunnelConfig

DATA = SyntheticGenerator(
    n_users=150, n_items=80, n_interactions=2500, social=True, avg_degree=6
).generate(seed=4)


def _config(friend_engagement: bool = True) -> FunnelConfig:
    doc: dict[str, Any] = {
        "funnel": {"n": 5},
        "retrieval": {
            "generators": [
                {"model": "friends_items", "quota": 8},
                {"model": "itemknn", "quota": 8, "params": {"k": 20}},
            ]
        },
        "features": {"friend_engagement": friend_engagement},
        "light": {"model": "lightgbm", "keep": 6,
                  "params": {"n_estimators": 10, "min_child_samples": 5}},
        "training": {"label_fraction": 0.3},
    }  # fmt: skip
    return FunnelConfig.from_dict(doc, source="test.toml")


@pytest.fixture(scope="module")
def graph() -> SocialGraph:
    return SocialGraph.from_edges(DATA.edges, users=DATA.users.user_id.tolist())


@pytest.fixture(scope="module")
def data() -> InteractionMatrix:
    return InteractionMatrix.from_dataset(DATA)


@pytest.fixture(scope="module")
def funnel(data: InteractionMatrix, graph: SocialGraph) -> Funnel:
    return Funnel(_config()).fit(data, graph=graph)


def test_the_flag_adds_friend_engagement_features(funnel: Funnel, data: InteractionMatrix) -> None:
    assert funnel.features_ is not None
    step = funnel.features_.named_steps["friends"]
    assert isinstance(step, FriendEngagement)
    assert {"friends.friends_engaged", "friends.friends_engaged_share"} <= set(
        funnel.features_.raw_dense_names_
    )
    # Refreshed on every training interaction after the rankers were trained.
    assert len(step.engagers_indices_) == data.to_csr().nnz
    assert FunnelConfig().friend_engagement is False  # off by default
    for flag in (True, False):
        assert FunnelConfig.from_dict(_config(flag).to_dict()).friend_engagement is flag


def test_friends_items_retrieval_gets_the_graph(
    funnel: Funnel, data: InteractionMatrix, graph: SocialGraph
) -> None:
    users = data.users.ids[:20].tolist()
    trace = funnel.recommend_traced(users, 5)
    alone = make_generator("friends_items").fit(data, graph=graph).recommend(users, 8)
    for got, want in zip(trace.lists["retrieval"], alone, strict=True):
        # friends_items comes first in the merge; its positive scores lead the list.
        positive = [i for i, s in zip(want.ids, want.scores, strict=True) if s > 0]
        assert list(got.ids[: len(positive)]) == positive


def test_a_flag_without_graph_is_a_located_error(data: InteractionMatrix) -> None:
    with pytest.raises(ConfigError, match=r"test\.toml: features\.friend_engagement: .*graph"):
        Funnel(_config()).fit(data)
    with pytest.raises(ConfigError, match="expected true or false"):
        FunnelConfig.from_dict(
            {"retrieval": {"generators": [{"model": "pop", "quota": 3}]},
             "features": {"friend_engagement": "yes"}}
        )  # fmt: skip


def test_save_load_then_attach_graph(
    funnel: Funnel, data: InteractionMatrix, graph: SocialGraph, tmp_path: Path
) -> None:
    users = data.users.ids[:15].tolist()
    want = funnel.recommend(users)
    loaded = Funnel.load(funnel.save(tmp_path / "funnel"))
    assert loaded.config.friend_engagement
    with pytest.raises(NotFittedError, match="attach_graph"):
        loaded.recommend(users)
    assert loaded.attach_graph(graph).recommend(users) == want
