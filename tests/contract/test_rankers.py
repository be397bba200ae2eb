"""The Ranker conformance suite: every registered ranker (and each structural variant) runs all
of it."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recfunnel.core.errors import ArtifactError, ConfigError, NotFittedError
from recfunnel.core.ranker import LabelledFeatures, Ranker, RankerFeatures
from recfunnel.evaluation.calibration import roc_auc
from recfunnel.ranking import REGISTRY, load_ranker, make_ranker

FAST = {
    "lightgbm": {"n_estimators": 60},
    "wide_deep": {"n_epochs": 6, "hidden_units": (16,), "wide_buckets": 4096},
    "dcn": {"n_epochs": 6, "hidden_units": (16,), "n_cross_layers": 2},
}

#: (case id, registry name, parameters): every registered name at least once.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("lightgbm-binary", "lightgbm", FAST["lightgbm"]),
    ("lightgbm-lambdarank", "lightgbm", {**FAST["lightgbm"], "objective": "lambdarank"}),
    ("lightgbm-own-predictor", "lightgbm", {**FAST["lightgbm"], "predictor": "lightgbm"}),
    ("wide_deep", "wide_deep", FAST["wide_deep"]),
    ("dcn-stacked", "dcn", FAST["dcn"]),
    ("dcn-parallel-lowrank", "dcn", {**FAST["dcn"], "structure": "parallel", "low_rank": 4}),
]

N_BUCKETS = 50
GROUP = 20


def test_every_registered_ranker_has_a_case() -> None:
    assert {name for _, name, _ in CASES} == set(REGISTRY)


@cache
def rule_data(n: int = 4000, seed: int = 0) -> tuple[RankerFeatures, np.ndarray, np.ndarray]:
    """A clear rule: ``y = 2 x0 − x1 + 1.5 [bucket of s0 is even] − 0.75 > 0``.

    Columns x2, x3 and s1 are noise. Rows come in consecutive groups of 20 (for lambdarank).
    """
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, 4)).astype(np.float32)
    sparse = rng.integers(0, N_BUCKETS, size=(n, 2))
    y = (2 * dense[:, 0] - dense[:, 1] + 1.5 * (sparse[:, 0] % 2 == 0) - 0.75 > 0).astype(float)
    features = RankerFeatures(
        dense, sparse, ("x0", "x1", "x2", "x3"), ("s0", "s1"), (N_BUCKETS, N_BUCKETS)
    )
    return features, y, np.full(n // GROUP, GROUP)


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param[1], request.param[2]


def needs_groups(model: Ranker) -> bool:
    return getattr(model, "objective", None) == "lambdarank"


@cache
def _fitted(name: str, params_json: str) -> Ranker:
    features, y, groups = rule_data()
    model = make_ranker(name, **json.loads(params_json))
    train = np.arange(3000)
    return model.fit(
        features.take(train), y[train], groups=groups[:150] if needs_groups(model) else None
    )


@pytest.fixture
def fitted(case: tuple[str, dict[str, Any]]) -> Ranker:
    name, params = case
    return _fitted(name, json.dumps(params, sort_keys=True))


def test_params_round_trip(case) -> None:
    name, params = case
    model = make_ranker(name, **params)
    clone = type(model)(**model.get_params())
    assert clone.get_params() == model.get_params()
    with pytest.raises(ConfigError, match="no parameter"):
        model.set_params(not_a_parameter=1)
    with pytest.raises(ConfigError, match="no parameter"):
        make_ranker(name, not_a_parameter=1)


def test_not_fitted(case) -> None:
    name, params = case
    features, _, _ = rule_data()
    with pytest.raises(NotFittedError, match="not fitted"):
        make_ranker(name, **params).predict(features.take([0]))


def test_learns_the_rule(fitted: Ranker) -> None:
    features, y, _ = rule_data()
    test = np.arange(3000, 4000)
    scores = fitted.predict(features.take(test))
    assert scores.shape == (1000,) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    if fitted.predicts_probability:
        assert ((scores >= 0) & (scores <= 1)).all()
        auc = roc_auc(y[test], scores)
    else:  # lambdarank scores rank within a group: mean AUC over the test groups
        aucs = [roc_auc(y[test][g : g + GROUP], scores[g : g + GROUP]) for g in range(0, 1000, 20)]
        auc = float(np.nanmean(aucs))
    assert auc > 0.9, auc


def test_deterministic_with_seed(case, fitted: Ranker) -> None:
    name, params = case
    features, y, groups = rule_data()
    again = make_ranker(name, **params)
    again.fit(
        features.take(np.arange(3000)),
        y[:3000],
        groups=groups[:150] if needs_groups(again) else None,
    )
    test = features.take(np.arange(3000, 4000))
    np.testing.assert_array_equal(fitted.predict(test), again.predict(test))


def test_save_load_same_scores(fitted: Ranker, tmp_path: Path) -> None:
    features, _, _ = rule_data()
    test = features.take(np.arange(3000, 4000))
    fitted.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["model"] == fitted.name and manifest["sparse_buckets"] == [50, 50]
    loaded = load_ranker(tmp_path / "model")
    assert type(loaded) is type(fitted) and loaded.get_params() == json.loads(
        json.dumps(fitted.get_params())
    )
    np.testing.assert_allclose(loaded.predict(test), fitted.predict(test), rtol=0, atol=1e-6)
    fitted.save(tmp_path / "model")  # overwriting an artefact is atomic and works


def test_corrupt_artifact_rejected(fitted: Ranker, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "model")
    with (path / "arrays.npz").open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ArtifactError, match="checksum"):
        load_ranker(path)
    with pytest.raises(ArtifactError, match=r"manifest\.json missing"):
        load_ranker(tmp_path / "nowhere")


def test_unseen_bucket_ids_fold_into_range(fitted: Ranker) -> None:
    features, _, _ = rule_data()
    rows = features.take(np.arange(3000, 3100))
    beyond = rows.sparse + N_BUCKETS * np.array([1, 10**9])  # never seen, far out of range
    unseen = RankerFeatures(rows.dense, beyond, rows.dense_names, rows.sparse_names)
    scores = fitted.predict(unseen)
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores, fitted.predict(rows), atol=1e-6)


def test_batch_equals_single_rows(fitted: Ranker) -> None:
    features, _, _ = rule_data()
    batch = fitted.predict(features.take(np.arange(3000, 3010)))
    singles = np.concatenate([fitted.predict(features.take([i])) for i in range(3000, 3010)])
    np.testing.assert_allclose(singles, batch, rtol=1e-5, atol=1e-6)
    assert fitted.predict(features.take(np.zeros(0, np.int64))).shape == (0,)


def test_columns_must_match_fit(fitted: Ranker) -> None:
    features, _, _ = rule_data()
    rows = features.take(np.arange(5))
    with pytest.raises(ConfigError, match="fitted on 4 dense and 2 sparse"):
        fitted.predict(RankerFeatures(rows.dense[:, :3], rows.sparse))
    with pytest.raises(ConfigError, match="differ from those at fit"):
        fitted.predict(RankerFeatures(rows.dense, rows.sparse, sparse_names=("s1", "s0")))


def test_bad_inputs_rejected(case) -> None:
    name, params = case
    features, y, groups = rule_data()
    model = make_ranker(name, **params)
    g = groups if needs_groups(model) else None
    with pytest.raises(ConfigError, match="one value per row"):
        model.fit(features, y[:-1], groups=g)
    with pytest.raises(ConfigError, match="no rows"):
        model.fit(features.take(np.zeros(0, np.int64)), y[:0])
    with pytest.raises(ConfigError, match="sum to"):
        model.fit(features, y, groups=np.full(10, 7))
    with pytest.raises(ConfigError, match="positive group sizes"):
        model.fit(features, y, groups=np.array([4000.0]))


def test_early_stopping_on_valid(case) -> None:
    name, params = case
    features, y, groups = rule_data()
    model = make_ranker(name, **params)
    ranked = needs_groups(model)
    if name == "lightgbm":
        model.set_params(early_stopping_rounds=5, n_estimators=400)
    valid = LabelledFeatures(
        features.take(np.arange(3000, 4000)), y[3000:], groups[150:] if ranked else None
    )
    model.fit(
        features.take(np.arange(3000)),
        y[:3000],
        groups=groups[:150] if ranked else None,
        valid=valid,
    )
    if name == "lightgbm":
        assert 1 <= model.best_iteration_ < 400
    else:
        assert len(model.valid_loss_) >= 1
        assert model.valid_loss_[model.best_epoch_] == min(model.valid_loss_)


def test_lambdarank_needs_groups_and_grades() -> None:
    features, y, groups = rule_data()
    model = make_ranker("lightgbm", objective="lambdarank", n_estimators=5)
    with pytest.raises(ConfigError, match="needs group sizes for the training rows"):
        model.fit(features, y)
    with pytest.raises(ConfigError, match="relevance grades"):
        model.fit(features, y - 0.5, groups=groups)
    with pytest.raises(ConfigError, match="at most 10000"):
        big = RankerFeatures(np.zeros((10_001, 1), np.float32))
        model.fit(big, np.zeros(10_001), groups=[10_001])
    valid = LabelledFeatures(features.take(np.arange(100)), y[:100])
    with pytest.raises(ConfigError, match="needs group sizes for the valid rows"):
        model.fit(features, y, groups=groups, valid=valid)
    with pytest.raises(ConfigError, match="labels 0 and 1"):
        make_ranker("lightgbm", n_estimators=5).fit(features, y * 2)


def test_sample_weight_changes_the_model(case) -> None:
    name, params = case
    features, y, groups = rule_data()
    train = features.take(np.arange(1000))
    model = make_ranker(name, **params)
    g = groups[:50] if needs_groups(model) else None
    weight = np.where(np.arange(1000) % 2 == 0, 1.0, 3.0)
    if needs_groups(model):  # LightGBM takes one weight per group in lambdarank
        pytest.skip("lambdarank weights are per group")
    a = make_ranker(name, **params).fit(train, y[:1000], groups=g).predict(train)
    b = make_ranker(name, **params).fit(train, y[:1000], groups=g, sample_weight=weight)
    assert not np.allclose(a, b.predict(train))
    with pytest.raises(ConfigError, match=">= 0"):
        model.fit(train, y[:1000], sample_weight=-weight)
