from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.monitoring.profile import (
    AlertThresholds,
    compare_profiles,
    correlation_changes,
    describe,
)


def _kinds(alerts: list[dict]) -> list[tuple[str, str]]:
    return [(a["feature"], a["kind"]) for a in alerts]


def test_describe_known_values() -> None:
    x = np.array([1.0, 2.0, 4.0, 8.0, np.nan])
    d = describe(pd.DataFrame({"x": x, "c": ["a", "b", "b", None, "c"]}))
    row = d.loc["x"]
    finite = x[~np.isnan(x)]
    assert row["mean"] == pytest.approx(3.75)
    assert row["std"] == pytest.approx(np.std(finite, ddof=1))
    assert row["q50"] == pytest.approx(np.quantile(finite, 0.5))
    assert row["q95"] == pytest.approx(np.quantile(finite, 0.95))
    assert row["missing_rate"] == pytest.approx(0.2) and row["cardinality"] == 4
    assert d.loc["c", "cardinality"] == 3 and math.isnan(d.loc["c", "mean"])


def test_mean_shift_alert_needs_significance_and_size() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(10.0, 1.0, 5000)})
    # +0.3 on a mean of 10: significant (z ~ 15) but 3% of the scale max(|10|, 1): no alert.
    small = pd.DataFrame({"x": rng.normal(10.3, 1.0, 5000)})
    assert _kinds(compare_profiles(ref, small).alerts) == []
    big = pd.DataFrame({"x": rng.normal(11.5, 1.0, 5000)})
    assert _kinds(compare_profiles(ref, big).alerts) == [("x", "mean_shift")]
    # Near-zero mean: the scale is the std, so 0.3 sigma is 30% and alerts.
    ref0 = pd.DataFrame({"x": rng.normal(0.0, 1.0, 2000)})
    cur0 = pd.DataFrame({"x": rng.normal(0.3, 1.0, 2000)})
    assert _kinds(compare_profiles(ref0, cur0).alerts) == [("x", "mean_shift")]
    # Same relative shift on 10 rows is not significant: no alert.
    tiny = compare_profiles(ref0.head(10), pd.DataFrame({"x": rng.normal(0.3, 1.0, 10)}))
    assert _kinds(tiny.alerts) == []


def test_missing_std_and_new_category_alerts() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    ref = pd.DataFrame(
        {"m": rng.normal(size=n), "s": rng.normal(size=n), "c": rng.choice(list("ab"), n)}
    )
    m = rng.normal(size=n)
    m[: n // 10] = np.nan  # 10% missing, was 0%
    cur = pd.DataFrame(
        {"m": m, "s": rng.normal(scale=2.0, size=n), "c": rng.choice(list("abz"), n)}
    )
    comp = compare_profiles(ref, cur)
    assert _kinds(comp.alerts) == [
        ("m", "missing_rate"),
        ("s", "std_change"),
        ("c", "new_categories"),
    ]
    assert comp.alerts[2]["current"] == ["z"]
    quiet = AlertThresholds(missing_rate_increase=0.2, std_ratio=3.0, new_category_min_share=0.5)
    assert compare_profiles(ref, cur, thresholds=quiet).alerts == []


def test_correlation_changes_pearson_and_spearman_side_by_side() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=500)
    ref = pd.DataFrame({"x": x, "y": x + 0.1 * rng.normal(size=500), "z": rng.normal(size=500)})
    # y becomes exp(3x): still monotonic in x (Spearman ~ unchanged) but far from linear.
    cur = pd.DataFrame({"x": x, "y": np.exp(3 * x), "z": rng.normal(size=500)})
    out = correlation_changes(ref, cur)
    top = out.iloc[0]
    assert (top["feature_a"], top["feature_b"]) == ("x", "y")
    assert top["pearson_reference"] == pytest.approx(stats.pearsonr(ref["x"], ref["y"])[0])
    assert top["pearson_current"] == pytest.approx(stats.pearsonr(cur["x"], cur["y"])[0])
    assert top["spearman_current"] == pytest.approx(stats.spearmanr(cur["x"], cur["y"])[0])
    assert top["pearson_change"] < -0.3 and abs(top["spearman_change"]) < 0.05
    assert len(correlation_changes(ref, cur, top_k=1)) == 1
    assert len(correlation_changes(ref, cur, top_k=None)) == 3


def test_correlation_flip_alerts() -> None:
    rng = np.random.default_rng(3)
    z1, z2 = rng.normal(size=(2, 1000))
    ref = pd.DataFrame({"a": z1, "b": 0.8 * z1 + 0.6 * z2})
    cur = pd.DataFrame({"a": z1, "b": -0.8 * z1 + 0.6 * z2})
    comp = compare_profiles(ref, cur)
    assert _kinds(comp.alerts) == [("a ~ b", "correlation_change")]
    assert comp.correlation_changes.loc[0, "pearson_change"] == pytest.approx(-1.6, abs=0.1)


def test_side_by_side_and_exclusions() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0, 3.0], "id": [1, 2, 3]})
    comp = compare_profiles(ref, ref, exclude=["id"])
    table = comp.side_by_side()
    assert table["feature"].tolist() == ["x"]
    assert {"reference_mean", "current_mean", "kind"} <= set(table.columns)
    assert comp.alerts == [] and comp.correlation_changes.empty


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError):
        AlertThresholds(std_ratio=0.5)
    with pytest.raises(ConfigError):
        AlertThresholds(missing_rate_increase=-1)
    with pytest.raises(DataError, match="no rows"):
        compare_profiles(pd.DataFrame({"x": [1.0]}), pd.DataFrame({"x": []}))
