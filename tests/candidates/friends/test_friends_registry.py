"""The friend-generator registry: names, lazy classes, checked construction, loading."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import recfunnel.candidates.friends as friends
from recfunnel.candidates.friends import (
    FRIEND_GENERATORS,
    friend_generator_named,
    load_friend_generator,
    make_friend_generator,
)
from recfunnel.core.errors import ArtifactError, ConfigError
from recfunnel.core.graph import SocialGraph

OURS = {
    "mutual_friends": "MutualFriends",
    "adamic_adar": "AdamicAdar",
    "jaccard": "Jaccard",
    "ppr": "PersonalizedPageRank",
    "popular_users": "PopularUsers",
    "community_popular": "CommunityPopular",
    "profile_similarity": "ProfileSimilarity",
    "co_engagement": "CoEngagement",
}


def test_names_and_classes() -> None:
    assert set(OURS) <= set(FRIEND_GENERATORS)
    for name, cls_name in OURS.items():
        cls = friend_generator_named(name)
        assert cls.__name__ == cls_name and cls.name == name
        assert getattr(friends, cls_name) is cls
    assert friend_generator_named(" PPR ").name == "ppr"


def test_unknown_names_and_parameters() -> None:
    with pytest.raises(ConfigError, match=r"unknown friend generator 'nope'; available: .*ppr"):
        make_friend_generator("nope")
    with pytest.raises(ConfigError, match=r"no parameter\(s\) \['k'\]"):
        make_friend_generator("jaccard", k=3)
    with pytest.raises(AttributeError):
        friends.NotAGenerator  # noqa: B018


def test_load_by_manifest(tmp_path) -> None:
    edges = pd.DataFrame({"src_user_id": list("abc"), "dst_user_id": list("bcd")})
    graph = SocialGraph.from_edges(edges, mutual=False)
    path = make_friend_generator("adamic_adar", max_neighbors=7).fit(graph).save(tmp_path / "m")
    loaded = load_friend_generator(path, graph)
    assert loaded.get_params() == {"max_neighbors": 7}
    assert loaded.recommend(["a"], n=2)[0].ids == ("c",)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["model"] = "nope"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="unknown friend generator kind"):
        load_friend_generator(path, graph)
