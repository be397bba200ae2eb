"""Calibration: known answers, and negative downsampling corrected on a simulation whose true
click probabilities are known."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from recfunnel.core.errors import ConfigError
from recfunnel.core.ranker import RankerFeatures
from recfunnel.evaluation.calibration import (
    binary_entropy,
    calibration_ratio,
    calibration_summary,
    correct_downsampled,
    downsample_negatives,
    log_loss,
    normalized_entropy,
    reliability_curve,
    roc_auc,
)
from recfunnel.ranking import make_ranker

BETA = np.array([0.8, -0.5, 0.3, 0.0, 0.6])
INTERCEPT = -3.5  # about 5% clicks


def test_correction_is_a_shift_of_the_logit_by_ln_w() -> None:
    p = np.array([0.01, 0.2, 0.5, 0.9])
    for w in (1.0, 0.5, 0.1, 0.01):
        q = correct_downsampled(p, w)
        np.testing.assert_allclose(np.log(q / (1 - q)), np.log(p / (1 - p)) + math.log(w))
    assert correct_downsampled(0.5, 0.1) == pytest.approx(1 / 11)  # odds 1 -> 0.1
    # Positives kept at w+ too: only r = w- / w+ matters.
    np.testing.assert_allclose(
        correct_downsampled(p, 0.1, positive_keep_rate=0.5), correct_downsampled(p, 0.2)
    )
    with pytest.raises(ConfigError, match="negative_keep_rate"):
        correct_downsampled(p, 0.0)
    with pytest.raises(ConfigError, match="positive_keep_rate"):
        correct_downsampled(p, 0.1, positive_keep_rate=1.5)


def test_downsampling_keeps_positives_and_a_share_of_negatives() -> None:
    y = np.r_[np.ones(2000), np.zeros(100_000)]
    mask, weights = downsample_negatives(y, 0.1, np.random.default_rng(0))
    assert mask[:2000].all()
    assert abs(mask[2000:].mean() - 0.1) < 0.003  # 3 sd of a binomial share is ~0.0028
    np.testing.assert_array_equal(weights, np.where(y > 0, 1.0, 10.0))
    mask2, weights2 = downsample_negatives(y, 0.1, np.random.default_rng(0), positive_keep_rate=0.5)
    assert abs(mask2[:2000].mean() - 0.5) < 0.04
    assert weights2[0] == 2.0


def test_known_values() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.3])
    assert calibration_ratio(y, p) == pytest.approx(2.0 / 2.0)
    assert calibration_ratio(y, p / 2) == pytest.approx(0.5)
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.7)) / 4
    assert log_loss(y, p) == pytest.approx(expected)
    assert normalized_entropy(y, p, base_rate=0.5) == pytest.approx(expected / math.log(2))
    assert binary_entropy(0.1) == pytest.approx(-(0.1 * math.log(0.1) + 0.9 * math.log(0.9)))
    assert roc_auc(y, p) == 1.0
    # Weighted rows count as repeated rows.
    assert log_loss([1, 0], [0.9, 0.2], [3, 1]) == pytest.approx(
        log_loss([1, 1, 1, 0], [0.9, 0.9, 0.9, 0.2])
    )
    with pytest.raises(ConfigError, match="no positive"):
        calibration_ratio([0, 0], [0.1, 0.2])
    with pytest.raises(ConfigError, match="probabilities"):
        log_loss([0, 1], [0.1, 1.2])
    with pytest.raises(ConfigError, match="background rate"):
        normalized_entropy(y, p, base_rate=0.0)


def test_auc_matches_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.random(500) < 0.3
    s = np.round(rng.random(500) + 0.3 * y, 2)  # ties included
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_reliability_curve_of_a_calibrated_model_is_the_diagonal() -> None:
    rng = np.random.default_rng(4)
    p = rng.random(200_000)
    y = (rng.random(200_000) < p).astype(float)
    curve = reliability_curve(y, p, n_bins=10)
    assert curve.count.sum() == 200_000 and len(curve.count) == 10
    np.testing.assert_allclose(curve.observed_rate, curve.mean_predicted, atol=0.01)
    assert curve.expected_calibration_error() < 0.005
    skewed = reliability_curve(y, p**2, n_bins=5, strategy="quantile")
    assert skewed.expected_calibration_error() > 0.1
    assert max(skewed.count) - min(skewed.count) <= 1


@cache
def simulation(seed: int = 0) -> dict[str, np.ndarray]:
    """A true logistic model: train and full-population test rows with their true p."""
    rng = np.random.default_rng(seed)
    out = {}
    for part, n in (("train", 400_000), ("test", 1_000_000)):
        x = rng.normal(size=(n, len(BETA))).astype(np.float32)
        p = 1 / (1 + np.exp(-(x @ BETA + INTERCEPT)))
        out[f"x_{part}"], out[f"p_{part}"] = x, p
        out[f"y_{part}"] = (rng.random(n) < p).astype(float)
    mask, weights = downsample_negatives(out["y_train"], 0.1, rng)
    out["mask"], out["weights"] = mask, weights
    return out


def test_simulation_logistic_regression_corrected_is_calibrated() -> None:
    sim = simulation()
    mask, w = sim["mask"], 0.1
    model = LogisticRegression(C=1e6, max_iter=1000).fit(sim["x_train"][mask], sim["y_train"][mask])
    # Known answer: downsampling shifts only the intercept, by -ln w.
    np.testing.assert_allclose(model.coef_[0], BETA, atol=0.03)
    assert model.intercept_[0] == pytest.approx(INTERCEPT - math.log(w), abs=0.05)

    y, p = sim["y_test"], model.predict_proba(sim["x_test"])[:, 1]
    q = correct_downsampled(p, w)
    base_rate = float(sim["y_train"].mean())  # the full training set's rate
    raw, fixed = (
        calibration_summary(y, p, base_rate=base_rate),
        calibration_summary(y, q, base_rate=base_rate),
    )
    assert abs(fixed["calibration_ratio"] - 1) <= 0.02, fixed
    assert raw["calibration_ratio"] > 4  # uncorrected: far off (about 1/w on rare clicks)
    assert fixed["auc"] == raw["auc"]  # a monotone map leaves the ranking alone
    truth = calibration_summary(y, sim["p_test"], base_rate=base_rate)
    assert fixed["normalized_entropy"] < 1 < raw["normalized_entropy"]
    assert fixed["normalized_entropy"] == pytest.approx(truth["normalized_entropy"], abs=0.002)
    # Reading the formula with s = w instead of 1/w makes calibration worse, not better.
    wrong = p / (p + (1 - p) * w)
    assert calibration_ratio(y, wrong) > raw["calibration_ratio"]


def test_simulation_lightgbm_ranker_corrected_is_calibrated() -> None:
    sim = simulation()
    mask, rows = sim["mask"], slice(0, 200_000)  # 200k test rows keep the test quick
    ranker = make_ranker("lightgbm", n_estimators=100, learning_rate=0.1, num_leaves=15)
    ranker.fit(RankerFeatures(sim["x_train"][mask]), sim["y_train"][mask])
    y = sim["y_test"][rows]
    p = ranker.predict(RankerFeatures(sim["x_test"][rows]))
    q = correct_downsampled(p, 0.1)
    assert abs(calibration_ratio(y, q) - 1) <= 0.02, calibration_ratio(y, q)
    # Against the true probabilities (no label noise), too.
    assert abs(q.sum() / sim["p_test"][rows].sum() - 1) <= 0.02
    assert calibration_ratio(y, p) > 4
