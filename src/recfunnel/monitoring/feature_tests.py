"""Per-feature drift tests: one two-sample test per column, then a multiple-testing correction.

Numeric columns get the Kolmogorov–Smirnov test (:func:`scipy.stats.ks_2samp`), categorical
columns (text, categories, booleans) the chi-square test of homogeneity on a 2 x K table
(:func:`scipy.stats.chi2_contingency`) after pooling rare categories. Next to the p-values, two
effect sizes that do not grow with the sample size:

* **PSI** (population stability index) on bins cut at reference quantiles. The thresholds
  0.1 ("moderate") and 0.25 ("significant") are an industry convention from credit scoring,
  not a statistical test: PSI has no null distribution that depends only on it.
* **Wasserstein distance** between the numeric samples, divided by the reference standard
  deviation so it reads as "how many reference sigmas the mass has to move".

With many columns some p-values fall below ``alpha`` by chance, so the verdict uses p-values
adjusted across columns: Benjamini–Hochberg (false-discovery rate, the default) or Bonferroni
(family-wise error rate). What these tests cannot see is a change in the *joint* distribution
with the marginals unchanged (a correlation flip); :mod:`recfunnel.monitoring.adversarial`
catches that.

The helpers :func:`common_columns` and :func:`column_kind` are shared by the other monitoring
modules: they define which columns are compared and as what.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from recfunnel.core.errors import ConfigError, DataError

ColumnKind = Literal["numeric", "categorical", "datetime"]
Correction = Literal["bh", "bonferroni", "none"]

#: Conventional PSI cut-offs (credit-scoring practice): below 0.1 stable, 0.1–0.25 moderate
#: shift, above 0.25 significant shift.
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
#: Label of missing values when they are counted as a category.
MISSING = "<missing>"
#: Label of the pooled rare categories in the chi-square test.
OTHER = "<other>"


def column_kind(series: pd.Series) -> ColumnKind:
    """How a column is compared: ``numeric`` (KS), ``categorical`` (chi-square) or ``datetime``.

    Booleans are categorical: KS on {0, 1} is valid but a 2 x 2 table says the same more plainly.

    >>> column_kind(pd.Series([1.5, 2.0])), column_kind(pd.Series(["a", "b"]))
    ('numeric', 'categorical')
    >>> column_kind(pd.Series([True, False])), column_kind(pd.Series([pd.Timestamp(0)]))
    ('categorical', 'datetime')
    """
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        return "datetime"
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    return "categorical"


def common_columns(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str] | None = None
) -> dict[str, ColumnKind]:
    """The columns both frames share (in reference order), each with its kind.

    Raises :class:`~recfunnel.core.errors.DataError` (``source`` is ``"reference"`` or
    ``"current"``, ``field`` the column) for an empty frame, no shared column, a requested
    column that is missing, or a column that is numeric on one side and text on the other. A
    column entirely missing on one side takes the kind of the other side (a CSV reader types an
    empty column as float).

    >>> ref = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "c": [0, 1]})
    >>> common_columns(ref, ref.drop(columns="c"))
    {'a': 'numeric', 'b': 'categorical'}
    >>> common_columns(ref, pd.DataFrame({"z": [1]}))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DataError: current: no column in common with the reference ...
    """
    for name, frame in (("reference", reference), ("current", current)):
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(frame).__name__}", source=name)
        if frame.shape[1] == 0:
            raise DataError("no columns", source=name)
        if len(frame) == 0:
            raise DataError("no rows", source=name)
        dup = frame.columns[frame.columns.duplicated()]
        if len(dup):
            raise DataError(f"duplicate column name {dup[0]!r}", source=name, field=str(dup[0]))
    cur_cols = set(current.columns)
    if columns is None:
        names = [c for c in reference.columns if c in cur_cols]
        if not names:
            raise DataError(
                "no column in common with the reference (reference has "
                f"{[str(c) for c in reference.columns]}; current has "
                f"{[str(c) for c in current.columns]})",
                source="current",
            )
    else:
        names = list(columns)
        for col in names:
            for name, frame in (("reference", reference), ("current", current)):
                if col not in frame.columns:
                    raise DataError(
                        f"no column {col!r}; columns present: {[str(c) for c in frame.columns]}",
                        source=name,
                        field=str(col),
                    )
    kinds: dict[str, ColumnKind] = {}
    for col in names:
        ref_col, cur_col = reference[col], current[col]
        k_ref, k_cur = column_kind(ref_col), column_kind(cur_col)
        if k_ref != k_cur:
            if cur_col.isna().all():
                k_cur = k_ref
            elif ref_col.isna().all():
                k_ref = k_cur
            else:
                raise DataError(
                    f"column {col!r} is {k_ref} in the reference ({ref_col.dtype}) but {k_cur} "
                    f"in the current data ({cur_col.dtype}); make the types agree",
                    source="current",
                    field=str(col),
                )
        kinds[str(col)] = k_ref
    return kinds


def category_labels(series: pd.Series) -> pd.Series:
    """Values as strings (so ``1`` and ``"1"`` read from two files agree); missing -> ``<missing>``.

    >>> category_labels(pd.Series(["a", None, 3])).tolist()
    ['a', '<missing>', '3']
    """
    out = series.astype(object).map(str)
    return out.where(series.notna(), MISSING)


def _finite(values: pd.Series | npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=np.float64)
    return arr[np.isfinite(arr)]


@dataclass(frozen=True)
class TwoSampleResult:
    """One two-sample test: its statistic, p-value and degrees of freedom (chi-square only)."""

    statistic: float
    p_value: float
    dof: int | None = None
    pooled: tuple[str, ...] = ()


def ks_test(reference: npt.ArrayLike, current: npt.ArrayLike) -> TwoSampleResult:
    """Two-sample Kolmogorov–Smirnov test on the finite values of both samples.

    Fewer than two finite values on a side: no test (NaN statistic and p-value).

    >>> r = ks_test([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0])
    >>> r.statistic
    0.5
    """
    ref, cur = _finite(reference), _finite(current)
    if len(ref) < 2 or len(cur) < 2:
        return TwoSampleResult(math.nan, math.nan)
    res = stats.ks_2samp(ref, cur)
    return TwoSampleResult(float(res.statistic), float(res.pvalue))


def chi_square_test(
    reference: pd.Series, current: pd.Series, *, min_expected: float = 5.0
) -> TwoSampleResult:
    """Chi-square test of homogeneity of two categorical samples (missing is a category).

    The chi-square approximation needs expected counts of about ``min_expected`` or more in every
    cell, so categories whose smaller expected count falls below it are pooled into
    ``<other>``; if the pool itself is still too small it joins the smallest remaining category.
    Yates' continuity correction is off: it is needlessly conservative at monitoring sample
    sizes. One category left: nothing to test (statistic 0, p-value 1).

    >>> ref = pd.Series(["a"] * 50 + ["b"] * 50)
    >>> r = chi_square_test(ref, pd.Series(["a"] * 70 + ["b"] * 30))
    >>> round(r.statistic, 3), r.dof
    (8.333, 1)
    """
    ref, cur = category_labels(reference), category_labels(current)
    table = pd.DataFrame({"ref": ref.value_counts(), "cur": cur.value_counts()}).fillna(0)
    n_ref, n_cur = len(ref), len(cur)
    expected_min = min(n_ref, n_cur) * table.sum(axis=1) / (n_ref + n_cur)
    rare = expected_min < min_expected
    pooled: tuple[str, ...] = ()
    if rare.any() and rare.sum() < len(table):
        pooled = tuple(str(c) for c in table.index[rare])
        pool = table[rare].sum()
        table = table[~rare]
        if min(n_ref, n_cur) * pool.sum() / (n_ref + n_cur) < min_expected:
            smallest = str(table.sum(axis=1).idxmin())
            table.loc[smallest] += pool
        else:
            table.loc[OTHER] = pool
    elif rare.all():
        # Every category is rare (tiny samples): one pooled row, so nothing to test.
        table = table.sum().to_frame().T
    if len(table) < 2:
        return TwoSampleResult(0.0, 1.0, 0, pooled)
    res = stats.chi2_contingency(table.to_numpy().T, correction=False)
    return TwoSampleResult(float(res.statistic), float(res.pvalue), int(res.dof), pooled)


def _psi_from_counts(
    ref_counts: npt.NDArray[np.float64], cur_counts: npt.NDArray[np.float64], eps: float
) -> float:
    # Empty bins would make log(0): floor the shares at eps (the usual fix; it caps one empty
    # bin's contribution instead of making PSI infinite).
    p = np.maximum(ref_counts / max(ref_counts.sum(), 1.0), eps)
    q = np.maximum(cur_counts / max(cur_counts.sum(), 1.0), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def psi(
    reference: npt.ArrayLike, current: npt.ArrayLike, *, bins: int = 10, eps: float = 1e-4
) -> float:
    """Population stability index of a numeric column: ``sum((q - p) * ln(q / p))`` over bins.

    Bins are cut at the reference quantiles (``bins`` equal-mass bins, fewer when quantiles tie,
    as for a discrete column), the outer bins open-ended so every current value lands somewhere;
    missing values get a bin of their own when either side has any. Shares are floored at
    ``eps``. Read it with the conventional :data:`PSI_MODERATE` (0.1) and
    :data:`PSI_SIGNIFICANT` (0.25) cut-offs.

    By hand: the reference median 2.5 splits [1, 2, 3, 4] into shares (1/2, 1/2) and
    [1, 3, 4, 5] into (1/4, 3/4), so PSI = 1/4 ln 2 + 1/4 ln 3/2.

    >>> round(psi([1, 2, 3, 4], [1, 3, 4, 5], bins=2), 6) == round(0.25 * math.log(3), 6)
    True
    """
    if bins < 1:
        raise ConfigError(f"bins must be >= 1, got {bins}")
    ref = np.asarray(pd.to_numeric(pd.Series(reference), errors="coerce"), dtype=np.float64)
    cur = np.asarray(pd.to_numeric(pd.Series(current), errors="coerce"), dtype=np.float64)
    ref_ok, cur_ok = ~np.isnan(ref), ~np.isnan(cur)
    if not ref_ok.any():
        return math.nan
    edges = np.unique(np.quantile(ref[ref_ok], np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    # side="left" makes bins right-closed, (e_{i-1}, e_i], so a value equal to an edge stays
    # in the lower bin on both sides.
    n_bins = len(edges) + 1
    ref_counts = np.bincount(np.searchsorted(edges, ref[ref_ok]), minlength=n_bins)
    cur_counts = np.bincount(np.searchsorted(edges, cur[cur_ok]), minlength=n_bins)
    if not (ref_ok.all() and cur_ok.all()):
        ref_counts = np.append(ref_counts, (~ref_ok).sum())
        cur_counts = np.append(cur_counts, (~cur_ok).sum())
    return _psi_from_counts(ref_counts.astype(float), cur_counts.astype(float), eps)


def psi_categorical(reference: pd.Series, current: pd.Series, *, eps: float = 1e-4) -> float:
    """PSI over the union of categories (missing is a category), shares floored at ``eps``.

    >>> round(psi_categorical(pd.Series(["a", "b"]), pd.Series(["a", "a", "a", "b"])), 6)
    0.274653
    """
    table = pd.DataFrame(
        {
            "ref": category_labels(reference).value_counts(),
            "cur": category_labels(current).value_counts(),
        }
    ).fillna(0)
    return _psi_from_counts(table["ref"].to_numpy(float), table["cur"].to_numpy(float), eps)


def psi_level(value: float) -> str:
    """``"stable"``, ``"moderate"`` or ``"significant"`` by the conventional PSI cut-offs.

    >>> psi_level(0.05), psi_level(0.1), psi_level(0.3)
    ('stable', 'moderate', 'significant')
    """
    if not np.isfinite(value):
        return "unknown"
    if value >= PSI_SIGNIFICANT:
        return "significant"
    if value >= PSI_MODERATE:
        return "moderate"
    return "stable"


def wasserstein(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """Wasserstein-1 distance divided by the reference standard deviation (finite values).

    A constant reference: 0 when the current sample equals it, else infinity.

    >>> wasserstein([0.0, 2.0], [1.0, 3.0])
    1.0
    """
    ref, cur = _finite(reference), _finite(current)
    if len(ref) == 0 or len(cur) == 0:
        return math.nan
    dist = float(stats.wasserstein_distance(ref, cur))
    scale = float(np.std(ref))
    if scale > 0:
        return dist / scale
    return 0.0 if dist == 0 else math.inf


def adjust_p_values(p_values: npt.ArrayLike, method: Correction = "bh") -> npt.NDArray[np.float64]:
    """p-values adjusted for testing several features; NaN (no test) stays NaN and is not counted.

    ``"bh"``: Benjamini–Hochberg step-up (controls the false-discovery rate; via
    :func:`scipy.stats.false_discovery_control`). ``"bonferroni"``: ``min(1, m p)`` (controls the
    family-wise error rate). ``"none"``: unchanged.

    >>> adjust_p_values([0.01, 0.04, 0.03, 0.20], "bh").round(4).tolist()
    [0.04, 0.0533, 0.0533, 0.2]
    >>> adjust_p_values([0.01, 0.04, float("nan")], "bonferroni").tolist()
    [0.02, 0.08, nan]
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if method == "none":
        out[ok] = p[ok]
    elif method == "bonferroni":
        out[ok] = np.minimum(p[ok] * ok.sum(), 1.0)
    elif method == "bh":
        if ok.any():
            out[ok] = stats.false_discovery_control(p[ok], method="bh")
    else:
        raise ConfigError(f"correction must be 'bh', 'bonferroni' or 'none', got {method!r}")
    return out


def feature_tests(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    alpha: float = 0.05,
    correction: Correction = "bh",
    psi_bins: int = 10,
    min_expected: float = 5.0,
) -> pd.DataFrame:
    """One row per shared column (minus ``exclude``), most significant first.

    Columns: ``feature, kind, test ("ks" | "chi2"), statistic, p_value, p_adjusted, drifted
    (p_adjusted < alpha), psi, psi_level, wasserstein (numeric only), n_reference, n_current``.
    Datetime columns are not tested (they separate old from new by construction; see
    :func:`recfunnel.monitoring.adversarial.detect_leaky_columns`). Rows are sorted by p-value,
    ties (p-values that underflow to 0) broken by the larger PSI.

    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(size=500), "y": rng.normal(size=500)})
    >>> cur = pd.DataFrame({"x": rng.normal(1.0, size=500), "y": rng.normal(size=500)})
    >>> t = feature_tests(ref, cur)
    >>> t["feature"].tolist(), t["drifted"].tolist()
    (['x', 'y'], [True, False])
    """
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    kinds = common_columns(reference, current, columns)
    skip = {str(c) for c in exclude}
    rows = []
    for col, kind in kinds.items():
        if col in skip or kind == "datetime":
            continue
        ref, cur = reference[col], current[col]
        if kind == "numeric":
            res = ks_test(ref, cur)
            test, effect, dist = "ks", psi(ref, cur, bins=psi_bins), wasserstein(ref, cur)
        else:
            res = chi_square_test(ref, cur, min_expected=min_expected)
            test, effect, dist = "chi2", psi_categorical(ref, cur), math.nan
        rows.append(
            {
                "feature": col,
                "kind": kind,
                "test": test,
                "statistic": res.statistic,
                "p_value": res.p_value,
                "psi": effect,
                "psi_level": psi_level(effect),
                "wasserstein": dist,
                "n_reference": int(ref.notna().sum()),
                "n_current": int(cur.notna().sum()),
            }
        )
    out = pd.DataFrame(
        rows,
        columns=[
            "feature", "kind", "test", "statistic", "p_value", "psi", "psi_level",
            "wasserstein", "n_reference", "n_current",
        ],
    )  # fmt: skip
    out.insert(5, "p_adjusted", adjust_p_values(out["p_value"].to_numpy(float), correction))
    out.insert(6, "drifted", (out["p_adjusted"] < alpha).astype(bool))
    order = np.lexsort((-out["psi"].fillna(-np.inf).to_numpy(), out["p_value"].fillna(2.0)))
    return out.iloc[order].reset_index(drop=True)
