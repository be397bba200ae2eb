"""GraphSAGE friend suggestions: accuracy on a temporal split, determinism, inductive
suggestions for new members, online staleness, persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recfunnel.candidates.friends._profile_encoding import ProfileEncoder
from recfunnel.candidates.friends.graphsage import GraphSAGE, sample_blocks, sample_neighbours
from recfunnel.core.errors import ConfigError, NotFittedError
from recfunnel.core.graph import SocialGraph
from recfunnel.data.synthetic import SyntheticGenerator

PROFILE = ["age_group", "country", "community", "interests", "activity"]
FAST: dict[str, Any] = {"max_epochs": 10, "seed": 0}


def _graph(ids: np.ndarray, a: np.ndarray, b: np.ndarray, t: np.ndarray) -> SocialGraph:
    edges = pd.DataFrame(
        {
            "src_user_id": ids[np.r_[a, b]],
            "dst_user_id": ids[np.r_[b, a]],
            "timestamp": np.r_[t, t],
        }
    )
    return SocialGraph.from_edges(edges, users=ids.tolist())


class Split:
    """Friendships before the 80th time percentile train; later ones between users who
    have training friends are the targets."""

    def __init__(self, seed: int) -> None:
        data = SyntheticGenerator(
            n_users=2000, n_items=200, n_interactions=20000, social=True
        ).generate(seed=seed)
        assert data.users is not None and data.edges is not None
        self.users = data.users[[c for c in ["user_id", *PROFILE] if c in data.users.columns]]
        ids = self.users["user_id"].astype(str).to_numpy()
        full = SocialGraph.from_edges(data.edges, users=ids.tolist())
        a, b, t = full.friendship_pairs()
        before = t < np.quantile(t, 0.8)
        self.train = _graph(ids, a[before], b[before], t[before])
        deg = self.train.degree()
        later = ~before & (deg[a] > 0) & (deg[b] > 0)
        self.truth: dict[int, set[int]] = {}
        for x, y in zip(np.r_[a[later], b[later]], np.r_[b[later], a[later]], strict=True):
            self.truth.setdefault(int(x), set()).add(int(y))
        self.community = data.users["community"].to_numpy()

    def params(self) -> dict[str, Any]:
        categorical = [c for c in ("age_group", "country", "community") if c in self.users]
        return {"categorical": categorical}

    def metrics(self, top: dict[int, np.ndarray], k: int = 10) -> tuple[float, float]:
        """Mean Recall@k and NDCG@k over users with targets."""
        recall, ndcg = [], []
        for u, truth in self.truth.items():
            rel = np.isin(top[u][:k], list(truth)).astype(float)
            recall.append(rel.sum() / len(truth))
            dcg = (rel / np.log2(np.arange(2, len(rel) + 2))).sum()
            ideal = (1.0 / np.log2(np.arange(2, min(k, len(truth)) + 2))).sum()
            ndcg.append(dcg / ideal)
        return float(np.mean(recall)), float(np.mean(ndcg))


def _top(model: GraphSAGE, users: list[int], k: int = 10) -> dict[int, np.ndarray]:
    cand = model.candidates(np.asarray(users), k)
    return {u: cand.index[cand.indptr[r] : cand.indptr[r + 1]] for r, u in enumerate(users)}


def _most_connected(graph: SocialGraph, users: list[int], k: int = 10) -> dict[int, np.ndarray]:
    """The popularity baseline: highest degree first, the user and their friends excluded."""
    order = np.lexsort((np.arange(graph.n_users), -graph.degree()))
    out = {}
    for u in users:
        banned = set(graph.neighbors(u).tolist()) | {u}
        out[u] = np.asarray([v for v in order[: k + len(banned)] if v not in banned][:k])
    return out


@pytest.fixture(scope="module")
def split() -> Split:
    return Split(seed=0)


@pytest.fixture(scope="module")
def fitted(split: Split) -> GraphSAGE:
    return GraphSAGE(**FAST, **split.params()).fit(split.train, user_features=split.users)


def test_beats_popularity_on_future_friendships(split: Split, fitted: GraphSAGE) -> None:
    users = sorted(split.truth)
    sage_recall, sage_ndcg = split.metrics(_top(fitted, users))
    pop_recall, pop_ndcg = split.metrics(_most_connected(split.train, users))
    # Measured at seed 0: GraphSAGE 0.150 / 0.112, most-connected 0.071 / 0.047.
    assert sage_recall > 1.6 * pop_recall
    assert sage_ndcg > 1.6 * pop_ndcg
    assert sage_recall > 0.12


def test_vectors_are_unit_and_the_whole_neighbourhood_is_used(fitted: GraphSAGE) -> None:
    emb = fitted.user_embeddings_
    assert emb.dtype == np.float32 and emb.shape == (fitted.graph_.n_users, fitted.dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # The layer-wise pass over the whole graph and the per-user pass agree.
    rows = np.array([0, 5, 17, 1999])
    np.testing.assert_allclose(fitted.embed(rows), emb[rows], atol=1e-5)


def test_same_seed_same_model_other_seed_other_model(split: Split) -> None:
    params = {"max_epochs": 2, "max_batches": 4, **split.params()}
    a = GraphSAGE(seed=3, **params).fit(split.train, user_features=split.users)
    b = GraphSAGE(seed=3, **params).fit(split.train, user_features=split.users)
    c = GraphSAGE(seed=4, **params).fit(split.train, user_features=split.users)
    np.testing.assert_array_equal(a.user_embeddings_, b.user_embeddings_)
    assert a.recommend(["u1", "u2"], n=10) == b.recommend(["u1", "u2"], n=10)
    assert not np.array_equal(a.user_embeddings_, c.user_embeddings_)


def _copy(graph: SocialGraph) -> SocialGraph:
    return _graph(graph.user_ids(), *graph.friendship_pairs())


def test_new_member_gets_community_suggestions_without_retraining(
    fitted: GraphSAGE, split: Split, tmp_path: Path
) -> None:
    graph = _copy(split.train)  # the served graph, grown in place as members join
    model = GraphSAGE.load(fitted.save(tmp_path / "sage"), graph)
    before = {k: v.clone() for k, v in model.weights_.items()}
    # A member of the largest community joins: the profile of a random member under a new
    # id, and two friendships with members of that community.
    rng = np.random.default_rng(1)
    target = int(np.bincount(split.community).argmax())
    members = np.flatnonzero((split.community == target) & (graph.degree() > 0))
    profile = split.users.iloc[[int(rng.choice(members))]].assign(user_id="newcomer")
    friends = graph.decode(rng.choice(members, size=2, replace=False)).tolist()
    graph.add_edges(
        ["newcomer", friends[0], "newcomer", friends[1]],
        [friends[0], "newcomer", friends[1], "newcomer"],
    )
    model.add_profiles(profile)
    suggested = model.recommend(["newcomer"], n=10)[0].ids
    assert len(suggested) == 10 and not set(suggested) & set(friends)
    share = float(np.mean(split.community[graph.encode(suggested)] == target))
    base_rate = float(np.mean(split.community == target))
    assert share >= 0.7 > base_rate + 0.3
    # Nothing was retrained; the newcomer is in the index: others can be suggested them.
    for name, w in model.weights_.items():
        assert np.array_equal(w.numpy(), before[name].numpy())
    assert str(graph.encode(["newcomer"])[0]) in model.index_
    assert len(model.user_embeddings_) == graph.n_users


def test_vectors_go_stale_with_new_friends_and_refresh(
    fitted: GraphSAGE, split: Split, tmp_path: Path
) -> None:
    graph = _copy(split.train)
    model = GraphSAGE.load(fitted.save(tmp_path / "sage"), graph)
    u, v = 10, 1500
    stored = model.user_embeddings_[u].copy()
    ids = graph.decode([u, v]).tolist()
    graph.add_edges(ids, ids[::-1])
    fresh = model.embed([u])[0]
    assert not np.allclose(fresh, stored)
    # Queries use the fresh vector at once; the stored one waits for refresh().
    np.testing.assert_allclose(model._query_vectors(np.array([u]))[0], fresh, atol=1e-6)
    np.testing.assert_array_equal(model.user_embeddings_[u], stored)
    model.refresh()
    np.testing.assert_allclose(model.user_embeddings_[u], fresh, atol=1e-5)
    # A profile edit makes the user's vector stale too.
    edited = split.users.iloc[[u]].assign(age_group="never seen", interests="knitting")
    model.add_profiles(edited)
    assert not np.allclose(model._query_vectors(np.array([u]))[0], fresh)
    np.testing.assert_allclose(model._query_vectors(np.array([u]))[0], model.embed([u])[0])


def test_save_load_gives_identical_recommendations(
    fitted: GraphSAGE, split: Split, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "sage")
    with np.load(tmp_path / "sage" / "arrays.npz", allow_pickle=False) as arrays:
        assert "encoder.vocab0" in arrays.files and arrays["encoder.vocab0"].dtype.kind == "U"
    loaded = GraphSAGE.load(tmp_path / "sage", split.train)
    ids = ["u0", "u1", "u7", "u42", "u1999"]
    assert loaded.recommend(ids, n=20) == fitted.recommend(ids, n=20)
    np.testing.assert_array_equal(loaded.user_embeddings_, fitted.user_embeddings_)
    # A graph that differs from the one the vectors were computed on refreshes them.
    other = _copy(split.train)
    other.add_edges(["u0", "u1"], ["u1", "u0"])
    reloaded = GraphSAGE.load(tmp_path / "sage", other)
    np.testing.assert_allclose(reloaded.user_embeddings_[0], reloaded.embed([0])[0], atol=1e-5)


def test_attention_aggregator_margin_loss_and_hnsw_index() -> None:
    data = SyntheticGenerator(n_users=300, n_items=50, n_interactions=3000, social=True).generate(
        seed=2
    )
    assert data.users is not None and data.edges is not None
    graph = SocialGraph.from_edges(data.edges, users=data.users["user_id"].tolist())
    params: dict[str, Any] = {
        "aggregator": "attention",
        "loss": "margin",
        "max_epochs": 3,
        "dim": 16,
    }
    model = GraphSAGE(**params).fit(graph, user_features=data.users)
    assert model.history_[-1]["loss"] < model.history_[0]["loss"]
    assert "layer0.attend_self" in model.weights_
    exact = model.recommend(["u3", "u4"], n=5)
    assert [len(r.ids) for r in exact] == [5, 5]
    hnsw = GraphSAGE(**params, index="hnsw").fit(graph, user_features=data.users)
    assert type(hnsw.index_).__name__ == "HNSWIndex"
    assert hnsw.recommend(["u3", "u4"], n=5) == exact  # 300 users: the walk finds them all


def test_early_stopping_keeps_the_best_epoch(split: Split) -> None:
    a, b, t = split.train.friendship_pairs()
    early = t < np.quantile(t, 0.875)
    ids = split.train.user_ids()
    graph = _graph(ids, a[early], b[early], t[early])
    n = graph.n_users
    va, vb = a[~early], b[~early]
    valid = sp.csr_matrix((np.ones(2 * len(va)), (np.r_[va, vb], np.r_[vb, va])), shape=(n, n))
    model = GraphSAGE(max_epochs=12, patience=2, eval_users=300, **split.params()).fit(
        graph, user_features=split.users, valid=valid
    )
    recalls = [h["valid_recall"] for h in model.history_]
    assert all(r is not None for r in recalls)
    assert recalls[model.best_epoch_ - 1] == max(recalls)
    assert len(recalls) == 12 or recalls.index(max(recalls)) == len(recalls) - 3


def test_neighbour_sampling_is_bounded_and_hides_banned_edges() -> None:
    # Star: 0 is friends with 1..20; 1 is also friends with 2.
    rows = np.r_[np.zeros(20, int), np.arange(1, 21), 1, 2]
    cols = np.r_[np.arange(1, 21), np.zeros(20, int), 2, 1]
    adj = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(21, 21))
    indptr, indices = adj.indptr.astype(np.int64), adj.indices.astype(np.int64)
    rng = np.random.default_rng(0)
    ptr, nb = sample_neighbours(indptr, indices, np.array([0, 1]), 5, rng)
    assert ptr.tolist() == [0, 5, 7] and set(nb[:5]) <= set(range(1, 21))
    nodes, blocks = sample_blocks(
        np.array([0, 1]),
        [None, None],
        lambda nd, f: sample_neighbours(indptr, indices, nd, f, rng),
        21,
        hidden=(np.array([0]), np.array([1])),
    )
    hop1 = blocks[0]
    assert nodes[:2].tolist() == [0, 1]
    first = nodes[hop1.sources[hop1.indptr[0] : hop1.indptr[1]]]
    second = nodes[hop1.sources[hop1.indptr[1] : hop1.indptr[2]]]
    assert 1 not in first and sorted(second.tolist()) == [2]


def test_unknown_categories_use_the_reserved_slot() -> None:
    enc = ProfileEncoder(categorical=["community"]).fit(
        pd.DataFrame({"user_id": ["a", "b"], "community": [3, 5], "activity": [1, 100]})
    )
    out = enc.transform(pd.DataFrame({"user_id": ["c", "d"], "community": [5, 9]}))
    assert out.categorical[:, 0].tolist() == [2, 0]
    assert enc.numeric_ == ["activity"] and out.numeric[:, 0].tolist() == [0.0, 0.0]


def test_bad_parameters_and_unfitted_use_are_refused(split: Split) -> None:
    with pytest.raises(ConfigError, match="aggregator"):
        GraphSAGE(aggregator="max").fit(split.train)
    with pytest.raises(ConfigError, match="fanouts"):
        GraphSAGE(fanouts=()).fit(split.train)
    with pytest.raises(NotFittedError):
        GraphSAGE().embed([0])


def test_a_graph_without_friendships_warns_and_still_serves() -> None:
    profiles = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "club": ["x", "y", "x", "y"]})
    empty = pd.DataFrame({"src_user_id": [], "dst_user_id": []})
    with pytest.warns(UserWarning, match="no friendship"):
        model = GraphSAGE(dim=8).fit(
            SocialGraph.from_edges(empty, users=["a", "b", "c", "d"]), user_features=profiles
        )
    assert model.recommend(["a"], n=1)[0].ids == ("c",)  # untrained, but profiles still count
    # A new deployment: no users at all; members join online and are served.
    with pytest.warns(UserWarning, match="no friendship"):
        model = GraphSAGE(dim=8).fit(SocialGraph.from_edges(empty, users=[]))
    assert not hasattr(model, "index_")
    model.graph_.add_edges(["a", "b", "b", "c"], ["b", "a", "c", "b"])
    assert model.recommend(["a"], n=3)[0].ids == ("c",)
