"""Sequential tests: always-valid p-values under peeking, and group-sequential boundaries."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recfunnel.core.errors import ConfigError
from recfunnel.experiments.sequential import (
    MixtureSPRT,
    confidence_sequence,
    msprt_log_likelihood_ratio,
    msprt_p_values,
    msprt_proportions,
    obrien_fleming_bounds,
    obrien_fleming_spending,
)


def _normal_paths(rng, sims, looks, per_look, delta, sd=1.0):
    """Cumulative difference of means and its variance at each look (sims x looks)."""
    c = rng.normal(0.0, sd, (sims, looks, per_look)).sum(axis=2).cumsum(axis=1)
    t = rng.normal(delta, sd, (sims, looks, per_look)).sum(axis=2).cumsum(axis=1)
    n = per_look * np.arange(1, looks + 1)
    return t / n - c / n, np.broadcast_to(2 * sd**2 / n, (sims, looks))


def test_llr_is_johari_et_al_two_sample_formula() -> None:
    # Johari et al. (2017), balanced arms of n, known sigma^2:
    # Lambda = sqrt(2s2 / (2s2 + n tau2)) exp(n^2 tau2 d^2 / (4 s2 (2s2 + n tau2)))
    s2, n, tau, d = 1.7, 250, 0.3, 0.21
    expected = 0.5 * np.log(2 * s2 / (2 * s2 + n * tau**2)) + n**2 * tau**2 * d**2 / (
        4 * s2 * (2 * s2 + n * tau**2)
    )
    assert msprt_log_likelihood_ratio(d, 2 * s2 / n, tau=tau) == pytest.approx(expected)


def test_p_values_never_increase() -> None:
    est, var = _normal_paths(np.random.default_rng(1), 50, 40, 20, 0.05)
    p = msprt_p_values(est, var, tau=0.1)
    assert p.shape == (50, 40)
    assert np.all(np.diff(p, axis=1) <= 0)
    assert np.all((p > 0) & (p <= 1))


def test_type_one_error_under_continuous_peeking_aa() -> None:
    # 2,000 A/A experiments, 100 looks each (every 20 users per arm): stopping at the first
    # always-valid p <= 0.05 keeps false positives at most 5%; a fixed-horizon z-test read at
    # every look does not.
    rng = np.random.default_rng(2024)
    est, var = _normal_paths(rng, 2000, 100, 20, 0.0)
    alpha = 0.05
    rejected = msprt_p_values(est, var, tau=0.1)[:, -1] <= alpha
    se_mc = np.sqrt(alpha * (1 - alpha) / 2000)
    assert rejected.mean() <= alpha + 2 * se_mc
    naive = (np.abs(est / np.sqrt(var)) > stats.norm.isf(alpha / 2)).any(axis=1).mean()
    assert naive > 0.25  # the peeking fixed-horizon test, for contrast


def test_power_and_coverage_under_an_effect() -> None:
    rng = np.random.default_rng(7)
    est, var = _normal_paths(rng, 500, 30, 50, 0.2)
    p = msprt_p_values(est, var, tau=0.2)
    assert (p[:, -1] <= 0.05).mean() > 0.8
    lo, hi = confidence_sequence(est, var, tau=0.2, alpha=0.05)
    covered_throughout = ((lo <= 0.2) & (hi >= 0.2)).all(axis=1).mean()
    assert covered_throughout >= 0.95 - 2 * np.sqrt(0.05 * 0.95 / 500)


def test_streaming_object_matches_the_vectorised_function() -> None:
    rng = np.random.default_rng(3)
    test = MixtureSPRT(tau=0.02)
    conv = np.zeros(2)
    n = np.zeros(2)
    est, var = [], []
    for _ in range(12):
        c, t = rng.random(400) < 0.10, rng.random(400) < 0.12
        test.update(c, t)
        conv += [c.sum(), t.sum()]
        n += 400
        pc, pt = conv / n
        est.append(pt - pc)
        # The object uses the unbiased variance: p (1 - p) n / (n - 1) per arm.
        var.append(pc * (1 - pc) / (n[0] - 1) + pt * (1 - pt) / (n[1] - 1))
    assert test.p_values_ == pytest.approx(msprt_p_values(est, var, tau=0.02).tolist(), rel=1e-9)
    assert test.n_looks == 12 and test.estimate == pytest.approx(est[-1])
    lo, hi = test.confidence_interval
    assert lo < test.estimate < hi


def test_proportions_helper_ignores_looks_without_data() -> None:
    p = msprt_proportions([0, 5, 50], [0, 50, 500], [0, 9, 80], [0, 50, 500], tau=0.03)
    assert p[0] == 1.0 and np.all(np.diff(p) <= 0)
    with pytest.raises(ConfigError):
        msprt_p_values([0.1], [0.01], tau=0.0)


def test_obrien_fleming_known_values_and_single_look() -> None:
    # ldbounds / gsDesign, 5 equally spaced looks, two-sided alpha 0.05.
    published = [4.8769, 3.3569, 2.6803, 2.2898, 2.0310]
    ours = obrien_fleming_bounds([0.2, 0.4, 0.6, 0.8, 1.0])
    assert ours == pytest.approx(published, abs=2e-4)
    assert obrien_fleming_bounds([1.0]) == pytest.approx([stats.norm.isf(0.025)])
    assert obrien_fleming_spending(1.0) == pytest.approx(0.05)


def test_obrien_fleming_two_looks_spend_alpha_exactly() -> None:
    # Independent check with the bivariate normal: Corr(Z1, Z2) = sqrt(t1 / t2).
    t = [0.4, 1.0]
    c1, c2 = obrien_fleming_bounds(t)
    r = np.sqrt(t[0] / t[1])
    mvn = stats.multivariate_normal(mean=[0, 0], cov=[[1, r], [r, 1]])
    inside = mvn.cdf([c1, c2]) - mvn.cdf([-c1, c2]) - mvn.cdf([c1, -c2]) + mvn.cdf([-c1, -c2])
    assert 1 - inside == pytest.approx(0.05, abs=1e-5)
    assert 2 * stats.norm.sf(c1) == pytest.approx(obrien_fleming_spending(0.4), rel=1e-6)


def test_obrien_fleming_keeps_alpha_over_fourteen_daily_looks() -> None:
    rng = np.random.default_rng(9)
    looks = 14
    bounds = obrien_fleming_bounds(np.arange(1, looks + 1) / looks)
    z = rng.normal(size=(20_000, looks)).cumsum(axis=1) / np.sqrt(np.arange(1, looks + 1))
    fp = (np.abs(z) >= bounds).any(axis=1).mean()
    assert fp == pytest.approx(0.05, abs=3 * np.sqrt(0.05 * 0.95 / 20_000))
    with pytest.raises(ConfigError):
        obrien_fleming_bounds([0.5, 0.4, 1.0])
