"""Two-tower retrieval: stable hashing, the logQ loss, cold start from features, persistence."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from recfunnel.candidates._tower_features import FeatureEncoder, align, infer_kinds, stable_hash
from recfunnel.candidates.two_tower import (
    _PRIOR_GRID,
    _SMOOTHING_GRID,
    TwoTower,
    _PriorRows,
    in_batch_softmax_loss,
)
from recfunnel.core.errors import ConfigError, UnknownIdError
from recfunnel.core.generator import read_manifest
from recfunnel.core.matrix import InteractionMatrix


def taste_data(n_users: int = 40, n_items: int = 20, per_user: int = 5, seed: int = 0):
    """Item category (A/B) alone decides taste: a user of taste A only takes items of A.

    Users alternate A, B; items alternate A, B; each user picks ``per_user`` items of their
    category at random. The ids carry no information beyond what the attributes say.
    """
    rng = np.random.default_rng(seed)
    cats = np.array(["A", "B"])
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(n_items)],
            "category": cats[np.arange(n_items) % 2],
            "price": rng.uniform(5, 50, n_items).round(2),
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [f"u{k}" for k in range(n_users)],
            "taste": cats[np.arange(n_users) % 2],
            "age": rng.integers(18, 70, n_users).astype(float),
        }
    )
    u, i = [], []
    for k in range(n_users):
        pool = np.flatnonzero(items["category"].to_numpy() == users["taste"][k])
        for j in rng.choice(pool, per_user, replace=False):
            u.append(f"u{k}")
            i.append(f"i{j}")
    return InteractionMatrix.from_arrays(u, i), users, items


@pytest.fixture(scope="module")
def fitted():
    data, users, items = taste_data()
    model = TwoTower().fit(data, user_features=users, item_features=items)  # default params
    return model, data, users, items


def _category(items: pd.DataFrame, ids: tuple[str, ...]) -> list[str]:
    lookup = dict(zip(items["item_id"], items["category"], strict=True))
    return [lookup[i] for i in ids]


# ---- hashing and feature encoding ---------------------------------------------------------------
def test_stable_hash_is_identical_across_processes() -> None:
    values = ["42", "user-7", "Ünïcode", ""]
    here = stable_hash(values, 1 << 16, salt="user").tolist()
    code = (
        "import json; from recfunnel.candidates._tower_features import stable_hash; "
        f"print(json.dumps(stable_hash({values!r}, 1 << 16, salt='user').tolist()))"
    )
    # PYTHONHASHSEED=1 salts Python's own hash() differently from this process's random seed.
    env = {**os.environ, "PYTHONHASHSEED": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert json.loads(out.stdout) == here
    assert here[0] != stable_hash(["42"], 1 << 16, salt="item")[0]  # salts separate fields


def test_feature_kinds_and_encoding() -> None:
    table = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(60)],
            "age": np.where(np.arange(60) % 7 == 0, np.nan, np.arange(60) % 5 * 10.0),
            "city": [["x", "y", "z"][i % 3] for i in range(60)],
            "zip": [f"{10000 + 37 * i}" for i in range(60)],
            "bio": [f"a long and unique biography number {i}" for i in range(60)],
            "tags": ["a|b", "b", None] * 20,
        }
    )
    assert infer_kinds(table, "user_id") == [
        ("age", "numeric"), ("age", "categorical"), ("city", "categorical"),
        ("zip", "prefix"), ("tags", "multi"),
    ]  # fmt: skip
    assert ("bio", "multi") in infer_kinds(table, "user_id", {"bio": "multi", "zip": "skip"})
    enc = FeatureEncoder.fit(table, "user_id", buckets=128)
    tok, num = enc.encode(table.iloc[[0, 1]].reset_index(drop=True))
    # Row 0: age missing -> standardised 0 and indicator 1; "a|b" -> two tokens, padded.
    assert num[0].tolist() == [0.0, 1.0] and num[1, 1] == 0.0
    assert (tok[0, 3] != 128).sum() == 2 and (tok[1, 3] != 128).sum() == 1
    # Same value, whatever the dtype it arrives in: 20 == 20.0 == "20".
    a, _ = enc.encode(pd.DataFrame({"age": [20.0]}))
    b, _ = enc.encode(pd.DataFrame({"age": ["20"]}))
    assert np.array_equal(a, b)
    with pytest.raises(ConfigError, match="unknown feature kind"):
        infer_kinds(table, "user_id", {"age": "ordinal"})


# ---- the loss -----------------------------------------------------------------------------------
def test_logq_corrected_in_batch_loss_by_hand() -> None:
    torch = pytest.importorskip("torch")
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    q = [0.5, 0.25, 0.125]
    tau = 0.5
    loss = in_batch_softmax_loss(u, v, torch.tensor([0, 1, 2]), torch.log(torch.tensor(q)), tau)
    # logit[b][j] = <u_b, v_j> / tau - log q_j; loss = mean_b(logsumexp_j - logit[b][b]).
    dots = [[1.0, 0.0, 0.8], [0.0, 1.0, 0.6], [0.6, 0.8, 0.96]]
    expected = 0.0
    for b in range(3):
        logits = [dots[b][j] / tau - math.log(q[j]) for j in range(3)]
        expected += math.log(sum(math.exp(x) for x in logits)) - logits[b]
    assert float(loss) == pytest.approx(expected / 3, rel=1e-6)
    # Without the correction it is the plain in-batch softmax.
    plain = in_batch_softmax_loss(u, v, torch.tensor([0, 1, 2]), None, tau)
    expected_plain = sum(
        math.log(sum(math.exp(dots[b][j] / tau) for j in range(3))) - dots[b][b] / tau
        for b in range(3)
    )
    assert float(plain) == pytest.approx(expected_plain / 3, rel=1e-6)
    # Rows 0 and 2 share an item: for each, the other's column is the positive again, removed.
    dup = in_batch_softmax_loss(u, v, torch.tensor([5, 6, 5]), torch.log(torch.tensor(q)), tau)
    keep = [[0, 1], [0, 1, 2], [1, 2]]
    expected_dup = 0.0
    for b in range(3):
        logits = {j: dots[b][j] / tau - math.log(q[j]) for j in keep[b]}
        expected_dup += math.log(sum(math.exp(x) for x in logits.values())) - logits[b]
    assert float(dup) == pytest.approx(expected_dup / 3, rel=1e-6)


# ---- cold start ---------------------------------------------------------------------------------
def test_new_user_gets_the_category_of_their_attribute(fitted) -> None:
    model, _, _, items = fitted
    new = pd.DataFrame({"user_id": ["new-a", "new-b"], "taste": ["A", "B"], "age": [30.0, None]})
    recs = model.recommend_new_users(new, n=10)
    assert _category(items, recs[0].ids) == ["A"] * 10
    assert _category(items, recs[1].ids) == ["B"] * 10
    # Attributes unknown, three interactions known: the history decides, and is excluded.
    # (Beyond the first few, popularity competes with a three-item history: the test stops at
    # three.)
    history = [["i0", "i2", "i4"], ["i1", "i3", "i5"]]
    recs = model.recommend_new_users(None, n=3, history=history)
    assert _category(items, recs[0].ids) == ["A"] * 3 and not set(recs[0].ids) & set(history[0])
    assert _category(items, recs[1].ids) == ["B"] * 3 and not set(recs[1].ids) & set(history[1])


def test_new_items_reach_the_matching_users(fitted) -> None:
    model = fitted[0]
    model = _copy(model)
    model.add_items(pd.DataFrame({"item_id": ["new-A", "new-B"], "category": ["A", "B"]}))
    assert model.catalogue_ids()[-2:].tolist() == ["new-A", "new-B"]
    full = len(model.catalogue_ids())
    for taste, other in (("A", "B"), ("B", "A")):
        ranked = model.recommend_new_users(pd.DataFrame({"taste": [taste]}), n=full)[0].ids
        # The matching new item comes before the other one, and among the 11 items of its
        # category (it has no popularity of its own, so it may pass a rarely taken item).
        assert ranked.index(f"new-{taste}") < min(11, ranked.index(f"new-{other}"))
    known = model.recommend_catalogue(["u0", "u1"], n=full)  # u0 has taste A, u1 taste B
    assert known[0].ids.index("new-A") < known[0].ids.index("new-B")
    assert known[1].ids.index("new-B") < known[1].ids.index("new-A")
    assert "new-A" not in model.similar_catalogue(["new-A"], n=3)[0].ids
    with pytest.raises(ConfigError, match="already in the training catalogue"):
        model.add_items(pd.DataFrame({"item_id": ["i0"], "category": ["A"]}))
    with pytest.raises(UnknownIdError):
        model.similar_catalogue(["nowhere"], n=3)
    # The contract's item index stays the training one.
    assert model.score_users(np.array([0])).shape == (1, 20)


def test_save_load_gives_identical_vectors_for_new_features(fitted, tmp_path) -> None:
    model, data, _, _ = fitted
    model = _copy(model)
    model.add_items(pd.DataFrame({"item_id": ["new-A"], "category": ["A"], "price": [9.5]}))
    path = model.save(tmp_path / "tt")
    loaded = TwoTower._from_artifact(path, read_manifest(path))
    new_users = pd.DataFrame({"taste": ["B", "A", "Z"], "age": [22.0, None, 90.0]})
    history = [["i1"], [], ["i0", "unknown-item"]]
    np.testing.assert_array_equal(
        loaded.user_vectors_from_features(new_users, history),
        model.user_vectors_from_features(new_users, history),
    )
    new_items = pd.DataFrame({"item_id": ["x"], "category": ["B"], "price": [np.nan]})
    np.testing.assert_array_equal(
        loaded.item_vectors_from_features(new_items), model.item_vectors_from_features(new_items)
    )
    assert loaded.catalogue_ids().tolist() == model.catalogue_ids().tolist()
    assert loaded.prior_.tolist() == model.prior_.tolist()
    assert loaded.recommend_new_users(new_users, n=5) == model.recommend_new_users(new_users, n=5)
    users = data.users.ids.tolist()
    assert loaded.recommend(users, n=5) == model.recommend(users, n=5)


def test_batch_of_new_users_equals_singles(fitted) -> None:
    model, _, users, _ = fitted
    table = users.assign(user_id=[f"n{k}" for k in range(len(users))]).iloc[:6]
    batch = model.user_vectors_from_features(table)
    for r in range(len(table)):
        single = model.user_vectors_from_features(table.iloc[[r]])
        np.testing.assert_array_equal(single[0], batch[r])


def test_popularity_prior_known_answers() -> None:
    # Popularity i0 > i1 > ... by construction (i_j taken by 12 - j users); no attributes.
    u = [f"u{k}" for j in range(12) for k in range(12 - j)]
    i = [f"i{j}" for j in range(12) for _ in range(12 - j)]
    data = InteractionMatrix.from_arrays(u, i)
    params = {"dim": 8, "hidden": 0, "min_steps": 30}
    plain = TwoTower(**params, popularity_prior=0).fit(data)
    model = TwoTower(**params, popularity_prior=(1e4, 0.5)).fit(data)
    # Same training: the prior only adds a component, [T w(n)] for users and [log q] for items.
    np.testing.assert_array_equal(model.item_vectors()[:, :-1], plain.item_vectors())
    counts = np.bincount(data.item, minlength=12)
    np.testing.assert_allclose(model.item_vectors()[:, -1], np.log(counts / len(data)), rtol=1e-6)
    n = np.diff(data.to_csr().indptr)
    w = 0.5 * (1 - np.log1p(np.minimum(n, 32)) / np.log1p(32))
    np.testing.assert_allclose(model.user_vectors(np.arange(12))[:, -1], 0.05 * w, rtol=1e-5)
    # A user with no history and no attributes: with a dominant cold weight, the ranking is the
    # popularity order exactly, and the score is the trained one plus w log q.
    recs = model.recommend_new_users(None, n=12, history=[[]])[0]
    assert recs.ids == tuple(f"i{j}" for j in range(12))
    cold = model.user_vectors_from_features(None, history=[[]])
    base = plain.user_vectors_from_features(None, history=[[]])
    np.testing.assert_allclose(cold[0, :-1], base[0])
    assert cold[0, -1] == pytest.approx(0.05 * 1e4)
    # Persisted with the artefact; "auto" without validation data leaves the trained scores.
    assert TwoTower(**params).fit(data).prior_.tolist() == [0.0, 0.0]


def test_ids_only_and_options() -> None:
    data, _, _ = taste_data(n_users=20, per_user=4)
    model = TwoTower(dim=16, normalize=False, item_bias=False, use_ids="both").fit(data)
    # dim + the popularity-prior component (no bias component without item_bias).
    assert model.metric == "dot" and model.user_vectors(np.arange(3)).shape == (3, 17)
    # No attributes were given at fit: new users are embedded from their history alone.
    recs = model.recommend_new_users(None, n=3, history=[["i0", "i2"]])
    assert len(recs[0]) == 3 and not {"i0", "i2"} & set(recs[0].ids)
    with pytest.raises(ConfigError, match="no input"):
        TwoTower(use_ids="users").fit(data)  # item tower: no ids and no attributes
    assert TwoTower(normalize=True, item_bias=False, popularity_prior=0).metric == "cosine"
    assert TwoTower(normalize=True, item_bias=False).metric == "dot"  # the prior component
    assert TwoTower(normalize="items", item_bias=True).metric == "dot"
    bads = ({"normalize": "l1"}, {"use_ids": "maybe"}, {"id_dropout": 1.0}, {"dim": 0},
            {"popularity_prior": -1.0}, {"popularity_prior": "max"})  # fmt: skip
    for bad in bads:
        with pytest.raises(ConfigError):
            TwoTower(**bad).fit(data)


def test_early_stopping_on_validation_is_deterministic() -> None:
    data, users, items = taste_data(n_users=30, per_user=6, seed=1)
    rng = np.random.default_rng(0)
    mask = rng.random(len(data)) < 0.2
    train, valid = data.subset(~mask), data.subset(mask)
    params = {"min_steps": 10, "epochs": 6, "batch_size": 64, "patience": 1}
    a = TwoTower(**params).fit(train, valid=valid, user_features=users, item_features=items)
    b = TwoTower(**params).fit(train, valid=valid, user_features=users, item_features=items)
    np.testing.assert_array_equal(a.user_vectors_, b.user_vectors_)
    np.testing.assert_array_equal(a.item_vectors_, b.item_vectors_)
    # The popularity prior was selected on the validation users, from the grid.
    assert a.prior_.tolist() == b.prior_.tolist() and len(a.prior_) == 2


def _copy(model: TwoTower) -> TwoTower:
    """A fitted model sharing nothing mutable with ``model`` (the fixture is module-wide)."""
    clone = TwoTower(**model.get_params())
    clone.users_, clone.items_, clone.seen_ = model.users_, model.items_, model.seen_
    clone._set_state({k: v.copy() for k, v in model._state().items()})
    return clone


# ---- the segment prior --------------------------------------------------------------------------
def gender_data():
    """Item j is taken by 2 (8 - j) women and j + 1 men: women's popularity order is i0, i1, ...,
    men's the reverse, everyone's (17 - j) that of women. No other signal."""
    u, i = [], []
    for j in range(8):
        u += [f"f{k}" for k in range(2 * (8 - j))] + [f"m{k}" for k in range(j + 1)]
        i += [f"i{j}"] * (2 * (8 - j) + j + 1)
    data = InteractionMatrix.from_arrays(u, i)
    ids = data.users.ids.tolist()
    users = pd.DataFrame({"user_id": ids, "gender": [s[0].upper() for s in ids]})
    return data, users


def test_segment_prior_known_answers(tmp_path) -> None:
    data, users = gender_data()
    params = {"dim": 8, "hidden": 0, "min_steps": 30, "popularity_prior": (1e4, 0.0)}
    model = TwoTower(**params, segment_prior=["gender"], segment_smoothing=0.01).fit(
        data, user_features=users
    )
    assert model.segment_columns_.tolist() == ["gender"] and len(model.segment_keys_) == 2
    # Item vectors end in [log q, log p_s for each segment]: by hand, from the counts.
    counts = {"F": np.array([2 * (8 - j) for j in range(8)]), "M": np.arange(1, 9)}
    n = len(data)
    q = (counts["F"] + counts["M"]) / n
    alpha = 0.01 * n
    order = model.items_.encode([f"i{j}" for j in range(8)])
    prior = model.item_vectors()[order, -3:]
    np.testing.assert_allclose(prior[:, 0], np.log(q), rtol=1e-6)
    for slot, key in enumerate(model.segment_keys_.tolist(), start=1):
        c = counts[key]
        np.testing.assert_allclose(prior[:, slot], np.log((c + alpha * q) / (c.sum() + alpha)))
    # New users with no history follow their segment's popularity; an unknown gender gets
    # everyone's (here that of women, the larger group).
    new = pd.DataFrame({"gender": ["F", "M", None]})
    recs = model.recommend_new_users(new, n=8, history=[[], [], []])
    assert recs[0].ids == tuple(f"i{j}" for j in range(8))
    assert recs[1].ids == tuple(f"i{j}" for j in reversed(range(8)))
    assert recs[2].ids == recs[0].ids
    vecs = model.user_vectors_from_features(new, history=[[], [], []])
    slots = {k: s for s, k in enumerate(model.segment_keys_.tolist(), start=1)}
    for row, slot in ((0, slots["F"]), (1, slots["M"]), (2, 0)):
        expected = np.zeros(3)
        expected[slot] = 0.05 * 1e4  # temperature * cold weight, in the segment's slot only
        np.testing.assert_allclose(vecs[row, -3:], expected, rtol=1e-6)
    # Known users keep their segment too (short weight 0: the component is 0 for them).
    assert np.all(model.user_vectors(np.arange(3))[:, -3:] == 0)
    # Added items sit at the bottom of every segment (no interactions: the floor of each slot).
    model.add_items(pd.DataFrame({"item_id": ["new"]}))
    assert model.recommend_new_users(new.iloc[[1]], n=9, history=[[]])[0].ids[-1] == "new"
    # Persisted: identical vectors and rankings after loading.
    loaded = TwoTower._from_artifact(model.save(tmp_path / "seg"), read_manifest(tmp_path / "seg"))
    np.testing.assert_array_equal(
        loaded.user_vectors_from_features(new), model.user_vectors_from_features(new)
    )
    assert loaded.recommend_new_users(new, n=9) == model.recommend_new_users(new, n=9)
    # Without segments (None, or "auto" with no validation data) the prior is global: one slot.
    for seg in (None, "auto"):
        plain = TwoTower(**params, segment_prior=seg).fit(data, user_features=users)
        assert plain.segment_keys_.size == 0
        assert plain.recommend_new_users(new.iloc[[1]], n=8)[0].ids == recs[0].ids
    for bad in ({"segment_prior": "gender"}, {"segment_smoothing": 0.0}, {"max_segments": 0}):
        with pytest.raises(ConfigError):
            TwoTower(**params, **bad).fit(data, user_features=users)
    with pytest.raises(ConfigError, match="not in user_features"):
        TwoTower(**params, segment_prior=["age"]).fit(data, user_features=users)


def test_segment_prior_selected_on_validation_users_only() -> None:
    # Taste (A / B) decides everything, a random "noise" attribute nothing.
    data, users, items = taste_data(n_users=60, per_user=6, seed=2)
    users = users.assign(noise=np.random.default_rng(0).choice(list("XYZ"), len(users)))
    mask = np.random.default_rng(1).random(len(data)) < 0.3
    train, valid = data.subset(~mask), data.subset(mask)
    # A dominant fixed cold weight: the attributes are chosen for their segments' popularity.
    params = {"min_steps": 10, "epochs": 2, "batch_size": 64, "popularity_prior": (1e4, 1.0)}
    model = TwoTower(**params).fit(train, valid=valid, user_features=users, item_features=items)
    assert model.segment_columns_.tolist() == ["taste"]
    # Segment popularity counts training pairs only (the validation items do not leak in):
    # p_s(i) = (c_s(i) + alpha q_i) / (n_s + alpha), alpha one of the grid's shares of the pairs.
    pairs = pd.DataFrame({"u": train.user, "i": train.item}).drop_duplicates()
    taste = users.set_index("user_id").loc[train.users.ids[pairs["u"]], "taste"].to_numpy()
    n_items, n = len(model.items_), len(pairs)
    q = np.maximum(np.bincount(pairs["i"], minlength=n_items), 1) / n
    for slot, key in enumerate(model.segment_keys_.tolist(), start=1):
        c = np.bincount(pairs["i"][taste == key], minlength=n_items)
        got = model.item_vectors_[:, -3 + slot]
        assert any(
            np.allclose(got, np.log((c + a * n * q) / (c.sum() + a * n)), rtol=1e-5)
            for a in _SMOOTHING_GRID
        )
    # Held-out users never reach fit: rows of theirs in the attribute table change nothing.
    extra = pd.DataFrame(
        {"user_id": [f"held{k}" for k in range(30)], "taste": "A", "age": 30.0, "noise": "Q"}
    )
    again = TwoTower(**params).fit(
        train, valid=valid, user_features=pd.concat([extra, users]), item_features=items
    )
    assert again.segment_keys_.tolist() == model.segment_keys_.tolist()
    assert again.prior_.tolist() == model.prior_.tolist()
    np.testing.assert_array_equal(again.item_vectors_, model.item_vectors_)
    np.testing.assert_array_equal(again.user_vectors_, model.user_vectors_)


def test_cold_weight_is_chosen_on_new_validation_users() -> None:
    # Users u0..u9 are new validation users (every interaction of theirs in valid, none in
    # training); the others keep most of theirs in training and a few in valid.
    data, users, items = taste_data(n_users=40, per_user=6, seed=3)
    new = np.isin(data.user, np.arange(10))
    rng = np.random.default_rng(0)
    to_valid = new | (rng.random(len(data)) < 0.3)
    train, valid = data.subset(~to_valid), data.subset(to_valid)
    model = TwoTower(min_steps=10, epochs=2, batch_size=64).fit(
        train, valid=valid, user_features=users, item_features=items
    )
    u_tok, u_num = model.user_encoder_.encode(align(users, "user_id", model.users_.ids.tolist()))
    rows = _PriorRows(model, valid.to_csr(), u_tok, u_num)
    ids = model.users_.ids
    assert sorted(ids[rows.cold_users].tolist()) == sorted(f"u{k}" for k in range(10))
    returning = np.unique(valid.user[~new[to_valid]])  # validation users with training items
    assert rows.short_users.tolist() == returning.tolist()
    assert not set(ids[returning].tolist()) & {f"u{k}" for k in range(10)}
    # Without new validation users, every validation user is a cold one too (the fallback).
    rows = _PriorRows(model, valid.subset(~new[to_valid]).to_csr(), u_tok, u_num)
    assert rows.cold_users.tolist() == rows.short_users.tolist() == returning.tolist()
    assert model.prior_.tolist()[0] in _PRIOR_GRID and model.prior_.tolist()[1] in _PRIOR_GRID
