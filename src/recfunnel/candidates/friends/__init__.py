"""Friend generators ("people you may know"), one per module, and the registry that names them.

| name               | source                                         | needs at fit        |
|--------------------|------------------------------------------------|---------------------|
| mutual_friends     | friends of friends by number of mutual friends | graph               |
| adamic_adar        | friends of friends, mutual friends 1/log(deg)  | graph               |
| jaccard            | friends of friends, mutual / union of friends  | graph               |
| ppr                | personalised PageRank by local push            | graph               |
| popular_users      | most-connected users overall                   | graph               |
| community_popular  | most-connected users of the user's community   | user_features       |
| profile_similarity | nearest profiles (one-hot + multi-valued)      | user_features       |
| co_engagement      | users who engaged with the same items          | interactions        |
| graphsage          | inductive GNN: profiles + sampled neighbours   | user_features       |

The graph heuristics read the graph at request time (``graph.rows``), so online friendships
count at once; the others learn their arrays at fit. The registry maps a name to
``"module:Class"`` and imports lazily.

>>> make_friend_generator("ppr", eps=1e-4)
PersonalizedPageRank(alpha=0.15, eps=0.0001)
>>> friend_generator_named("mutual_friends").__name__
'MutualFriends'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from recfunnel.core.errors import ArtifactError
from recfunnel.core.friends import FriendGenerator, read_manifest
from recfunnel.core.graph import SocialGraph
from recfunnel.core.registry import class_named, construct, resolve

#: Registry name -> "module:Class". Artefacts name their kind here; nothing is imported by a
#: path that a file supplies.
FRIEND_GENERATORS: dict[str, str] = {
    "mutual_friends": "recfunnel.candidates.friends.mutual:MutualFriends",
    "adamic_adar": "recfunnel.candidates.friends.adamic_adar:AdamicAdar",
    "jaccard": "recfunnel.candidates.friends.jaccard:Jaccard",
    "ppr": "recfunnel.candidates.friends.ppr:PersonalizedPageRank",
    "popular_users": "recfunnel.candidates.friends.popular:PopularUsers",
    "community_popular": "recfunnel.candidates.friends.community:CommunityPopular",
    "profile_similarity": "recfunnel.candidates.friends.profile:ProfileSimilarity",
    "co_engagement": "recfunnel.candidates.friends.co_engagement:CoEngagement",
    "graphsage": "recfunnel.candidates.friends.graphsage:GraphSAGE",
}


def friend_generator_named(name: str) -> type[FriendGenerator]:
    """The class registered under ``name``."""
    cls: type[FriendGenerator] = resolve(FRIEND_GENERATORS, name, "friend generator")
    return cls


def make_friend_generator(name: str, **params: Any) -> FriendGenerator:
    """A new, unfitted friend generator by registry name (unknown parameters refused)."""
    generator: FriendGenerator = construct(friend_generator_named(name), params)
    return generator


def load_friend_generator(path: str | os.PathLike[str], graph: SocialGraph) -> FriendGenerator:
    """Load a saved friend generator of any registered kind and attach ``graph``."""
    manifest = read_manifest(path)
    kind = manifest.get("model", "")
    if kind not in FRIEND_GENERATORS:
        raise ArtifactError(f"{path}: unknown friend generator kind {kind!r}")
    return friend_generator_named(kind).load(Path(path), graph)


def __getattr__(name: str) -> Any:
    # `from recfunnel.candidates.friends import AdamicAdar` without eager imports.
    return class_named(FRIEND_GENERATORS, name)


__all__ = [
    "FRIEND_GENERATORS",
    "friend_generator_named",
    "load_friend_generator",
    "make_friend_generator",
]
