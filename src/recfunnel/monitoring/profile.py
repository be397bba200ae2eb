"""Descriptive statistics of reference vs current data, threshold alerts, correlation changes.

:func:`describe` summarises one frame (count, missing rate, cardinality; mean, std and
quantiles of numeric columns). :func:`compare_profiles` sets the two summaries side by side
and raises *alerts*, dicts a dashboard or pager can show as they are, when a change crosses a
threshold of :class:`AlertThresholds`:

* ``missing_rate``: the share of missing values grew by more than ``missing_rate_increase``.
* ``mean_shift``: the mean moved by more than ``mean_shift_sigmas`` standard errors *and* by
  more than ``mean_relative_change`` of the reference scale ``max(|mean|, std)``. Both must
  hold: the z-rule alone fires on negligible shifts once samples are large, the relative rule
  alone fires on noise when samples are small (and is undefined for a mean near zero, hence
  the ``std`` in the scale).
* ``std_change``: the standard deviation grew or shrank by more than a factor ``std_ratio``.
* ``new_categories``: the current data holds categories the reference never had (taking at
  least ``new_category_min_share`` of the current rows together).
* ``correlation_change``: a pair of numeric columns whose Pearson or Spearman correlation moved
  by more than ``correlation_change``.

:func:`correlation_changes` puts Pearson (linear) and Spearman (monotonic, rank) side by side:
a pair whose Spearman changed but Pearson did not changed shape, not strength, and a Pearson
change without a Spearman one points at outliers.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recfunnel.core.errors import ConfigError
from recfunnel.monitoring.feature_tests import ColumnKind, category_labels, common_columns

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class AlertThresholds:
    """When :func:`compare_profiles` raises an alert; a threshold of ``math.inf`` turns it off."""

    missing_rate_increase: float = 0.05
    mean_shift_sigmas: float = 3.0
    mean_relative_change: float = 0.10
    std_ratio: float = 1.5
    new_category_min_share: float = 0.0
    correlation_change: float = 0.2

    def __post_init__(self) -> None:
        for name in ("missing_rate_increase", "mean_shift_sigmas", "mean_relative_change"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.std_ratio < 1:
            raise ConfigError(f"std_ratio must be >= 1, got {self.std_ratio}")
        if not 0 <= self.new_category_min_share <= 1:
            raise ConfigError(
                f"new_category_min_share must be in [0, 1], got {self.new_category_min_share}"
            )
        if self.correlation_change < 0:
            raise ConfigError(f"correlation_change must be >= 0, got {self.correlation_change}")


def describe(frame: pd.DataFrame, kinds: dict[str, ColumnKind] | None = None) -> pd.DataFrame:
    """One row per column: ``kind, count, missing_rate, cardinality, mean, std, q05 … q95``.

    Moments and quantiles are NaN for categorical and datetime columns.

    >>> d = describe(pd.DataFrame({"x": [1.0, 2.0, None, 3.0], "c": ["a", "b", "a", None]}))
    >>> d["missing_rate"].tolist(), d["cardinality"].tolist(), d["mean"].tolist()
    ([0.25, 0.25], [3, 2], [2.0, nan])
    """
    if kinds is None:
        kinds = common_columns(frame, frame)
    rows = {}
    for col, kind in kinds.items():
        s = frame[col]
        row: dict[str, Any] = {
            "kind": kind,
            "count": len(s),
            "missing_rate": float(s.isna().mean()) if len(s) else math.nan,
            "cardinality": int(s.nunique(dropna=True)),
        }
        if kind == "numeric":
            x = pd.to_numeric(s, errors="coerce").astype("float64").dropna()
            row["mean"] = float(x.mean()) if len(x) else math.nan
            row["std"] = float(x.std(ddof=1)) if len(x) > 1 else math.nan
            qs = x.quantile(list(QUANTILES)) if len(x) else pd.Series(math.nan, QUANTILES)
            for q, v in zip(QUANTILES, qs, strict=True):
                row[f"q{round(q * 100):02d}"] = float(v)
        else:
            row["mean"] = row["std"] = math.nan
            for q in QUANTILES:
                row[f"q{round(q * 100):02d}"] = math.nan
        rows[col] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def correlation_changes(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    top_k: int | None = 10,
) -> pd.DataFrame:
    """Pairs of numeric columns whose correlation changed most, Pearson and Spearman side by side.

    Columns: ``feature_a, feature_b, pearson_reference, pearson_current, pearson_change,
    spearman_reference, spearman_current, spearman_change, max_abs_change``; sorted by
    ``max_abs_change`` (largest first), ``top_k`` rows (all with ``None``). Correlations use the
    rows where both columns are present; a constant column has none (NaN).

    >>> ref = pd.DataFrame({"a": [1.0, 2, 3, 4], "b": [1.0, 2, 3, 4]})
    >>> cur = pd.DataFrame({"a": [1.0, 2, 3, 4], "b": [4.0, 3, 2, 1]})
    >>> correlation_changes(ref, cur).loc[0, ["pearson_change", "spearman_change"]].tolist()
    [-2.0, -2.0]
    """
    kinds = common_columns(reference, current, columns)
    numeric = [c for c, k in kinds.items() if k == "numeric"]
    cols = [
        "feature_a", "feature_b", "pearson_reference", "pearson_current", "pearson_change",
        "spearman_reference", "spearman_current", "spearman_change", "max_abs_change",
    ]  # fmt: skip
    if len(numeric) < 2:
        return pd.DataFrame(columns=cols)
    ref = reference[numeric].apply(pd.to_numeric, errors="coerce").astype("float64")
    cur = current[numeric].apply(pd.to_numeric, errors="coerce").astype("float64")
    corr = {
        (side, method): frame.corr(method=method).to_numpy()
        for side, frame in (("reference", ref), ("current", cur))
        for method in ("pearson", "spearman")
    }
    i, j = np.triu_indices(len(numeric), k=1)
    out = pd.DataFrame({"feature_a": [numeric[a] for a in i], "feature_b": [numeric[b] for b in j]})
    for method in ("pearson", "spearman"):
        r, c = corr["reference", method][i, j], corr["current", method][i, j]
        out[f"{method}_reference"], out[f"{method}_current"] = r, c
        out[f"{method}_change"] = c - r
    out["max_abs_change"] = out[["pearson_change", "spearman_change"]].abs().max(axis=1)
    out = out.sort_values("max_abs_change", ascending=False, kind="stable", na_position="last")
    out = out.reset_index(drop=True)
    return out[cols] if top_k is None else out[cols].head(top_k)


@dataclass
class ProfileComparison:
    """What :func:`compare_profiles` found: side-by-side stats, alerts, correlation changes."""

    reference: pd.DataFrame
    current: pd.DataFrame
    alerts: list[dict[str, Any]] = field(default_factory=list)
    correlation_changes: pd.DataFrame = field(default_factory=pd.DataFrame)

    def side_by_side(self) -> pd.DataFrame:
        """One row per column, ``reference_*`` and ``current_*`` statistics next to each other."""
        ref = self.reference.drop(columns="kind").add_prefix("reference_")
        cur = self.current.drop(columns="kind").add_prefix("current_")
        both = pd.concat([self.reference[["kind"]], ref, cur], axis=1)
        return both.rename_axis("feature").reset_index()


def _alert(feature: str, kind: str, message: str, reference: Any, current: Any) -> dict[str, Any]:
    return {
        "feature": feature,
        "kind": kind,
        "message": message,
        "reference": reference,
        "current": current,
    }


def compare_profiles(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    thresholds: AlertThresholds | None = None,
    top_k: int | None = 10,
) -> ProfileComparison:
    """Describe both frames on their shared columns (minus ``exclude``) and raise alerts.

    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(size=1000), "c": rng.choice(["a", "b"], 1000)})
    >>> cur = pd.DataFrame({"x": rng.normal(0.5, size=1000), "c": rng.choice(["a", "z"], 1000)})
    >>> [(a["feature"], a["kind"]) for a in compare_profiles(ref, cur).alerts]
    [('x', 'mean_shift'), ('c', 'new_categories')]
    """
    th = thresholds if thresholds is not None else AlertThresholds()
    skip = {str(c) for c in exclude}
    kinds = {c: k for c, k in common_columns(reference, current, columns).items() if c not in skip}
    ref_stats, cur_stats = describe(reference, kinds), describe(current, kinds)
    ref_rows, cur_rows = ref_stats.to_dict(orient="index"), cur_stats.to_dict(orient="index")
    alerts: list[dict[str, Any]] = []
    for col, kind in kinds.items():
        r, c = ref_rows[col], cur_rows[col]
        if c["missing_rate"] - r["missing_rate"] > th.missing_rate_increase:
            alerts.append(
                _alert(
                    col,
                    "missing_rate",
                    f"missing rate rose from {r['missing_rate']:.1%} to {c['missing_rate']:.1%}",
                    float(r["missing_rate"]),
                    float(c["missing_rate"]),
                )
            )
        if kind == "numeric":
            alerts.extend(_numeric_alerts(col, reference[col], current[col], r, c, th))
        elif kind == "categorical":
            alerts.extend(_category_alerts(col, reference[col], current[col], th))
    changes = correlation_changes(reference, current, list(kinds), top_k=None)
    for row in changes.to_dict(orient="records"):
        if row["max_abs_change"] > th.correlation_change:
            pr, pc = row["pearson_reference"], row["pearson_current"]
            sr, sc = row["spearman_reference"], row["spearman_current"]
            alerts.append(
                _alert(
                    f"{row['feature_a']} ~ {row['feature_b']}",
                    "correlation_change",
                    f"correlation changed: Pearson {pr:+.2f} -> {pc:+.2f}, "
                    f"Spearman {sr:+.2f} -> {sc:+.2f}",
                    {"pearson": pr, "spearman": sr},
                    {"pearson": pc, "spearman": sc},
                )
            )
    if top_k is not None:
        changes = changes.head(top_k)
    return ProfileComparison(ref_stats, cur_stats, alerts, changes)


def _numeric_alerts(
    col: str,
    ref_col: pd.Series,
    cur_col: pd.Series,
    r: Mapping[Hashable, Any],
    c: Mapping[Hashable, Any],
    th: AlertThresholds,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    n0 = int(ref_col.notna().sum())
    n1 = int(cur_col.notna().sum())
    if n0 < 2 or n1 < 2:
        return out
    delta = c["mean"] - r["mean"]
    se = math.sqrt(r["std"] ** 2 / n0 + c["std"] ** 2 / n1)
    scale = max(abs(r["mean"]), r["std"])
    z = abs(delta) / se if se > 0 else (math.inf if delta != 0 else 0.0)
    relative = abs(delta) / scale if scale > 0 else (math.inf if delta != 0 else 0.0)
    if z > th.mean_shift_sigmas and relative > th.mean_relative_change:
        out.append(
            _alert(
                col,
                "mean_shift",
                f"mean moved from {r['mean']:.4g} to {c['mean']:.4g} ({z:.1f} standard errors, "
                f"{relative:.0%} of the reference scale)",
                float(r["mean"]),
                float(c["mean"]),
            )
        )
    if r["std"] > 0 and c["std"] > 0:
        ratio = c["std"] / r["std"]
        if max(ratio, 1 / ratio) > th.std_ratio:
            out.append(
                _alert(
                    col,
                    "std_change",
                    f"standard deviation changed from {r['std']:.4g} to {c['std']:.4g} "
                    f"(x{ratio:.2f})",
                    float(r["std"]),
                    float(c["std"]),
                )
            )
    return out


def _category_alerts(
    col: str, ref_col: pd.Series, cur_col: pd.Series, th: AlertThresholds
) -> list[dict[str, Any]]:
    seen = set(category_labels(ref_col.dropna()))
    cur = category_labels(cur_col.dropna())
    is_new = ~cur.isin(seen)
    if not is_new.any() or is_new.sum() / max(len(cur_col), 1) < th.new_category_min_share:
        return []
    counts = cur[is_new].value_counts()
    names = [str(v) for v in counts.index[:10]]
    more = f" and {len(counts) - 10} more" if len(counts) > 10 else ""
    share = is_new.sum() / len(cur_col)
    return [
        _alert(
            col,
            "new_categories",
            f"{len(counts)} {'category' if len(counts) == 1 else 'categories'} absent from the "
            f"reference ({share:.1%} of current rows): "
            f"{', '.join(names)}{more}",
            None,
            names,
        )
    ]
