"""LightGBM ranker: the compiled scorer returns what ``Booster.predict`` returns, on values
chosen to sit on every threshold and every edge of LightGBM's missing-value and categorical
rules, for each kind of model the ranker can train; and the ranker wires it in."""

from __future__ import annotations

import json
import math
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from recfunnel.core.errors import ConfigError
from recfunnel.core.ranker import RankerFeatures
from recfunnel.ranking import load_ranker, make_ranker
from recfunnel.ranking._tree_predict import ZERO_THRESHOLD, TreeEnsemble

N_NUM, N_CAT, N_LEVELS, GROUP = 4, 2, 30, 20


def assert_agrees(ours: np.ndarray, theirs: np.ndarray) -> None:
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)


def training_data(variant: str, n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Numerical columns (with NaN and exact zeros where the variant wants them) and, except
    for "numeric", categorical columns of ids 0..29 (NaN in the last one)."""
    rng = np.random.default_rng(seed)
    num = rng.normal(size=(n, N_NUM))
    num[rng.random((n, N_NUM)) < 0.1] = np.nan
    if variant == "zero_as_missing":
        num[rng.random((n, N_NUM)) < 0.3] = 0.0
    cat = rng.integers(0, N_LEVELS, size=(n, N_CAT)).astype(float)
    cat[rng.random(n) < 0.1, -1] = np.nan
    logit = np.nan_to_num(num[:, 0]) - np.nan_to_num(num[:, 1]) + np.isnan(num[:, 2])
    logit += (num[:, 3] == 0) + 1.5 * (np.nan_to_num(cat[:, 0]) % 3 == 0) - 0.8
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * logit))).astype(float)
    x = num if variant == "numeric" else np.hstack([num, cat])
    return x, y


@cache
def trained(objective: str, variant: str) -> lgb.Booster:
    x, y = training_data(variant)
    params: dict[str, Any] = {
        "objective": objective,
        "num_leaves": 15,
        "min_data_in_leaf": 5,
        "cat_smooth": 1,
        "min_data_per_group": 5,
        "verbosity": -1,
        "deterministic": True,
        "num_threads": 1,
    }
    if variant == "zero_as_missing":
        params["zero_as_missing"] = True
    if variant == "no_missing":
        params["use_missing"] = False
    if objective == "binary":
        params["sigmoid"] = 0.7  # not the default, so that the model's value must be read
    categorical = [] if variant == "numeric" else list(range(N_NUM, N_NUM + N_CAT))
    group = np.full(len(y) // GROUP, GROUP) if objective == "lambdarank" else None
    label = y if objective == "binary" else y + (y > 0) * (x[:, 0] > 1)  # grades 0, 1, 2

    def dataset() -> lgb.Dataset:
        return lgb.Dataset(x, label, group=group, categorical_feature=categorical)

    init = None
    if variant == "single_leaf_first":
        # No split possible: one tree of one leaf; then training goes on from that model.
        init = lgb.train({**params, "min_data_in_leaf": 10**6}, dataset(), num_boost_round=5)
        assert init.num_trees() == 1
    return lgb.train(params, dataset(), num_boost_round=40, init_model=init)


def probes(booster: lgb.Booster, n: int = 3000, seed: int = 1) -> np.ndarray:
    """Rows whose values are drawn from each feature's thresholds, their neighbours and the
    edge cases of LightGBM's rules (zero band, NaN, infinities; for categories: unseen ids,
    negatives, fractions, 2**31 and beyond)."""
    rng = np.random.default_rng(seed)
    model = booster.dump_model()
    n_features = model["max_feature_idx"] + 1
    numbers: list[set[float]] = [set() for _ in range(n_features)]
    categorical = [False] * n_features
    stack = [t["tree_structure"] for t in model["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            f = node["split_feature"]
            if node["decision_type"] == "==":
                categorical[f] = True
                numbers[f].update(float(c) for c in str(node["threshold"]).split("||"))
            else:
                t = float(node["threshold"])
                numbers[f].update((t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)))
            stack += [node["left_child"], node["right_child"]]
    z = ZERO_THRESHOLD
    edges = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-36, -1e-36, z, -z]
    edges += [np.nextafter(z, 1), np.nextafter(-z, -1), 1e-30, -1e-30]
    edges += [1e300, np.nextafter(1e300, np.inf), -1e300, np.nextafter(-1e300, -np.inf), 1e308]
    cat_edges = [np.nan, -1.0, -0.5, -0.999, -2.5, 3.7, N_LEVELS + 3, 10**6]
    cat_edges += [2**31 - 1, 2.0**31, 3e9, 2.0**32 + 3, -(2.0**31) - 5, np.inf]
    x = np.empty((n, n_features))
    for f in range(n_features):
        pool = np.array(sorted(numbers[f]) + (cat_edges if categorical[f] else edges), float)
        x[:, f] = rng.choice(pool, n)
        x[rng.random(n) < 0.2, f] = rng.normal(size=1)[0] * 3  # and some ordinary values
    return x


def node_kinds(booster: lgb.Booster) -> set[tuple[str, str]]:
    out = set()
    stack = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_index" in node:
            out.add((node["decision_type"], node["missing_type"]))
            stack += [node["left_child"], node["right_child"]]
    return out


VARIANTS = ["numeric", "categorical", "zero_as_missing", "no_missing", "single_leaf_first"]
#: What each variant must contain for the test to mean something.
EXPECTED_KINDS = {
    "numeric": {("<=", "NaN")},
    "categorical": {("<=", "NaN"), ("==", "NaN")},
    "zero_as_missing": {("<=", "Zero"), ("==", "None")},
    "no_missing": {("<=", "None"), ("==", "None")},
    "single_leaf_first": {("<=", "NaN"), ("==", "NaN")},
}


@pytest.mark.parametrize("objective", ["binary", "lambdarank"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_agrees_with_booster_predict(objective: str, variant: str) -> None:
    booster = trained(objective, variant)
    assert EXPECTED_KINDS[variant] <= node_kinds(booster), node_kinds(booster)
    ensemble = TreeEnsemble.from_booster(booster)
    x = probes(booster)
    assert_agrees(ensemble.predict(x), booster.predict(x, num_threads=1))
    assert_agrees(ensemble.predict(x, raw_score=True), booster.predict(x, raw_score=True))
    # Training rows too: real values, NaN where the model learnt where NaN goes.
    train = training_data(variant)[0]
    assert_agrees(ensemble.predict(train), booster.predict(train))
    # Odd batch sizes (the kernel walks rows eight at a time) and float32 input.
    for n in (1, 7, 9, 17):
        assert_agrees(ensemble.predict(x[:n]), booster.predict(x[:n]))
    with np.errstate(over="ignore"):  # 1e300 -> inf
        x32 = x.astype(np.float32)
    assert_agrees(ensemble.predict(x32), booster.predict(x32))


def test_probes_reach_thresholds_in_the_zero_band() -> None:
    # LightGBM puts split thresholds at +-kZeroThreshold around zero bins, right where inputs
    # start to read as 0; the agreement tests only probe that edge if some model here has one.
    thresholds = set()
    for variant in ("zero_as_missing", "no_missing"):
        stack = [t["tree_structure"] for t in trained("binary", variant).dump_model()["tree_info"]]
        while stack:
            node = stack.pop()
            if "split_index" in node:
                if node["decision_type"] == "<=":
                    thresholds.add(float(node["threshold"]))
                stack += [node["left_child"], node["right_child"]]
    assert {ZERO_THRESHOLD, -ZERO_THRESHOLD} & thresholds


@pytest.mark.parametrize("objective", ["binary", "lambdarank"])
def test_num_iteration(objective: str) -> None:
    booster = trained(objective, "categorical")
    ensemble = TreeEnsemble.from_booster(booster)
    x = probes(booster, n=500)
    for k in (1, 2, 7, 39, 40, 10**6, 0, -1, None):
        assert_agrees(ensemble.predict(x, num_iteration=k), booster.predict(x, num_iteration=k))
    assert ensemble.n_used(7) == 7 and ensemble.n_used(None) == ensemble.n_trees == 40


def test_best_iteration_is_the_default() -> None:
    x, y = training_data("categorical")
    train = lgb.Dataset(x[:1500], y[:1500], categorical_feature=[4, 5])
    valid = lgb.Dataset(x[1500:], y[1500:], reference=train)
    booster = lgb.train(
        {"objective": "binary", "learning_rate": 0.5, "verbosity": -1, "num_threads": 1},
        train,
        num_boost_round=200,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(3, verbose=False)],
        keep_training_booster=True,  # else the rounds after the best are dropped
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    ensemble = TreeEnsemble.from_booster(booster)
    assert ensemble.n_trees == booster.current_iteration()
    xs = probes(booster, n=500)
    assert_agrees(ensemble.predict(xs), booster.predict(xs))
    assert_agrees(ensemble.predict(xs, num_iteration=-1), booster.predict(xs, num_iteration=-1))
    assert not np.allclose(ensemble.predict(xs), ensemble.predict(xs, num_iteration=-1))


def test_single_leaf_model() -> None:
    x, y = training_data("numeric")
    booster = lgb.train(
        {"objective": "binary", "min_data_in_leaf": 10**6, "verbosity": -1, "num_threads": 1},
        lgb.Dataset(x, y),
        num_boost_round=3,
    )
    ensemble = TreeEnsemble.from_booster(booster)
    assert ensemble.n_trees == 1 and len(ensemble.value) == 1
    assert_agrees(ensemble.predict(x[:11]), booster.predict(x[:11]))


# ---- known answers on a hand-written model --------------------------------------------------


def leaf(value: float) -> dict[str, Any]:
    return {"leaf_value": value}


def split(feature: int, threshold: Any, left: dict, right: dict, **rule: Any) -> dict[str, Any]:
    return {
        "split_index": 0,
        "split_feature": feature,
        "threshold": threshold,
        "decision_type": rule.get("decision_type", "<="),
        "default_left": rule.get("default_left", False),
        "missing_type": rule.get("missing_type", "None"),
        "left_child": left,
        "right_child": right,
    }


def hand_model(objective: str = "lambdarank") -> dict[str, Any]:
    """Tree 0: feature 1 in {0, 3, 40} -> 1; else feature 0 <= 0.5 (0 and NaN are missing, sent
    right) -> 10, else 100. Tree 1: one leaf, 0.25."""
    zero_rule = split(0, 0.5, leaf(10.0), leaf(100.0), missing_type="Zero", default_left=False)
    root = split(1, "0||3||40", leaf(1.0), zero_rule, decision_type="==")
    return {
        "num_tree_per_iteration": 1,
        "max_feature_idx": 1,
        "objective": objective,
        "tree_info": [{"tree_structure": root}, {"tree_structure": leaf(0.25)}],
    }


KNOWN = [  # (x0, x1), tree 0's leaf
    ((0.7, 3.0), 1.0),
    ((0.7, -0.5), 1.0),  # a C cast truncates: category 0
    ((0.7, 40.9), 1.0),
    ((0.7, 41.0), 100.0),  # not in the set
    ((0.7, np.nan), 100.0),  # NaN is no category
    ((0.7, -1.0), 100.0),  # negative
    ((0.7, 2.0**32 + 3), 100.0),  # too large for an int: not category 3
    ((-3.0, 7.0), 10.0),
    ((0.5, 7.0), 10.0),  # <= threshold
    ((np.nextafter(0.5, 1), 7.0), 100.0),
    ((0.0, 7.0), 100.0),  # zero is missing: default side (right)
    ((1e-36, 7.0), 100.0),  # reads as zero
    ((-1e-36, 7.0), 100.0),
    ((np.nan, 7.0), 100.0),  # NaN reads as zero
    ((-1e-30, 7.0), 10.0),
]


def test_known_answers() -> None:
    x = np.array([row for row, _ in KNOWN])
    tree0 = np.array([value for _, value in KNOWN])
    raw = TreeEnsemble.from_dump(hand_model())
    np.testing.assert_array_equal(raw.predict(x), tree0 + 0.25)
    np.testing.assert_array_equal(raw.predict(x, num_iteration=1), tree0)
    scaled = TreeEnsemble.from_dump(hand_model("binary sigmoid:2"))
    np.testing.assert_allclose(scaled.predict(x), 1 / (1 + np.exp(-2 * (tree0 + 0.25))), 1e-15)
    np.testing.assert_array_equal(scaled.predict(x, raw_score=True), tree0 + 0.25)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_tree_per_iteration": 3}, "multiclass"),
        ({"average_output": True}, "rf"),
        ({"objective": "poisson"}, "poisson"),
        ({"tree_info": [{"tree_structure": {"leaf_value": 1.0, "leaf_coeff": [0.5]}}]}, "linear"),
    ],
)
def test_unsupported_models_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TreeEnsemble.from_dump({**hand_model(), **change})


def test_wrong_width_refused() -> None:
    with pytest.raises(ConfigError, match="reads 2 features"):
        TreeEnsemble.from_dump(hand_model()).predict(np.zeros((3, 5)))


# ---- the ranker ---------------------------------------------------------------------------


def ranker_data(n: int = 3000) -> RankerFeatures:
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(n, 3)).astype(np.float32)
    sparse = rng.zipf(1.5, size=(n, 2)) % 500
    return RankerFeatures(dense, sparse, n_buckets=(500, 500))


def ranker_labels(features: RankerFeatures) -> np.ndarray:
    logit = features.dense[:, 0] + (features.sparse[:, 0] % 3 == 0) - 0.5
    return (logit > 0).astype(float)


@pytest.mark.parametrize("objective", ["binary", "lambdarank"])
def test_ranker_predictors_agree_and_survive_save_load(objective: str, tmp_path: Path) -> None:
    features = ranker_data()
    y = ranker_labels(features)
    groups = np.full(len(y) // GROUP, GROUP) if objective == "lambdarank" else None
    model = make_ranker("lightgbm", objective=objective, n_estimators=30).fit(
        features, y, groups=groups
    )
    assert model.predictor == "compiled" and isinstance(model.compiled_, TreeEnsemble)
    test = ranker_data(1001)  # ids beyond training's, folded into range; 1001 = 8 * 125 + 1
    compiled = model.predict(test)
    raw = np.hstack([test.dense, test.sparse % 500]).astype(np.float64)
    np.testing.assert_allclose(compiled, model.booster_.predict(raw), rtol=1e-6)
    theirs = model.set_params(predictor="lightgbm").predict(test)
    np.testing.assert_allclose(compiled, theirs, rtol=1e-6)

    path = model.set_params(predictor="compiled").save(tmp_path / "model")
    manifest = json.loads((path / "manifest.json").read_text())
    assert list(manifest["text_files"]) == ["lightgbm_model.txt"]  # nothing compiled is saved
    assert list(manifest["arrays"]) == ["feature_importance"]
    assert (path / "lightgbm_model.txt").read_text() == model.booster_.model_to_string()
    loaded = load_ranker(path)
    assert isinstance(loaded.compiled_, TreeEnsemble)  # built (and warmed up) at load
    np.testing.assert_array_equal(loaded.predict(test), compiled)


def test_ranker_predictor_switch_after_fit() -> None:
    features = ranker_data(600)
    y = ranker_labels(features)
    model = make_ranker("lightgbm", n_estimators=10, predictor="lightgbm").fit(features, y)
    assert not hasattr(model, "compiled_")
    theirs = model.predict(features)
    model.set_params(predictor="compiled")
    np.testing.assert_allclose(model.predict(features), theirs, rtol=1e-6)
    assert isinstance(model.compiled_, TreeEnsemble)
    with pytest.raises(ConfigError, match="predictor must be one of"):
        model.set_params(predictor="treelite").predict(features)
    with pytest.raises(ConfigError, match="predictor must be one of"):
        model.fit(features, y)


def test_ranker_falls_back_with_a_warning() -> None:
    features = ranker_data(600)
    y = ranker_labels(features)
    model = make_ranker("lightgbm", n_estimators=5, params={"linear_tree": True})
    with pytest.warns(RuntimeWarning, match="linear trees; scoring with LightGBM's own"):
        model.fit(features, y)
    assert model.compiled_ is None
    raw = np.hstack([features.dense, features.sparse]).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning at fit, none per request
        np.testing.assert_allclose(model.predict(features), model.booster_.predict(raw), 1e-6)


def test_sums_are_exact_not_just_close() -> None:
    # The kernel adds trees in LightGBM's order from 0.0, so the raw sums are bit for bit.
    booster = trained("lambdarank", "categorical")
    x = probes(booster, n=400)
    ours = TreeEnsemble.from_booster(booster).predict(x)
    assert np.array_equal(ours, booster.predict(x)), np.abs(ours - booster.predict(x)).max()
    assert math.isfinite(float(ours.sum()))
