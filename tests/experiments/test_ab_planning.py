"""Planning against statsmodels (NormalIndPower, TTestIndPower, proportion_effectsize)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recfunnel.core.errors import ConfigError
from recfunnel.experiments.planning import (
    cohens_h,
    detectable_effect,
    duration_weeks,
    plan_means,
    plan_proportions,
    power,
    proportions_mde,
    sample_size,
)

sm_power = pytest.importorskip("statsmodels.stats.power")
sm_prop = pytest.importorskip("statsmodels.stats.proportion")

CASES = [
    # effect, alpha, ratio, alternative
    (0.2, 0.05, 1.0, "two-sided"),
    (0.0326294, 0.05, 1.0, "two-sided"),
    (0.5, 0.01, 2.0, "two-sided"),
    (0.3, 0.05, 0.5, "larger"),
    (-0.25, 0.10, 1.5, "smaller"),
]


def test_reference_figures_10_to_11_percent() -> None:
    # definitions.md: 14,744 per arm by Cohen's h, 14,751 by the pooled-variance formula.
    cohen = plan_proportions(0.10, 0.01, alpha=0.05, power=0.8)
    pooled = plan_proportions(0.10, 0.01, alpha=0.05, power=0.8, method="pooled")
    assert (cohen.n_per_arm, pooled.n_per_arm) == (14744, 14751)
    assert (cohen.total, pooled.total) == (29488, 29502)
    # The same test stated as a relative lift of 10%.
    assert plan_proportions(0.10, 0.10, relative=True).n_per_arm == 14744
    # Rounding up guarantees the power: 14,744.1 -> 14,745.
    assert plan_proportions(0.10, 0.01, rounding="up").n_per_arm == 14745
    h = sm_prop.proportion_effectsize(0.11, 0.10)
    assert cohen.n_exact == pytest.approx(
        sm_power.NormalIndPower().solve_power(h, alpha=0.05, power=0.8), rel=1e-6
    )


def test_cohens_h_matches_proportion_effectsize() -> None:
    for p1, p2 in [(0.10, 0.11), (0.5, 0.4), (0.01, 0.02), (0.9, 0.95)]:
        assert cohens_h(p1, p2) == pytest.approx(sm_prop.proportion_effectsize(p2, p1), abs=1e-12)


@pytest.mark.parametrize(("effect", "alpha", "ratio", "alternative"), CASES)
def test_normal_power_matches_normal_ind_power(effect, alpha, ratio, alternative) -> None:
    ref = sm_power.NormalIndPower()
    for n in (50.0, 400.0, 14744.0):
        ours = power(effect, n, alpha=alpha, ratio=ratio, alternative=alternative)
        assert ours == pytest.approx(
            ref.power(effect, n, alpha, ratio=ratio, alternative=alternative), abs=1e-10
        )
    kw = {"alpha": alpha, "ratio": ratio, "alternative": alternative}
    n_sm = ref.solve_power(effect, power=0.8, **kw)
    assert sample_size(effect, power=0.8, **kw) == pytest.approx(n_sm, rel=1e-6)
    _check_effect_size(ref, detectable_effect(300, power=0.8, **kw), 300, kw)


def _check_effect_size(ref, ours: float, n: int, kw: dict) -> None:
    """Our effect size reaches the power to 1e-9 by statsmodels' own power function.

    statsmodels' effect-size root search stops early (its power at its own answer can be off
    by ~5e-6), so against its answer the agreement is to 1e-5 relative, not 1e-6.
    """
    d_sm = ref.solve_power(nobs1=n, power=0.8, **kw)
    assert ref.power(ours, n, kw["alpha"], ratio=kw["ratio"], alternative=kw["alternative"]) == (
        pytest.approx(0.8, abs=1e-9)
    )
    assert ref.power(d_sm, n, kw["alpha"], ratio=kw["ratio"], alternative=kw["alternative"]) == (
        pytest.approx(0.8, abs=1e-5)
    )
    assert ours == pytest.approx(d_sm, rel=1e-5)


@pytest.mark.parametrize(("effect", "alpha", "ratio", "alternative"), CASES)
def test_t_power_matches_ttest_ind_power(effect, alpha, ratio, alternative) -> None:
    ref = sm_power.TTestIndPower()
    for n in (10.0, 80.0, 2000.0):
        ours = power(effect, n, alpha=alpha, ratio=ratio, alternative=alternative, test="t")
        theirs = ref.power(effect, n, alpha, ratio=ratio, alternative=alternative)
        if np.isnan(theirs):  # scipy's nctdtr gives up far in a tail; the power is then ~1
            assert ours == pytest.approx(1.0, abs=1e-12)
        else:
            assert ours == pytest.approx(theirs, abs=1e-10)
    kw = {"alpha": alpha, "ratio": ratio, "alternative": alternative}
    n_sm = ref.solve_power(effect, power=0.8, **kw)
    assert sample_size(effect, power=0.8, test="t", **kw) == pytest.approx(n_sm, rel=1e-6)
    _check_effect_size(ref, detectable_effect(60, power=0.8, test="t", **kw), 60, kw)


def test_plan_means_and_mde_round_trip() -> None:
    ref = sm_power.TTestIndPower()
    plan = plan_means(0.5, 4.0, alpha=0.05, power=0.9)  # d = 0.125
    n_sm = ref.solve_power(0.125, power=0.9, alpha=0.05)
    assert plan.n_exact == pytest.approx(n_sm, rel=1e-6)
    assert plan.n_per_arm == round(n_sm)
    rel = plan_means(0.05, 4.0, baseline=10.0, relative=True, power=0.9)
    assert rel.n_per_arm == plan.n_per_arm
    # The MDE at the planned n is the planned effect, for both proportion methods.
    for method in ("cohen-h", "pooled"):
        n = plan_proportions(0.2, 0.02, method=method).n_exact
        assert proportions_mde(0.2, n, method=method) == pytest.approx(0.02, rel=1e-6)


def test_duration_rounds_up_to_whole_weeks() -> None:
    assert duration_weeks(14744, daily_traffic=2000) == 3  # 14.7 days -> 3 weeks
    assert duration_weeks(7000, daily_traffic=2000) == 1  # exactly 7 days
    assert duration_weeks(7001, daily_traffic=2000) == 2
    assert duration_weeks(1000, daily_traffic=3000, n_arms=3, exposure=0.1) == 2  # 10 days
    assert duration_weeks(10, daily_traffic=1e6) == 1


def test_invalid_inputs_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="one-sided"):
        sample_size(0.2, alternative="smaller")
    with pytest.raises(ConfigError, match="distinct proportions"):
        plan_proportions(0.95, 0.1)
    with pytest.raises(ConfigError, match="method"):
        plan_proportions(0.1, 0.01, method="exact")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="exposure"):
        duration_weeks(100, 100, exposure=0.0)
    assert math.isfinite(sample_size(3.0, test="t"))  # huge effect: tiny but valid n
