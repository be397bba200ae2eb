from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recfunnel.core.errors import ConfigError
from recfunnel.evaluation.bootstrap import bootstrap_ci, paired_test


def test_ci_coverage_on_a_known_distribution() -> None:
    # 95% intervals of a normal mean should cover the truth about 95% of the time.
    rng = np.random.default_rng(0)
    covered = 0
    trials = 200
    for t in range(trials):
        lo, hi = bootstrap_ci(rng.normal(0.3, 1.0, 200), n_resamples=400, seed=t)
        covered += lo <= 0.3 <= hi
    assert 0.90 <= covered / trials <= 0.99


def test_ci_width_matches_normal_theory() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 2000)
    lo, hi = bootstrap_ci(x, n_resamples=2000, seed=0)
    expected = 2 * 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert (hi - lo) == pytest.approx(expected, rel=0.1)


def test_paired_test_agrees_with_scipy_and_detects_no_difference() -> None:
    rng = np.random.default_rng(2)
    a = rng.random(400)
    b = a + rng.normal(0.02, 0.1, 400)
    r = paired_test(a, b, metric="ndcg@10")
    assert r.p_value_t == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert r.p_value_wilcoxon == pytest.approx(stats.wilcoxon(b - a).pvalue)
    assert r.difference == pytest.approx((b - a).mean())
    same = paired_test(a, a)
    assert same.difference == 0.0 and same.p_value_t == 1.0
    # Under the null the permutation p-value is roughly uniform: not tiny.
    null = paired_test(a, a + rng.normal(0, 0.1, 400), seed=3)
    assert null.p_value_permutation > 0.001


def test_paired_test_rejects_mismatched_lengths() -> None:
    with pytest.raises(ConfigError, match="equal-length"):
        paired_test([1.0, 2.0], [1.0])
