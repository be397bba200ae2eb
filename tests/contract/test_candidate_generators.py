"""The CandidateGenerator conformance suite: every registered generator runs all of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recfunnel.candidates import REGISTRY, load_generator, make_generator
from recfunnel.core.errors import ArtifactError, ConfigError, NotFittedError, UnknownIdError
from recfunnel.core.generator import CandidateGenerator
from recfunnel.core.graph import SocialGraph
from recfunnel.core.matrix import InteractionMatrix

#: Generators that personalise (everything but popularity) must pass the block test.
NOT_PERSONALISED = {"pop"}


def block_data(n_blocks: int = 4, users_per_block: int = 6, items_per_block: int = 5):
    """Users of block b interact with items of block b only, each missing one of them.

    User (b, u) withholds item (b, u % items_per_block): any personalised model must rank the
    withheld items of the user's own block above every item of other blocks.
    """
    users, items, withheld = [], [], {}
    for b in range(n_blocks):
        for u in range(users_per_block):
            uid = f"u{b}_{u}"
            held = f"i{b}_{u % items_per_block}"
            withheld[uid] = held
            for j in range(items_per_block):
                iid = f"i{b}_{j}"
                if iid != held:
                    users.append(uid)
                    items.append(iid)
    # A little global popularity skew so popularity has a unique answer.
    users += ["u0_0", "u1_0"]
    items += ["i3_4", "i3_4"]
    return InteractionMatrix.from_arrays(users, items), withheld


def block_graph(n_blocks: int = 4, users_per_block: int = 6) -> SocialGraph:
    """Friendships between every two users of the same block of :func:`block_data` (and one
    graph user with no interactions): friends share the block's tastes, so a social source
    has the block structure to find."""
    src, dst = [], []
    for b in range(n_blocks):
        for u in range(users_per_block):
            for v in range(u + 1, users_per_block):
                src.append(f"u{b}_{u}")
                dst.append(f"u{b}_{v}")
    src.append("u0_0")
    dst.append("lurker")
    edges = pd.DataFrame({"src_user_id": src, "dst_user_id": dst})
    return SocialGraph.from_edges(edges, mutual=False)


#: Keyword arguments of ``fit`` beyond the interactions, per registry name (default: none).
#: ``graph`` also goes back in through ``attach_graph`` after ``load`` (graphs are data, not
#: part of an artefact).
FIT_KWARGS: dict[str, Callable[[], dict[str, Any]]] = {
    "friends_items": lambda: {"graph": block_graph()},
}


def fit_named(name: str, data: InteractionMatrix) -> CandidateGenerator:
    return make_generator(name).fit(data, **FIT_KWARGS.get(name, dict)())


def load_named(name: str, path: Path) -> CandidateGenerator:
    model = load_generator(path)
    graph = FIT_KWARGS.get(name, dict)().get("graph")
    if graph is not None:
        model.attach_graph(graph)  # type: ignore[attr-defined]
    return model


@pytest.fixture(params=sorted(REGISTRY))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def fitted(name: str) -> tuple[CandidateGenerator, InteractionMatrix, dict[str, str]]:
    data, withheld = block_data()
    return fit_named(name, data), data, withheld


def test_params_round_trip(name: str) -> None:
    model = make_generator(name)
    clone = type(model)(**model.get_params())
    assert clone.get_params() == model.get_params()
    with pytest.raises(ConfigError, match="no parameter"):
        model.set_params(not_a_parameter=1)


def test_not_fitted(name: str) -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        make_generator(name).recommend(["u"], n=3)


def test_empty_fit_rejected(name: str) -> None:
    data, _ = block_data()
    with pytest.raises(ConfigError, match="no interactions"):
        make_generator(name).fit(data.subset(np.zeros(len(data), bool)))


def test_scores_shape_and_determinism(name: str, fitted) -> None:
    model, data, _ = fitted
    s = model.score_users(np.arange(data.n_users))
    assert s.shape == (data.n_users, data.n_items)
    assert np.isfinite(s).all()
    again = fit_named(name, data).score_users(np.arange(data.n_users))
    np.testing.assert_array_equal(s, again)


def test_recommend_excludes_seen_and_is_sorted(fitted) -> None:
    model, data, _ = fitted
    csr = data.to_csr()
    users = data.users.ids.tolist()
    recs = model.recommend(users, n=8)
    assert len(recs) == len(users)
    for uid, rec in zip(users, recs, strict=True):
        seen = set(data.items.decode(csr[data.users.encode([uid])[0]].indices).tolist())
        assert not seen & set(rec.ids)
        assert list(rec.scores) == sorted(rec.scores, reverse=True)
        assert len(set(rec.ids)) == len(rec.ids)
    with_seen = model.recommend(users[:1], n=data.n_items, exclude_seen=False)[0]
    assert len(with_seen) == data.n_items


def test_batch_equals_singles(fitted) -> None:
    model, data, _ = fitted
    users = data.users.ids.tolist()[:5]
    batch = model.recommend(users, n=4)
    for uid, rec in zip(users, batch, strict=True):
        assert model.recommend([uid], n=4)[0] == rec


def test_n_larger_than_catalog_and_bad_n(fitted) -> None:
    model, data, _ = fitted
    rec = model.recommend(["u0_0"], n=1000)[0]
    seen = data.to_csr()[data.users.encode(["u0_0"])[0]].nnz
    assert len(rec) == data.n_items - seen
    with pytest.raises(ConfigError, match="positive"):
        model.recommend(["u0_0"], n=0)


def test_unknown_ids(fitted) -> None:
    model, _, _ = fitted
    with pytest.raises(UnknownIdError, match="ghost"):
        model.recommend(["ghost"], n=3)
    with pytest.raises(UnknownIdError, match="ghost-item"):
        model.similar_items(["ghost-item"], n=3)


def test_similar_items_excludes_the_item(fitted) -> None:
    model, data, _ = fitted
    for iid in data.items.ids.tolist():
        sim = model.similar_items([iid], n=5)[0]
        assert iid not in sim.ids and 0 < len(sim) <= 5


def test_personalised_block_structure(name: str, fitted) -> None:
    if name in NOT_PERSONALISED:
        pytest.skip("not a personalised model")
    model, _, withheld = fitted
    for uid, held in withheld.items():
        block = uid.split("_")[0][1:]
        top = model.recommend([uid], n=1)[0].ids
        assert top == (held,), uid
        # Every recommendation from the user's own block comes before any other block's.
        recs = model.recommend([uid], n=20)[0]
        own = [i.split("_")[0][1:] == block for i in recs.ids]
        assert own == sorted(own, reverse=True)


def test_save_load_same_answers(name: str, fitted, tmp_path) -> None:
    model, data, _ = fitted
    path = model.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["arrays.npz", "manifest.json"]
    loaded = load_named(name, path)
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    users = data.users.ids.tolist()
    assert loaded.recommend(users, n=6) == model.recommend(users, n=6)
    assert loaded.similar_items(["i0_1"], n=3) == model.similar_items(["i0_1"], n=3)
    # Saving again over an existing artefact replaces it whole.
    model.save(path)
    assert load_named(name, path).recommend(users[:2], n=3) == model.recommend(users[:2], n=3)


def test_corrupt_artefacts_are_refused(fitted, tmp_path) -> None:
    model, _, _ = fitted
    path = model.save(tmp_path / "model")
    raw = bytearray((path / "arrays.npz").read_bytes())
    raw[-10] ^= 0xFF
    (path / "arrays.npz").write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="checksum"):
        load_generator(path)
    with pytest.raises(ArtifactError, match=r"manifest\.json missing"):
        load_generator(tmp_path / "nowhere")


def test_score_pairs_equal_dense_scores(fitted) -> None:
    """The funnel's candidate-scoped features score only the candidates; every generator
    must give exactly what its dense scores hold (embedding models compute the pairs
    directly, the rest gather from dense rows)."""
    model, data, _ = fitted
    rng = np.random.default_rng(0)
    users = rng.integers(0, data.n_users, 200)
    items = rng.integers(0, data.n_items, 200)
    dense = model.score_users(np.arange(data.n_users))
    pairs = model.score_pairs(users, items)
    assert pairs.dtype == np.float32 and pairs.shape == (200,)
    np.testing.assert_allclose(pairs, dense[users, items], rtol=1e-6, atol=1e-7)
    assert model.score_pairs([], []).shape == (0,)
    with pytest.raises(ConfigError, match="out of range"):
        model.score_pairs([0], [data.n_items])
    with pytest.raises(ConfigError, match="2 users but 1 items"):
        model.score_pairs([0, 1], [0])


def test_top_unblocked_equals_masked_topk(fitted) -> None:
    """``top_unblocked`` (what candidate-scoped retrieval calls) equals the exact top-k of the
    dense scores with the blocked cells removed, ties to the lower index, padded when short."""
    import scipy.sparse as sp

    from recfunnel.core.topk import topk

    model, data, _ = fitted
    users = np.arange(data.n_users)
    seen = data.to_csr(binary=True)
    rng = np.random.default_rng(1)
    extra = sp.random(data.n_users, data.n_items, density=0.2, random_state=rng, format="csr")
    blocked = ((seen + extra) > 0).astype(np.float32).tocsr()
    for k in (3, data.n_items):
        idx, val = model.top_unblocked(users, k, blocked)
        dense = np.array(model.score_users(users), np.float32, copy=True)
        dense[blocked.toarray() > 0] = -np.inf
        want_idx, want_val = topk(dense, k)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_allclose(val, want_val, rtol=1e-6)
    assert (idx == -1).any()  # k = whole catalogue: blocked items leave padding
