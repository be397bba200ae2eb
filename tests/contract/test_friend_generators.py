"""The FriendGenerator conformance suite: every registered friend generator runs all of it.

A generator takes part once :data:`CASES` says how to fit it (a name with no entry is
skipped, not failed, so a new generator can register before its entry is written). The graph
carries pending requests and blocks, set both at build time (``kind`` column) and online
(``add_edges``); what must never be suggested is computed here from those lists, not read
back from the graph.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recfunnel.candidates.friends import (
    FRIEND_GENERATORS,
    load_friend_generator,
    make_friend_generator,
)
from recfunnel.core.errors import ConfigError, NotFittedError, UnknownIdError
from recfunnel.core.friends import NOT_A_CANDIDATE, FriendGenerator
from recfunnel.core.graph import SocialGraph
from recfunnel.core.ids import IdIndex
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.core.topk import topk
from recfunnel.data.synthetic import SyntheticGenerator

DATA = SyntheticGenerator(
    n_users=150, n_items=80, n_interactions=1200, social=True, avg_degree=6
).generate(seed=3)
PROFILE_COLUMNS = ["user_id", "age_group", "country", "community"]


def _interactions() -> InteractionMatrix:
    # Users in another order than the graph's, and a few graph users with no engagement:
    # generators must align by id.
    inter = DATA.interactions
    inter = inter[~inter["user_id"].isin(["u0", "u1", "u2"])]
    order = sorted(inter["user_id"].unique(), key=lambda u: u[::-1])
    return InteractionMatrix.from_arrays(
        inter["user_id"].to_numpy(),
        inter["item_id"].to_numpy(),
        users=IdIndex(order),
    )


@dataclass(frozen=True)
class Case:
    """How to run one generator through the suite."""

    #: Keyword arguments of ``fit`` beyond the graph.
    fit: Callable[[], dict[str, Any]] = dict
    #: Constructor parameters (small, fast settings).
    params: dict[str, Any] = field(default_factory=dict)
    #: Reads the graph at request time: a new friendship changes the next answer.
    graph_based: bool = False
    #: Caches other users' vectors between ``refresh()`` calls (embedding models): only the
    #: querying user's own vector follows online edges at once.
    caches_vectors: bool = False
    #: How a user who joined online becomes servable: "friend" (a friendship is enough),
    #: "anyone" (served with no data at all), "profile" (``add_profiles``), None (cannot be).
    new_user: str | None = "friend"


CASES: dict[str, Case] = {
    "mutual_friends": Case(graph_based=True),
    "adamic_adar": Case(graph_based=True),
    "jaccard": Case(graph_based=True),
    "ppr": Case(params={"eps": 1e-4}, graph_based=True),
    "popular_users": Case(new_user="anyone"),
    "community_popular": Case(
        fit=lambda: {"user_features": DATA.users[PROFILE_COLUMNS]}, new_user="anyone"
    ),
    "profile_similarity": Case(
        fit=lambda: {"user_features": DATA.users[PROFILE_COLUMNS]},
        params={"categorical": ["age_group", "country", "community"]},
        new_user="profile",
    ),
    "co_engagement": Case(fit=lambda: {"interactions": _interactions()}, new_user=None),
    "graphsage": Case(
        fit=lambda: {"user_features": DATA.users[PROFILE_COLUMNS]},
        params={"categorical": ["age_group", "country", "community"], "max_epochs": 3, "dim": 16},
        new_user="profile",
        caches_vectors=True,
    ),
}


# ---- the graph: friendships, requests and blocks ----------------------------------------
def _pairs() -> tuple[set[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """Friendships (both orders), and requests and blocks among non-friends, chosen among
    friends of friends and towards the best-connected users so that every kind of generator
    would suggest some of them."""
    edges = DATA.edges
    friends = set(zip(edges["src_user_id"], edges["dst_user_id"], strict=True))
    users = DATA.users["user_id"].tolist()
    adj: dict[str, set[str]] = {u: set() for u in users}
    for a, b in friends:
        adj[a].add(b)
    fof = sorted(
        (u, w)
        for u in users
        for v in adj[u]
        for w in adj[v]
        if w != u and w not in adj[u] and u < w
    )
    hubs = sorted(users, key=lambda u: (-len(adj[u]), u))[:6]
    rng = np.random.default_rng(0)
    chosen: set[frozenset[str]] = set()
    picked: list[tuple[str, str]] = []
    candidates = [fof[k] for k in rng.permutation(len(fof))[:120]]
    candidates += [(u, h) for u in rng.choice(users, 40, replace=False) for h in hubs[:2]]
    for u, w in candidates:
        key = frozenset((u, w))
        if u == w or w in adj[u] or key in chosen:
            continue
        chosen.add(key)
        picked.append((u, w) if rng.random() < 0.5 else (w, u))
    half = len(picked) // 2
    return friends, picked[:half], picked[half:]


FRIENDS, REQUESTS, BLOCKS = _pairs()
USERS = DATA.users["user_id"].tolist()


def make_graph() -> SocialGraph:
    extra = pd.DataFrame(
        {
            "src_user_id": [a for a, _ in REQUESTS + BLOCKS],
            "dst_user_id": [b for _, b in REQUESTS + BLOCKS],
            "timestamp": 1.7e9,
            "kind": ["connect"] * len(REQUESTS) + ["block"] * len(BLOCKS),
        }
    )
    edges = pd.concat([DATA.edges.assign(kind="connect"), extra], ignore_index=True)
    return SocialGraph.from_edges(edges, users=USERS)


def banned(friends: set[tuple[str, str]], others: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Per user: themself, friends, and both ends of every request or block."""
    out = {u: {u} for u in USERS}
    for a, b in list(friends) + others:
        out.setdefault(a, {a}).add(b)
        out.setdefault(b, {b}).add(a)
    return out


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture(params=sorted(FRIEND_GENERATORS))
def name(request: pytest.FixtureRequest) -> str:
    if request.param not in CASES:
        pytest.skip(f"no conformance entry for {request.param!r} in CASES")
    return str(request.param)


def fit(name: str, graph: SocialGraph | None = None) -> FriendGenerator:
    case = CASES[name]
    graph = make_graph() if graph is None else graph
    return make_friend_generator(name, **case.params).fit(graph, **case.fit())


@pytest.fixture
def fitted(name: str) -> FriendGenerator:
    return fit(name)


def recs(model: FriendGenerator, n: int = 10, users: list[str] = USERS) -> list[tuple[str, ...]]:
    return [r.ids for r in model.recommend(users, n=n)]


# ---- the suite ----------------------------------------------------------------------------
def test_params_round_trip(name: str) -> None:
    model = make_friend_generator(name, **CASES[name].params)
    clone = type(model)(**model.get_params())
    assert clone.get_params() == model.get_params()
    assert type(model).name == name
    with pytest.raises(ConfigError, match="no parameter"):
        model.set_params(not_a_parameter=1)
    with pytest.raises(ConfigError):
        make_friend_generator(name, not_a_parameter=1)


def test_not_fitted(name: str) -> None:
    with pytest.raises(NotFittedError, match="no graph"):
        make_friend_generator(name).recommend(["u0"], n=3)


def test_deterministic(name: str, fitted: FriendGenerator) -> None:
    first = fitted.recommend(USERS, n=10)
    assert fitted.recommend(USERS, n=10) == first
    assert fit(name).recommend(USERS, n=10) == first
    assert sum(len(r) for r in first) > 0


def test_never_suggests_self_friends_requests_or_blocks(fitted: FriendGenerator) -> None:
    ban = banned(FRIENDS, REQUESTS + BLOCKS)
    for uid, ids in zip(USERS, recs(fitted, n=30), strict=True):
        assert not ban[uid] & set(ids), uid
    # The test bites: unfiltered, the generator would have suggested requested or blocked users.
    graph = fitted.graph_
    raw = fitted._candidates(graph.encode(USERS), 30 + 40)
    hidden = 0
    for r, uid in enumerate(USERS):
        ids = set(graph.decode(raw.index[raw.indptr[r] : raw.indptr[r + 1]]).tolist())
        hidden += len(ids & (ban[uid] - {uid}))
    assert hidden > 0
    # Extra per-request exclusions are honoured too.
    first = fitted.recommend(USERS[:20], n=5)
    again = fitted.recommend(USERS[:20], n=5, exclude=[r.ids[:2] for r in first])
    for a, b in zip(first, again, strict=True):
        assert not set(a.ids[:2]) & set(b.ids)


def test_exclusions_added_online(fitted: FriendGenerator) -> None:
    graph = fitted.graph_
    before = dict(zip(USERS, recs(fitted, n=10), strict=True))
    users = [u for u in USERS if len(before[u]) >= 3][:15]
    assert users
    src, dst, kinds = [], [], []
    for u in users:
        first, second, third = before[u][:3]
        src += [u, second, third]  # u asks first; second blocks u; third asks u ...
        dst += [first, u, u]
        kinds += ["connect", "block", "connect"]
    graph.add_edges(src, dst, kinds)
    graph.add_edges(users, [before[u][2] for u in users])  # ... and u accepts: friends
    after = dict(zip(users, recs(fitted, n=10, users=users), strict=True))
    for u in users:
        assert not set(before[u][:3]) & set(after[u]), u


def test_n_respected_and_scores_sorted(fitted: FriendGenerator) -> None:
    lists = fitted.recommend(USERS, n=5)
    assert any(len(r) == 5 for r in lists)
    for r in lists:
        assert len(r) <= 5
        assert len(set(r.ids)) == len(r.ids)
        assert list(r.scores) == sorted(r.scores, reverse=True)
        assert all(np.isfinite(r.scores))
    with pytest.raises(ConfigError, match="positive"):
        fitted.recommend(USERS[:1], n=0)


def test_batch_equals_singles(fitted: FriendGenerator) -> None:
    batch = fitted.recommend(USERS[:8], n=6)
    for uid, rec in zip(USERS[:8], batch, strict=True):
        assert fitted.recommend([uid], n=6)[0] == rec


def test_unknown_user(fitted: FriendGenerator) -> None:
    with pytest.raises(UnknownIdError, match="ghost"):
        fitted.recommend(["ghost"], n=3)


def test_save_load_round_trip(name: str, fitted: FriendGenerator, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "model")
    loaded = load_friend_generator(path, fitted.graph_)
    assert type(loaded) is type(fitted)
    # (Parameters travel as JSON: a tuple comes back a list.)
    assert json.loads(json.dumps(loaded.get_params())) == json.loads(
        json.dumps(fitted.get_params())
    )
    assert loaded.recommend(USERS, n=10) == fitted.recommend(USERS, n=10)
    # Loading onto a fresh copy of the graph serves the same too.
    again = type(fitted).load(path, make_graph())
    assert again.recommend(USERS, n=10) == fitted.recommend(USERS, n=10)


def test_new_friendship_changes_suggestions_without_refit(name: str) -> None:
    if not CASES[name].graph_based:
        pytest.skip(f"{name} learns at fit")
    model = fit(name)
    graph = model.graph_
    adj = graph.adjacency()
    two_hop = (adj @ adj + adj).tocsr()
    deg = np.diff(adj.indptr)
    u = int(np.flatnonzero(deg >= 2)[0])
    far = [w for w in np.flatnonzero(deg >= 3).tolist() if w != u and two_hop[u, w] == 0]
    ban = banned(FRIENDS, REQUESTS + BLOCKS)
    uid = graph.decode([u])[0]
    far = [w for w in far if graph.decode([w])[0] not in ban[uid]]
    w = far[0]
    wid = graph.decode([w])[0]
    before = model.recommend([uid], n=200)[0]
    graph.add_edges([uid, wid], [wid, uid])  # a request answered: friends
    after = model.recommend([uid], n=200)[0]
    assert after != before
    assert wid not in after.ids
    # w's friends now share a friend with u (or receive more of u's walk): they score higher.
    old = dict(zip(before.ids, before.scores, strict=True))
    new = dict(zip(after.ids, after.scores, strict=True))
    gained = [x for x in graph.decode(graph.neighbors(w)).tolist() if x in new]
    assert gained
    assert all(new[x] > old.get(x, -np.inf) for x in gained)


def test_overlay_serves_like_the_compacted_graph(name: str) -> None:
    model = fit(name)
    graph = model.graph_
    rng = np.random.default_rng(5)
    a = rng.choice(USERS, 40).tolist()
    b = rng.choice(USERS, 40).tolist()
    graph.add_edges(a + b, b + a)  # 40 friendships (or requests answered)
    gone = sorted(FRIENDS)[::15]
    graph.remove_edges([x for x, _ in gone], [y for _, y in gone])  # unfriend some
    graph.add_edges(["late1", "late2", "u5"], ["u5", "u5", "late1"])  # users who joined
    users = [*USERS, "late1", "late2"]
    if CASES[name].caches_vectors:
        model.refresh()  # type: ignore[attr-defined]  # the documented staleness policy
    online = model.recommend(users, n=10)
    assert model.attach(graph.compact()).recommend(users, n=10) == online


def test_new_user_online(name: str, fitted: FriendGenerator) -> None:
    case = CASES[name]
    graph = fitted.graph_
    friend = USERS[int(np.argmax(graph.degree(graph.encode(USERS))))]
    graph.add_edges(["newbie", friend], [friend, "newbie"])
    if case.new_user == "profile":
        profile = DATA.users[PROFILE_COLUMNS].iloc[[0]].assign(user_id="newbie")
        fitted.add_profiles(profile)  # type: ignore[attr-defined]
    rec = fitted.recommend(["newbie"], n=5)[0]
    if case.new_user is None:
        assert rec.ids == ()
        return
    assert len(rec) > 0
    assert friend not in rec.ids and "newbie" not in rec.ids
    if case.new_user == "anyone":
        graph.add_users(["loner"])
        assert len(fitted.recommend(["loner"], n=5)[0]) > 0


def test_score_users_for_the_harness(fitted: FriendGenerator) -> None:
    graph = fitted.graph_
    users = graph.encode(USERS[:30])
    dense = fitted.score_users(users)
    assert dense.shape == (len(users), graph.n_users)
    assert dense.dtype == np.float32
    own = np.zeros(dense.shape, dtype=bool)
    own[np.arange(len(users)), users] = True
    assert np.isfinite(dense[~own]).all() and (dense[own] == -np.inf).all()
    # Masking the exclusions and ranking the dense scores gives the candidates' ranking.
    masked = np.where(graph.excluded_rows(users).toarray() > 0, -np.inf, dense)
    idx, val = topk(masked, 10)
    cand = fitted.candidates(users, 10)
    for r in range(len(users)):
        mine = idx[r][val[r] > NOT_A_CANDIDATE]
        np.testing.assert_array_equal(mine, cand.index[cand.indptr[r] : cand.indptr[r + 1]])
