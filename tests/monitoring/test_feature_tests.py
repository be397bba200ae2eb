from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.monitoring.feature_tests import (
    adjust_p_values,
    chi_square_test,
    column_kind,
    common_columns,
    feature_tests,
    ks_test,
    psi,
    psi_categorical,
    psi_level,
    wasserstein,
)


def _correlated(n: int, rho: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Both marginals are N(0, 1) whatever rho is: only the joint distribution moves.
    z1, z2 = rng.normal(size=n), rng.normal(size=n)
    return z1, rho * z1 + math.sqrt(1 - rho**2) * z2


def test_ks_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=300), rng.normal(0.2, size=250)
    ours = ks_test(np.r_[a, np.nan], b)  # missing values are ignored
    ref = stats.ks_2samp(a, b)
    assert ours.statistic == pytest.approx(ref.statistic)
    assert ours.p_value == pytest.approx(ref.pvalue)


def test_ks_needs_two_values_per_side() -> None:
    res = ks_test([1.0], [1.0, 2.0])
    assert math.isnan(res.statistic) and math.isnan(res.p_value)


def test_chi_square_matches_scipy_without_pooling() -> None:
    ref = pd.Series(["a"] * 40 + ["b"] * 35 + ["c"] * 25)
    cur = pd.Series(["a"] * 30 + ["b"] * 30 + ["c"] * 40)
    ours = chi_square_test(ref, cur)
    table = np.array([[40, 35, 25], [30, 30, 40]])
    expect = stats.chi2_contingency(table, correction=False)
    assert ours.statistic == pytest.approx(expect.statistic)
    assert ours.p_value == pytest.approx(expect.pvalue)
    assert ours.dof == 2 and ours.pooled == ()


def test_chi_square_pools_rare_categories() -> None:
    # Expected counts (100 rows a side): d 4, e 1, both below 5, so they are pooled into one
    # <other> row of 5 + 3 + 2 = 10 cells (expected 5: large enough to stay a row).
    ref = pd.Series(["a"] * 50 + ["b"] * 45 + ["d"] * 5)
    cur = pd.Series(["a"] * 45 + ["b"] * 50 + ["d"] * 3 + ["e"] * 2)
    ours = chi_square_test(ref, cur)
    assert set(ours.pooled) == {"d", "e"}
    expect = stats.chi2_contingency(np.array([[50, 45, 5], [45, 50, 5]]), correction=False)
    assert ours.statistic == pytest.approx(expect.statistic)
    assert ours.dof == 2


def test_chi_square_too_small_pool_joins_the_smallest_category() -> None:
    # d + e = 4 + 3 + 2 = 9 cells, expected 4.5 < 5: the pool joins a (95 rows, smaller than b).
    ref = pd.Series(["a"] * 50 + ["b"] * 46 + ["d"] * 4)
    cur = pd.Series(["a"] * 45 + ["b"] * 50 + ["d"] * 3 + ["e"] * 2)
    ours = chi_square_test(ref, cur)
    expect = stats.chi2_contingency(np.array([[54, 46], [50, 50]]), correction=False)
    assert ours.statistic == pytest.approx(expect.statistic)
    assert ours.dof == 1


def test_chi_square_counts_missing_as_a_category() -> None:
    ref = pd.Series(["a"] * 50 + ["b"] * 50)
    cur = pd.Series(["a"] * 40 + ["b"] * 40 + [None] * 20)
    res = chi_square_test(ref, cur)
    assert res.dof == 2 and res.p_value < 1e-4


def test_psi_by_hand_with_an_empty_bin() -> None:
    # Reference terciles of 1..6 cut at 2.667 and 4.333: shares (2/6, 2/6, 2/6).
    # Current [1, 1, 2, 2, 3, 4]: shares (4/6, 2/6, 0) and the empty bin is floored at eps.
    eps = 1e-4
    p = np.array([1 / 3, 1 / 3, 1 / 3])
    q = np.array([2 / 3, 1 / 3, eps])
    expect = float(np.sum((q - p) * np.log(q / p)))
    assert psi([1, 2, 3, 4, 5, 6], [1, 1, 2, 2, 3, 4], bins=3, eps=eps) == pytest.approx(expect)


def test_psi_missing_values_get_their_own_bin() -> None:
    base = psi([1, 2, 3, 4], [1, 2, 3, 4], bins=2)
    assert base == pytest.approx(0.0)
    assert psi([1, 2, 3, 4], [1, 2, 3, 4, None, None], bins=2) > 0.5


def test_psi_categorical_by_hand() -> None:
    # ref (a 1/2, b 1/2, c 0 -> eps), cur (a 1/4, b 1/4, c 1/2).
    eps = 1e-4
    p, q = np.array([0.5, 0.5, eps]), np.array([0.25, 0.25, 0.5])
    expect = float(np.sum((q - p) * np.log(q / p)))
    got = psi_categorical(pd.Series(list("ab")), pd.Series(list("abcc")), eps=eps)
    assert got == pytest.approx(expect)
    assert psi_level(got) == "significant"


def test_wasserstein_is_normalised_by_reference_std() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(scale=3.0, size=200), rng.normal(1.0, 3.0, size=200)
    expect = stats.wasserstein_distance(a, b) / np.std(a)
    assert wasserstein(a, b) == pytest.approx(expect)
    assert wasserstein([1.0, 1.0], [1.0]) == 0.0
    assert wasserstein([1.0, 1.0], [2.0]) == math.inf


def test_bh_by_hand_and_against_scipy() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.20, 0.50])
    # Sorted 0.01, 0.03, 0.04, 0.20, 0.50 -> p m / rank = 0.05, 0.075, 0.0667, 0.25, 0.50;
    # running minimum from the largest rank down.
    expect = [0.05, 0.0666667, 0.0666667, 0.25, 0.5]
    assert adjust_p_values(p, "bh") == pytest.approx(expect, rel=1e-5)
    assert adjust_p_values(p, "bh") == pytest.approx(stats.false_discovery_control(p))
    assert adjust_p_values(p, "bonferroni") == pytest.approx([0.05, 0.2, 0.15, 1.0, 1.0])
    with pytest.raises(ConfigError):
        adjust_p_values(p, "holm")  # type: ignore[arg-type]


def test_shifted_feature_ranked_first_and_only_it_drifts() -> None:
    rng = np.random.default_rng(3)
    n = 800
    ref = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(5)})
    cur = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(5)})
    cur["x3"] += 0.4
    out = feature_tests(ref, cur)
    assert out.loc[0, "feature"] == "x3"
    assert out["drifted"].tolist() == [True, False, False, False, False]
    assert out.loc[0, "wasserstein"] == pytest.approx(0.4, abs=0.1)


def test_correlation_only_change_is_invisible_to_per_feature_tests() -> None:
    rng = np.random.default_rng(4)
    a0, b0 = _correlated(1500, 0.8, rng)
    a1, b1 = _correlated(1500, -0.8, rng)
    out = feature_tests(pd.DataFrame({"a": a0, "b": b0}), pd.DataFrame({"a": a1, "b": b1}))
    assert not out["drifted"].any()
    assert (out["psi"] < 0.1).all()


def test_new_category_drifts_by_chi_square() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"c": rng.choice(list("abc"), 600)})
    cur = pd.DataFrame({"c": np.r_[rng.choice(list("abc"), 540), ["new"] * 60]})
    row = feature_tests(ref, cur).iloc[0]
    assert row["test"] == "chi2" and bool(row["drifted"])


def test_kinds() -> None:
    assert column_kind(pd.Series([1, 2])) == "numeric"
    assert column_kind(pd.Series(["a"], dtype="category")) == "categorical"
    assert column_kind(pd.Series(pd.to_datetime(["2024-01-01"]))) == "datetime"


def test_bad_inputs_raise_clear_errors() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    with pytest.raises(DataError, match="no column in common") as info:
        feature_tests(ref, pd.DataFrame({"y": [1.0]}))
    assert info.value.source == "current"
    with pytest.raises(DataError, match="no rows") as info:
        feature_tests(ref, ref.iloc[:0])
    assert info.value.source == "current"
    with pytest.raises(DataError, match="no columns"):
        feature_tests(pd.DataFrame(), ref)
    with pytest.raises(DataError, match="numeric in the reference") as info:
        feature_tests(ref, pd.DataFrame({"x": ["a", "b"]}))
    assert info.value.field == "x"
    with pytest.raises(DataError, match="no column 'z'") as info:
        feature_tests(ref, ref, columns=["z"])
    assert info.value.field == "z"
    with pytest.raises(DataError, match="DataFrame"):
        common_columns([1, 2], ref)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        feature_tests(ref, ref, alpha=1.5)


def test_all_missing_column_takes_the_other_kind() -> None:
    ref = pd.DataFrame({"c": ["a", "b"]})
    cur = pd.DataFrame({"c": [np.nan, np.nan]})
    assert common_columns(ref, cur) == {"c": "categorical"}
