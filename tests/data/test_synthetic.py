"""The synthetic generator: determinism, schema, and the structure it promises to plant."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recfunnel.core.errors import ConfigError
from recfunnel.core.schema import INTERACTION_COLUMNS, Dataset
from recfunnel.data.synthetic import SyntheticGenerator


def _t(table: pd.DataFrame | None) -> pd.DataFrame:
    assert table is not None
    return table


def _index(ids: pd.Series) -> np.ndarray:
    """``"u17"`` -> 17: row k of every ground-truth array is id k."""
    return ids.str.slice(1).astype(np.int64).to_numpy()


@pytest.fixture(scope="module")
def default() -> tuple[SyntheticGenerator, Dataset]:
    gen = SyntheticGenerator()
    return gen, gen.generate()


@pytest.fixture(scope="module")
def social() -> tuple[SyntheticGenerator, Dataset]:
    gen = SyntheticGenerator(n_users=3_000, n_items=500, n_interactions=15_000, social=True)
    return gen, gen.generate(seed=3)


@pytest.fixture(scope="module")
def social_graph(social: tuple[SyntheticGenerator, Dataset]) -> sp.csr_matrix:
    gen, data = social
    assert data.edges is not None
    src, dst = _index(data.edges["src_user_id"]), _index(data.edges["dst_user_id"])
    n = gen.n_users
    return sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))


# ---- determinism -----------------------------------------------------------------------------
def test_same_seed_gives_identical_frames() -> None:
    kwargs: dict[str, Any] = {
        "n_users": 300,
        "n_items": 200,
        "n_interactions": 6_000,
        "social": True,
    }
    a = SyntheticGenerator(**kwargs, seed=5).generate()
    b = SyntheticGenerator(**kwargs).generate(seed=5)  # generate(seed) overrides the parameter
    for name in ("interactions", "users", "items", "edges"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


def test_different_seeds_give_different_data() -> None:
    gen = SyntheticGenerator(n_users=300, n_items=200, n_interactions=6_000, social=True)
    a, b = gen.generate(seed=1), gen.generate(seed=2)
    assert not a.interactions.equals(b.interactions)
    assert not _t(a.items).equals(_t(b.items))
    assert not _t(a.edges).equals(_t(b.edges))


def test_social_graph_does_not_change_the_interactions() -> None:
    kwargs: dict[str, Any] = {"n_users": 200, "n_items": 100, "n_interactions": 2_000}
    plain = SyntheticGenerator(**kwargs).generate()
    with_graph = SyntheticGenerator(**kwargs, social=True).generate()
    pd.testing.assert_frame_equal(plain.interactions, with_graph.interactions)


# ---- schema and counts -------------------------------------------------------------------------
def test_counts_columns_and_dtypes(default: tuple[SyntheticGenerator, Dataset]) -> None:
    gen, data = default
    inter = data.interactions
    assert len(inter) == gen.n_interactions == int(gen.user_activity_.sum())
    assert tuple(inter.columns) == INTERACTION_COLUMNS
    assert len(_t(data.users)) == gen.n_users and len(_t(data.items)) == gen.n_items
    assert data.edges is None
    for col in ("user_id", "item_id", "event_type"):
        assert pd.api.types.is_string_dtype(inter[col])
    assert inter["value"].dtype == np.float64 and inter["timestamp"].dtype == np.float64
    user_columns = "user_id age_group country community interests activity".split()
    assert _t(data.users).columns.tolist() == user_columns
    assert pd.api.types.is_string_dtype(_t(data.users)["interests"])
    assert _t(data.users)["activity"].dtype == np.int64
    item_columns = "item_id created_at expires_at category genres year price".split()
    assert _t(data.items).columns.tolist() == item_columns
    assert _t(data.users)["user_id"].tolist()[:3] == ["u0", "u1", "u2"]
    assert _t(data.items)["item_id"].iloc[-1] == f"i{gen.n_items - 1}"
    assert set(inter["user_id"]) <= set(_t(data.users)["user_id"])
    assert set(inter["item_id"]) <= set(_t(data.items)["item_id"])
    # Ground truth: one row per id.
    d = gen.n_factors
    assert gen.user_factors_.shape == (gen.n_users, d)
    assert gen.item_factors_.shape == (gen.n_items, d)
    assert gen.category_factors_.shape == (gen.n_categories, d)
    assert np.isclose(gen.item_popularity_.sum(), 1.0)
    np.testing.assert_array_equal(_t(data.users)["community"].to_numpy(), gen.community_)


def test_rows_are_ordered_by_user_then_time(default: tuple[SyntheticGenerator, Dataset]) -> None:
    _, data = default
    u = _index(data.interactions["user_id"])
    t = data.interactions["timestamp"].to_numpy()
    assert (np.diff(u) >= 0).all()
    assert (np.diff(t)[np.diff(u) == 0] >= 0).all()


def test_no_duplicate_user_item_pairs(default: tuple[SyntheticGenerator, Dataset]) -> None:
    _, data = default
    assert not data.interactions.duplicated(["user_id", "item_id"]).any()


def test_activity_is_heavy_tailed(default: tuple[SyntheticGenerator, Dataset]) -> None:
    gen, data = default
    counts = data.interactions["user_id"].value_counts()
    assert counts.min() >= gen.min_activity
    assert counts.max() > 8 * counts.median()
    planted = pd.Series(gen.user_activity_, index=_t(data.users)["user_id"])
    pd.testing.assert_series_equal(
        counts.sort_index(), planted.sort_index(), check_names=False, check_index_type=False
    )


# ---- the planted structure -----------------------------------------------------------------------
def test_popularity_is_heavy_tailed(default: tuple[SyntheticGenerator, Dataset]) -> None:
    gen, data = default
    counts = np.sort(data.interactions["item_id"].value_counts().to_numpy())[::-1]
    top = counts[: gen.n_items // 10].sum() / counts.sum()
    assert top > 0.4
    # And it follows the planted popularity: the 10 % most popular items by construction lead.
    planted = np.argsort(-gen.item_popularity_)[: gen.n_items // 10]
    observed = np.bincount(_index(data.interactions["item_id"]), minlength=gen.n_items)
    assert observed[planted].sum() / observed.sum() > 0.3


def test_choices_favour_high_affinity(default: tuple[SyntheticGenerator, Dataset]) -> None:
    gen, data = default
    u, i = _index(data.interactions["user_id"]), _index(data.interactions["item_id"])
    chosen = gen.affinity(u, i).mean()
    rng = np.random.default_rng(0)
    random_pairs = gen.affinity(
        rng.integers(0, gen.n_users, 50_000), rng.integers(0, gen.n_items, 50_000)
    ).mean()
    assert abs(random_pairs) < 0.1  # affinity is ~ N(0, 1) over random pairs
    assert chosen > random_pairs + 0.8
    # Each user's choices beat the same popular items shown to a random user.
    shuffled = gen.affinity(rng.permutation(u), i).mean()
    assert chosen > shuffled + 0.5


def test_exact_path_matches_pool_path_roughly() -> None:
    kwargs: dict[str, Any] = {"n_users": 400, "n_items": 300, "n_interactions": 8_000}
    pool = SyntheticGenerator(**kwargs)
    exact = SyntheticGenerator(**kwargs, oversample=1e6)  # every user scored over the catalogue
    means = []
    for gen in (pool, exact):
        inter = gen.generate().interactions
        means.append(gen.affinity(_index(inter["user_id"]), _index(inter["item_id"])).mean())
    assert means[0] == pytest.approx(means[1], abs=0.3)


def test_ratings_and_events_follow_affinity(default: tuple[SyntheticGenerator, Dataset]) -> None:
    gen, data = default
    inter = data.interactions
    aff = gen.affinity(_index(inter["user_id"]), _index(inter["item_id"]))
    rating_share = inter["value"].value_counts(normalize=True).sort_index()
    assert rating_share.index.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    np.testing.assert_allclose(rating_share.to_numpy(), gen.rating_dist, atol=0.01)
    by_rating = pd.Series(aff).groupby(inter["value"].to_numpy()).mean().to_numpy()
    assert (np.diff(by_rating) > 0).all()
    mix = dict(gen.event_mix)
    event_share = inter["event_type"].value_counts(normalize=True)
    assert set(event_share.index) == set(mix)
    for name, share in mix.items():
        assert event_share[name] == pytest.approx(share, abs=0.01)
    by_event = pd.Series(aff).groupby(inter["event_type"].to_numpy()).mean()
    assert by_event["view"] < by_event["click"] < by_event["purchase"]


def test_timestamps_lie_within_item_lifetimes(default: tuple[SyntheticGenerator, Dataset]) -> None:
    gen, data = default
    items = _t(data.items).set_index("item_id")
    ts = data.interactions["timestamp"].to_numpy()
    created = items.loc[data.interactions["item_id"], "created_at"].to_numpy()
    expires = items.loc[data.interactions["item_id"], "expires_at"].to_numpy()
    assert ((gen.start <= ts) & (ts < gen.end)).all()
    assert (ts >= created).all()
    ephemeral = ~np.isnan(expires)
    assert ephemeral.any() and (ts[ephemeral] < expires[ephemeral]).all()
    assert (ts == np.floor(ts)).all()
    share = items["expires_at"].notna().mean()
    assert share == pytest.approx(gen.ephemeral_fraction, abs=0.05)
    lifetimes = (items["expires_at"] - items["created_at"]).dropna()
    np.testing.assert_allclose(lifetimes.to_numpy(), gen.ttl)


def test_side_features(default: tuple[SyntheticGenerator, Dataset]) -> None:
    gen, data = default
    items, users = _t(data.items), _t(data.users)
    genres = items["genres"].str.split("|")
    assert genres.map(len).between(1, 3).all()
    assert genres.map(lambda g: len(set(g)) == len(g)).all()
    assert set(genres.explode()) <= {f"g{j}" for j in range(gen.n_genres)}
    assert (items["year"] <= pd.to_datetime(items["created_at"], unit="s").dt.year).all()
    assert (items["price"] > 0).all()
    assert set(users["age_group"]) <= {"18-24", "25-34", "35-44", "45-54", "55-64", "65+"}
    # The category is the latent cluster: an item's factor is closest to its own category's mean.
    category = _index(items["category"])
    np.testing.assert_array_equal(category, gen.item_category_)
    nearest = np.argmax(gen.item_factors_ @ gen.category_factors_.T, axis=1)
    assert (nearest == category).mean() > 0.5  # chance is about 1 / n_categories
    # Country carries community information: within a community one country dominates.
    top_country = pd.crosstab(users["community"], users["country"]).max(axis=1).sum()
    assert top_country / len(users) > 0.5


def _jaccard(a: pd.Series, b: pd.Series) -> np.ndarray:
    sets = [(set(x.split("|")), set(y.split("|"))) for x, y in zip(a, b, strict=True)]
    return np.array([len(x & y) / len(x | y) for x, y in sets])


def test_user_interests_and_activity(social: tuple[SyntheticGenerator, Dataset]) -> None:
    gen, data = social
    users = _t(data.users)
    interests = users["interests"].str.split("|")
    assert interests.map(len).between(1, 4).all()
    assert interests.map(lambda g: len(set(g)) == len(g)).all()
    assert set(interests.explode()) <= {f"g{j}" for j in range(gen.n_genres)}  # items' names
    # Activity is the planted number of interactions, which the log holds exactly.
    np.testing.assert_array_equal(users["activity"].to_numpy(), gen.user_activity_)
    per_user = data.interactions["user_id"].value_counts()
    assert per_user.reindex(users["user_id"]).fillna(0).astype(np.int64).tolist() == (
        users["activity"].tolist()
    )
    # Interests follow the user factor: the genre whose prototype is best aligned with it is
    # among the user's interests far more often than chance (about 2.2 of 18 genres).
    best = np.argmax(gen.user_factors_ @ gen.genre_factors_.T, axis=1)
    hit = [f"g{b}" in g for b, g in zip(best, interests, strict=True)]
    assert np.mean(hit) > 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_small_graph_is_homophilous_and_interests_tell_communities(seed: int) -> None:
    gen = SyntheticGenerator(n_users=400, n_items=100, n_interactions=2_000, social=True)
    data = gen.generate(seed=seed)
    users, edges = _t(data.users), _t(data.edges)
    community = users["community"].to_numpy()
    src, dst = _index(edges["src_user_id"]), _index(edges["dst_user_id"])
    # Friendships: far more within a community than random pairing gives (sum of squared
    # community shares).
    within = (community[src] == community[dst]).mean()
    random_pairing = ((np.bincount(community) / len(community)) ** 2).sum()
    assert within > 0.6 and within > 2 * random_pairing
    # Interests: two users of one community share more of them than two of different ones,
    # and friends share more than random pairs.
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(users), (2, 20_000))
    a, b = a[a != b], b[a != b]
    overlap = _jaccard(users["interests"].iloc[a], users["interests"].iloc[b])
    same = community[a] == community[b]
    assert overlap[same].mean() > 1.8 * overlap[~same].mean()
    friends = _jaccard(users["interests"].iloc[src], users["interests"].iloc[dst])
    assert friends.mean() > 1.3 * overlap.mean()


# ---- social graph --------------------------------------------------------------------------------
def test_social_edges_are_clean_and_symmetric(
    social: tuple[SyntheticGenerator, Dataset], social_graph: sp.csr_matrix
) -> None:
    gen, data = social
    edges = data.edges
    assert edges is not None
    assert edges.columns.tolist() == ["src_user_id", "dst_user_id", "timestamp"]
    assert not (edges["src_user_id"] == edges["dst_user_id"]).any()
    assert not edges.duplicated(["src_user_id", "dst_user_id"]).any()
    assert (social_graph != social_graph.T).nnz == 0  # two directed rows per friendship
    assert len(edges) == 2 * round(gen.n_users * gen.avg_degree / 2)
    ts = edges["timestamp"].to_numpy()
    assert ((gen.start <= ts) & (ts < gen.end)).all()
    # Both rows of a friendship carry the same time.
    key = edges.set_index(["src_user_id", "dst_user_id"])["timestamp"]
    reverse = key.reindex(list(zip(edges["dst_user_id"], edges["src_user_id"], strict=True)))
    np.testing.assert_array_equal(reverse.to_numpy(), ts)


def test_social_homophily(social: tuple[SyntheticGenerator, Dataset]) -> None:
    gen, data = social
    assert data.edges is not None
    src, dst = _index(data.edges["src_user_id"]), _index(data.edges["dst_user_id"])
    within = (gen.community_[src] == gen.community_[dst]).mean()
    baseline = ((np.bincount(gen.community_) / gen.n_users) ** 2).sum()  # random pairs
    assert within > 0.6 and within > 3 * baseline


def _transitivity(a: sp.csr_matrix) -> float:
    deg = np.asarray(a.sum(axis=1)).ravel()
    closed = (a @ a).multiply(a).sum()  # trace(A^3): 6 x triangles
    return float(closed / (deg * (deg - 1)).sum())


def test_social_triadic_closure(social_graph: sp.csr_matrix) -> None:
    n = social_graph.shape[0]
    erdos_renyi = social_graph.sum() / n / (n - 1)  # its expected clustering at the same density
    assert _transitivity(social_graph) > 10 * erdos_renyi


def test_triadic_closure_parameter_adds_triangles() -> None:
    clustering = []
    for closure in (0.0, 0.6):
        gen = SyntheticGenerator(
            n_users=3_000, n_items=100, n_interactions=15_000, social=True, triadic_closure=closure
        )
        edges = gen.generate().edges
        assert edges is not None
        src, dst = _index(edges["src_user_id"]), _index(edges["dst_user_id"])
        a = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(3_000, 3_000))
        clustering.append(_transitivity(a))
    assert clustering[1] > 1.4 * clustering[0]


def test_social_degrees_are_power_law_ish(social_graph: sp.csr_matrix) -> None:
    deg = np.asarray(social_graph.sum(axis=1)).ravel()
    assert deg.max() > 8 * deg.mean()
    assert np.median(deg) < deg.mean()  # right-skewed


# ---- scale, progress, validation ---------------------------------------------------------------
def test_large_catalogue_never_forms_the_full_matrix() -> None:
    # 2,000 users x 300,000 items would be 4.8 GB of float64 scores: the pool path avoids it.
    gen = SyntheticGenerator(n_users=2_000, n_items=300_000, n_interactions=40_000)
    data = gen.generate()
    assert len(data.interactions) == 40_000
    assert not data.interactions.duplicated(["user_id", "item_id"]).any()


def test_heavy_users_use_the_exact_path() -> None:
    # Users needing most of a tiny catalogue: pools would be larger than the catalogue.
    gen = SyntheticGenerator(n_users=20, n_items=30, n_interactions=500, min_activity=10)
    data = gen.generate()
    assert len(data.interactions) == 500
    assert data.interactions["user_id"].value_counts().max() <= 30
    assert not data.interactions.duplicated(["user_id", "item_id"]).any()


def test_pools_short_of_distinct_items_fall_back_to_the_exact_path() -> None:
    # So steep a popularity that pools repeat the same few items: most users fall back.
    gen = SyntheticGenerator(
        n_users=300, n_items=2_000, n_interactions=6_000, popularity_exponent=2.5
    )
    inter = gen.generate().interactions
    np.testing.assert_array_equal(
        inter["user_id"].value_counts().sort_index().to_numpy(),
        pd.Series(gen.user_activity_, index=[f"u{k}" for k in range(300)]).sort_index().to_numpy(),
    )
    assert not inter.duplicated(["user_id", "item_id"]).any()


def test_chunking_covers_every_user() -> None:
    gen = SyntheticGenerator(n_users=500, n_items=300, n_interactions=10_000, chunk_size=700)
    data = gen.generate()
    counts = data.interactions["user_id"].value_counts()
    assert len(counts) == 500 and counts.sum() == 10_000


def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    SyntheticGenerator(n_users=50, n_items=40, n_interactions=500, progress=True).generate()
    assert "50/50" in capsys.readouterr().err
    SyntheticGenerator(n_users=50, n_items=40, n_interactions=500).generate()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "params",
    [
        {"n_users": 0},
        {"n_interactions": 10},  # below n_users * min_activity
        {"n_users": 10, "n_items": 5, "n_interactions": 60},  # above n_users * n_items
        {"temperature": 0.0},
        {"oversample": 0.5},
        {"ephemeral_fraction": 1.5},
        {"end": 0.0},
        {"rating_dist": (0.5, 0.5)},
        {"event_mix": {"view": -1.0}},
        {"social": True, "degree_exponent": 2.0},
        {"social": True, "avg_degree": 5_000.0},
    ],
)
def test_invalid_parameters_raise_config_error(params: dict[str, Any]) -> None:
    gen = SyntheticGenerator(**params)
    with pytest.raises(ConfigError):
        gen.generate()


def test_parameters_are_stored_unchanged() -> None:
    gen = SyntheticGenerator(n_users=7, temperature=-1.0, event_mix={"view": 1.0})
    assert gen.n_users == 7 and gen.temperature == -1.0 and gen.event_mix == {"view": 1.0}
    assert gen.get_params()["n_users"] == 7
    assert repr(gen).startswith("SyntheticGenerator(n_users=7, n_items=2000")
