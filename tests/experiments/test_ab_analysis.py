"""Fixed-horizon analysis against statsmodels and scipy; CUPED by simulation; SRM."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from recfunnel.core.errors import DataError, NotFittedError
from recfunnel.experiments.analysis import (
    CUPED,
    analyze_experiment,
    cuped_ttest,
    proportions_ztest,
    srm_check,
    welch_ttest,
)

sm_prop = pytest.importorskip("statsmodels.stats.proportion")


@pytest.mark.parametrize(
    ("cc", "nc", "ct", "nt", "alternative"),
    [
        (1000, 10000, 1100, 10000, "two-sided"),
        (50, 400, 41, 380, "two-sided"),
        (300, 2000, 345, 2100, "larger"),
        (300, 2000, 255, 2100, "smaller"),
    ],
)
def test_ztest_matches_proportions_ztest(cc, nc, ct, nt, alternative) -> None:
    r = proportions_ztest(cc, nc, ct, nt, alternative=alternative)
    z, p = sm_prop.proportions_ztest([ct, cc], [nt, nc], alternative=alternative)
    assert r.statistic == pytest.approx(z, rel=1e-10)
    assert r.p_value == pytest.approx(p, rel=1e-10)
    pc, pt = cc / nc, ct / nt
    assert r.absolute_lift == pytest.approx(pt - pc)
    assert r.relative_lift == pytest.approx(pt / pc - 1)
    # The absolute CI is the unpooled Wald interval (statsmodels confint_proportions_2indep).
    lo, hi = sm_prop.confint_proportions_2indep(ct, nt, cc, nc, method="wald")
    assert r.absolute_ci == pytest.approx((lo, hi), rel=1e-10)


def test_relative_lift_ci_is_the_delta_method() -> None:
    r = proportions_ztest(1000, 10000, 1100, 10000)
    pc, pt = 0.10, 0.11
    vc, vt = pc * (1 - pc) / 10000, pt * (1 - pt) / 10000
    se = np.sqrt(vt / pc**2 + pt**2 * vc / pc**4)
    assert r.relative_ci == pytest.approx((0.1 - 1.959964 * se, 0.1 + 1.959964 * se), rel=1e-6)
    # Absolute and relative lifts have different p-values; the reported one is absolute.
    assert r.p_value != pytest.approx(r.p_value_relative, rel=1e-3)


@pytest.mark.parametrize("alternative", ["two-sided", "larger", "smaller"])
def test_welch_matches_scipy(alternative) -> None:
    rng = np.random.default_rng(3)
    c, t = rng.exponential(2.0, 700), rng.exponential(2.3, 900)
    r = welch_ttest(c, t, alternative=alternative)
    ref = stats.ttest_ind(
        t,
        c,
        equal_var=False,
        alternative={"larger": "greater"}.get(
            alternative, "less" if alternative == "smaller" else "two-sided"
        ),
    )
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    ci = stats.ttest_ind(t, c, equal_var=False).confidence_interval(0.95)
    assert r.absolute_ci == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_cuped_reduces_variance_and_is_unbiased() -> None:
    # 400 seeded experiments with a true lift of 0.3: the CUPED estimate has the same mean
    # as the raw one (unbiased) and a much smaller spread, as corr(y, x)^2 predicts.
    rng = np.random.default_rng(11)
    sims, n, lift, rho = 400, 500, 0.3, 0.8
    raw, adj, reductions = [], [], []
    for _ in range(sims):
        x = rng.normal(5, 1, (2, n))
        y = 5 + rho * (x - 5) + np.sqrt(1 - rho**2) * rng.normal(size=(2, n))
        y[1] += lift
        r = cuped_ttest(y[0], x[0], y[1], x[1])
        raw.append(r.extra["raw_absolute_lift"])
        adj.append(r.absolute_lift)
        reductions.append(r.variance_reduction)
    raw_a, adj_a = np.array(raw), np.array(adj)
    se_mean = adj_a.std() / np.sqrt(sims)
    assert abs(adj_a.mean() - lift) < 4 * se_mean  # unbiased
    assert abs(raw_a.mean() - lift) < 4 * raw_a.std() / np.sqrt(sims)
    observed_reduction = 1 - adj_a.var() / raw_a.var()
    assert observed_reduction == pytest.approx(rho**2, abs=0.06)
    assert np.mean(reductions) == pytest.approx(rho**2, abs=0.03)


def test_cuped_theta_pools_both_arms() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 300))
    y = 2 * x + rng.normal(size=(2, 300))
    y[1] += 1.0
    cuped = CUPED().fit(y.ravel(), x.ravel())
    assert cuped.theta_ == pytest.approx(np.cov(y.ravel(), x.ravel())[0, 1] / x.var(ddof=1))
    with pytest.raises(NotFittedError):
        CUPED().transform([1.0], [2.0])


def test_srm_5100_4900_is_within_chance_but_5200_4800_is_flagged() -> None:
    # chi2 = 2 * 100^2 / 5000 = 4 -> p = 0.0455: chance, one experiment in 22. Not flagged at
    # the 0.001 threshold (flagging it would throw away ~5% of healthy experiments).
    r = srm_check({"control": 5100, "treatment": 4900})
    assert r.chi2 == pytest.approx(4.0)
    assert r.p_value == pytest.approx(stats.chi2.sf(4.0, 1))
    assert not r.flagged
    assert srm_check({"control": 5200, "treatment": 4800}).flagged  # chi2 16, p 6e-5
    assert srm_check({"control": 51_000, "treatment": 49_000}).flagged  # same 51/49 at 100k
    assert not srm_check({"control": 5000, "treatment": 5000}).flagged
    # A designed 20/80 split observed as designed passes.
    assert not srm_check({"a": 2010, "b": 7990}, {"a": 0.2, "b": 0.8}).flagged


def test_analysis_flags_or_refuses_on_srm() -> None:
    v = ["control"] * 5300 + ["treatment"] * 4700
    y = np.zeros(10_000)
    y[::10] = 1
    res = analyze_experiment(v, y, control="control")
    assert res.srm.flagged and res.warnings and "sample-ratio mismatch" in res.warnings[0]
    with pytest.raises(DataError, match="sample-ratio mismatch"):
        analyze_experiment(v, y, control="control", on_srm="raise")
    with pytest.raises(DataError, match="control variant 'ctl' not found"):
        analyze_experiment(v, y, control="ctl")


def test_analysis_picks_the_test_and_adds_the_sequential_p_value() -> None:
    rng = np.random.default_rng(5)
    v = np.repeat(["control", "b", "c"], 4000)
    # Exactly 10.0%, 10.5% and 13.5% converted.
    y = np.concatenate([np.arange(4000) < k for k in (400, 420, 540)]).astype(float)
    res = analyze_experiment(v, y, control="control", tau=0.02)
    assert res.kind == "binary" and [c.treatment for c in res.comparisons] == ["b", "c"]
    assert all(c.test == "two-proportion z-test" for c in res.comparisons)
    _, c = res.comparisons
    assert c.p_value < 1e-4 and c.p_value_sequential is not None
    # Always valid costs evidence: the mSPRT p-value is above the fixed-horizon one here.
    assert c.p_value <= c.p_value_sequential < 0.05
    lo, hi = c.sequential_ci
    assert lo < c.absolute_lift < hi and lo < c.absolute_ci[0]
    cont = analyze_experiment(v, y + rng.normal(size=12_000), control="control")
    assert cont.kind == "continuous" and cont.comparisons[0].test == "Welch t-test"
