"""Fixed-horizon analysis of an A/B test: sample-ratio check, lift, confidence intervals.

Order of reading, as the function :func:`analyze_experiment` enforces:

1. **Sample-ratio mismatch** (:func:`srm_check`): a chi-square test of the assignment counts
   against the designed allocation. p < 0.001 means the assignment or the logging is broken
   (bots, redirects, a crash in one arm) and no lift below can be trusted: the result is
   flagged (or refused with ``on_srm="raise"``).
2. **Lift** of each treatment against control, absolute (``mean_t - mean_c``) and relative
   (``mean_t / mean_c - 1``). The **reported p-value is the absolute one**; the relative lift
   has its own Wald p-value (``p_value_relative``), which differs because its standard error
   also carries the control mean's noise.

   - conversions (0/1): the two-proportion z-test with the pooled variance under H0 (as
     statsmodels ``proportions_ztest``); the interval uses the unpooled (Wald) variance;
   - other metrics: Welch's t-test (as ``scipy.stats.ttest_ind(equal_var=False)``), t interval
     with Welch–Satterthwaite degrees of freedom;
   - relative-lift intervals by the **delta method**:
     ``Var(m_t / m_c) ~ Var(m_t) / m_c^2 + m_t^2 Var(m_c) / m_c^4``.
3. **CUPED** (Deng et al. 2013) when a pre-period covariate ``x`` is known: ``y - theta (x -
   mean(x))`` with ``theta = cov(y, x) / var(x)`` pooled over both arms; randomisation makes
   ``x`` independent of the arm, so the adjustment removes variance without biasing the lift.

Intervals are two-sided ``1 - alpha``; ``alternative`` changes only the p-values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.experiments.sequential import confidence_sequence, msprt_p_values

Alternative = Literal["two-sided", "larger", "smaller"]
FloatArray = npt.NDArray[np.float64]
SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SRMResult:
    """Chi-square goodness of fit of the assignment counts to the designed allocation."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    threshold: float
    flagged: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def srm_check(
    observed: Mapping[str, int],
    weights: Mapping[str, float] | None = None,
    *,
    threshold: float = SRM_THRESHOLD,
) -> SRMResult:
    """Sample-ratio-mismatch test; ``flagged`` when its p-value is below ``threshold``.

    ``weights`` are the designed allocation (relative, e.g. ``{"a": 1, "b": 1}``); equal when
    omitted. The threshold is strict because the check runs on every experiment: at 0.05 one
    healthy experiment in twenty would be thrown away.

    A 50/50 design observed as 5,100 / 4,900 is *not* flagged (chi2 = 4, p = 0.046): that is
    within what chance gives one experiment in twenty. 5,200 / 4,800 is (chi2 = 16, p = 6e-5).

    >>> r = srm_check({"control": 5100, "treatment": 4900})
    >>> round(r.chi2, 3), round(r.p_value, 4), r.flagged
    (4.0, 0.0455, False)
    >>> srm_check({"control": 5200, "treatment": 4800}).flagged
    True
    """
    names = list(observed)
    if len(names) < 2:
        raise ConfigError(f"an SRM check needs at least two variants, got {names}")
    w = (
        {n: 1.0 for n in names}
        if weights is None
        else {str(k): float(v) for k, v in weights.items()}
    )
    missing = set(names) ^ set(w)
    if missing:
        raise ConfigError(
            f"variants observed {sorted(names)} and designed {sorted(w)} differ: {sorted(missing)}"
        )
    obs = np.array([observed[n] for n in names], dtype=np.float64)
    wt = np.array([w[n] for n in names], dtype=np.float64)
    if np.any(obs < 0) or np.any(wt <= 0):
        raise ConfigError("counts must be non-negative and weights positive")
    exp = obs.sum() * wt / wt.sum()
    chi2, p = stats.chisquare(obs, exp)
    return SRMResult(
        observed={n: int(c) for n, c in zip(names, obs, strict=True)},
        expected={n: float(e) for n, e in zip(names, exp, strict=True)},
        chi2=float(chi2),
        p_value=float(p),
        threshold=threshold,
        flagged=bool(p < threshold),
    )


@dataclass(frozen=True)
class LiftResult:
    """Treatment against control on one metric. ``p_value`` is that of the absolute lift."""

    test: str
    control: str
    treatment: str
    n_control: int
    n_treatment: int
    mean_control: float
    mean_treatment: float
    statistic: float
    p_value: float
    absolute_lift: float
    absolute_ci: tuple[float, float]
    relative_lift: float
    relative_ci: tuple[float, float]
    p_value_relative: float
    alpha: float
    alternative: str
    se: float
    variance_reduction: float | None = None
    theta: float | None = None
    p_value_sequential: float | None = None
    sequential_ci: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _p_from_z(z: float, alternative: str) -> float:
    if alternative == "two-sided":
        return float(2 * stats.norm.sf(abs(z)))
    if alternative == "larger":
        return float(stats.norm.sf(z))
    if alternative == "smaller":
        return float(stats.norm.cdf(z))
    raise ConfigError(f"alternative must be two-sided, larger or smaller, got {alternative!r}")


def _relative(
    m_c: float, var_c: float, m_t: float, var_t: float, alpha: float, alternative: str
) -> tuple[float, tuple[float, float], float]:
    """Relative lift, its delta-method interval and Wald p-value (var_* are of the means)."""
    if m_c == 0:
        nan = float("nan")
        return nan, (nan, nan), nan
    rel = m_t / m_c - 1.0
    se = float(np.sqrt(var_t / m_c**2 + m_t**2 * var_c / m_c**4))
    z = stats.norm.isf(alpha / 2)
    p = _p_from_z(rel / se, alternative) if se > 0 else float(rel == 0)
    return float(rel), (float(rel - z * se), float(rel + z * se)), p


def proportions_ztest(
    conversions_control: int,
    n_control: int,
    conversions_treatment: int,
    n_treatment: int,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    control: str = "control",
    treatment: str = "treatment",
) -> LiftResult:
    """Two-proportion z-test of the conversion rates (pooled variance under H0).

    >>> r = proportions_ztest(1000, 10000, 1100, 10000)
    >>> round(r.absolute_lift, 4), round(r.relative_lift, 3), round(r.p_value, 4)
    (0.01, 0.1, 0.0211)
    >>> round(r.p_value_relative, 4)  # the relative lift's own test: a different p-value
    0.0279
    """
    _check_alpha(alpha)
    for c, n, who in (
        (conversions_control, n_control, control),
        (conversions_treatment, n_treatment, treatment),
    ):
        if n <= 0 or not 0 <= c <= n:
            raise DataError(f"{who}: need 0 <= conversions <= n and n > 0, got {c} of {n}")
    pc, pt = conversions_control / n_control, conversions_treatment / n_treatment
    pooled = (conversions_control + conversions_treatment) / (n_control + n_treatment)
    se0 = np.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_treatment))
    zstat = (pt - pc) / se0 if se0 > 0 else 0.0
    var_c, var_t = pc * (1 - pc) / n_control, pt * (1 - pt) / n_treatment
    se = float(np.sqrt(var_c + var_t))
    zq = stats.norm.isf(alpha / 2)
    rel, rel_ci, p_rel = _relative(pc, var_c, pt, var_t, alpha, alternative)
    return LiftResult(
        test="two-proportion z-test",
        control=control,
        treatment=treatment,
        n_control=int(n_control),
        n_treatment=int(n_treatment),
        mean_control=pc,
        mean_treatment=pt,
        statistic=float(zstat),
        p_value=_p_from_z(zstat, alternative),
        absolute_lift=pt - pc,
        absolute_ci=(pt - pc - zq * se, pt - pc + zq * se),
        relative_lift=rel,
        relative_ci=rel_ci,
        p_value_relative=p_rel,
        alpha=alpha,
        alternative=alternative,
        se=se,
    )


def welch_ttest(
    control: npt.ArrayLike,
    treatment: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    names: tuple[str, str] = ("control", "treatment"),
    test: str = "Welch t-test",
) -> LiftResult:
    """Welch's unequal-variance t-test of the means, treatment - control.

    >>> rng = np.random.default_rng(0)
    >>> r = welch_ttest(rng.normal(10, 2, 4000), rng.normal(10.2, 3, 4000))
    >>> r.p_value < 0.01, r.absolute_ci[0] < 0.2 < r.absolute_ci[1], r.test
    (True, True, 'Welch t-test')
    """
    _check_alpha(alpha)
    c = np.asarray(control, dtype=np.float64)
    t = np.asarray(treatment, dtype=np.float64)
    for arr, who in ((c, names[0]), (t, names[1])):
        if arr.ndim != 1 or arr.size < 2:
            raise DataError(f"{who}: a t-test needs at least 2 values per arm, got {arr.size}")
        if not np.all(np.isfinite(arr)):
            raise DataError(f"{who}: values must be finite")
    m_c, m_t = float(c.mean()), float(t.mean())
    var_c, var_t = c.var(ddof=1) / c.size, t.var(ddof=1) / t.size
    se = float(np.sqrt(var_c + var_t))
    diff = m_t - m_c
    if se > 0:
        df = (var_c + var_t) ** 2 / (var_c**2 / (c.size - 1) + var_t**2 / (t.size - 1))
        tstat = diff / se
        if alternative == "two-sided":
            p = float(2 * stats.t.sf(abs(tstat), df))
        elif alternative == "larger":
            p = float(stats.t.sf(tstat, df))
        elif alternative == "smaller":
            p = float(stats.t.cdf(tstat, df))
        else:
            _p_from_z(0.0, alternative)  # raises the ConfigError
        half = float(stats.t.isf(alpha / 2, df) * se)
    else:  # both arms constant: the difference is known exactly
        df, tstat, p, half = float("inf"), 0.0, float(diff == 0), 0.0
    rel, rel_ci, p_rel = _relative(m_c, var_c, m_t, var_t, alpha, alternative)
    return LiftResult(
        test=test,
        control=names[0],
        treatment=names[1],
        n_control=int(c.size),
        n_treatment=int(t.size),
        mean_control=m_c,
        mean_treatment=m_t,
        statistic=float(tstat),
        p_value=p,
        absolute_lift=diff,
        absolute_ci=(diff - half, diff + half),
        relative_lift=rel,
        relative_ci=rel_ci,
        p_value_relative=p_rel,
        alpha=alpha,
        alternative=alternative,
        se=se,
        extra={"df": float(df)},
    )


class CUPED:
    """Controlled-experiment variance reduction with a pre-period covariate (Deng et al. 2013).

    ``fit`` learns ``theta_ = cov(y, x) / var(x)`` and ``x_mean_`` on all units of all arms
    pooled; ``transform`` returns ``y - theta_ (x - x_mean_)``. The adjusted metric has the same
    expectation in every arm (``x`` does not depend on the arm) and variance reduced by the
    share ``variance_reduction_ = corr(y, x)^2`` (on the fitted data).

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=2000)
    >>> y = x + 0.5 * rng.normal(size=2000)
    >>> cuped = CUPED().fit(y, x)
    >>> round(cuped.theta_, 1), round(cuped.variance_reduction_, 1)
    (1.0, 0.8)
    """

    def fit(self, y: npt.ArrayLike, x: npt.ArrayLike) -> CUPED:
        yy, xx = _pair(y, x)
        var_x = xx.var(ddof=1)
        self.x_mean_ = float(xx.mean())
        # A constant covariate carries no information: adjust by nothing rather than divide by 0.
        self.theta_ = float(np.cov(yy, xx, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
        var_y = yy.var(ddof=1)
        adjusted = self.transform(yy, xx)
        self.variance_reduction_ = float(1 - adjusted.var(ddof=1) / var_y) if var_y > 0 else 0.0
        return self

    def transform(self, y: npt.ArrayLike, x: npt.ArrayLike) -> FloatArray:
        if not hasattr(self, "theta_"):
            from recfunnel.core.errors import NotFittedError

            raise NotFittedError("CUPED is not fitted: call fit(y, x) first")
        yy, xx = _pair(y, x)
        return yy - self.theta_ * (xx - self.x_mean_)

    def fit_transform(self, y: npt.ArrayLike, x: npt.ArrayLike) -> FloatArray:
        return self.fit(y, x).transform(y, x)


def _pair(y: npt.ArrayLike, x: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    yy = np.asarray(y, dtype=np.float64)
    xx = np.asarray(x, dtype=np.float64)
    if yy.shape != xx.shape or yy.ndim != 1:
        raise DataError(
            f"metric and covariate must be equal-length 1-D, got {yy.shape}, {xx.shape}"
        )
    if not (np.all(np.isfinite(yy)) and np.all(np.isfinite(xx))):
        raise DataError("metric and covariate must be finite")
    return yy, xx


def cuped_ttest(
    y_control: npt.ArrayLike,
    x_control: npt.ArrayLike,
    y_treatment: npt.ArrayLike,
    x_treatment: npt.ArrayLike,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    names: tuple[str, str] = ("control", "treatment"),
) -> LiftResult:
    """Welch's t-test on CUPED-adjusted values; ``variance_reduction`` is that of the lift.

    ``variance_reduction = 1 - Var_cuped(lift) / Var_raw(lift)``; the relative lift is taken
    against the adjusted control mean (an unbiased estimate of the control mean).

    >>> rng = np.random.default_rng(1)
    >>> x_c, x_t = rng.normal(10, 3, 5000), rng.normal(10, 3, 5000)
    >>> y_c = x_c + rng.normal(0, 1, 5000)
    >>> y_t = x_t + 0.1 + rng.normal(0, 1, 5000)
    >>> r = cuped_ttest(y_c, x_c, y_t, x_t)
    >>> round(r.absolute_lift, 1), round(r.variance_reduction, 1), r.p_value < 1e-6
    (0.1, 0.9, True)
    """
    yc, xc = _pair(y_control, x_control)
    yt, xt = _pair(y_treatment, x_treatment)
    cuped = CUPED().fit(np.concatenate([yc, yt]), np.concatenate([xc, xt]))
    raw = welch_ttest(yc, yt, alpha=alpha, alternative=alternative, names=names)
    adj = welch_ttest(
        cuped.transform(yc, xc),
        cuped.transform(yt, xt),
        alpha=alpha,
        alternative=alternative,
        names=names,
        test="Welch t-test (CUPED)",
    )
    reduction = 1.0 - (adj.se / raw.se) ** 2 if raw.se > 0 else 0.0
    return replace(
        adj,
        variance_reduction=float(reduction),
        theta=cuped.theta_,
        extra={**adj.extra, "raw_absolute_lift": raw.absolute_lift, "raw_p_value": raw.p_value},
    )


@dataclass(frozen=True)
class ExperimentAnalysis:
    """SRM check first, then one :class:`LiftResult` per treatment against ``control``."""

    control: str
    metric: str
    kind: str
    srm: SRMResult
    comparisons: list[LiftResult]
    tau: float | None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "metric": self.metric,
            "kind": self.kind,
            "reported_p_value": "absolute lift (mean_t - mean_c); relative lift has its own",
            "relative_ci_method": "delta method",
            "srm": self.srm.to_dict(),
            "comparisons": [c.to_dict() for c in self.comparisons],
            "sequential": {
                "method": "mSPRT (Johari et al. 2017), normal mixing N(0, tau^2)",
                "tau": self.tau,
                "note": "computed on all data at once: valid at this look whatever looks came "
                "before; with a time column the report gives the running minimum",
            },
            "warnings": list(self.warnings),
        }


def analyze_experiment(
    variants: Sequence[str] | npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    control: str,
    covariate: npt.ArrayLike | None = None,
    kind: Literal["auto", "binary", "continuous"] = "auto",
    weights: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    tau: float | None = None,
    srm_threshold: float = SRM_THRESHOLD,
    on_srm: Literal["flag", "raise"] = "flag",
    metric: str = "metric",
) -> ExperimentAnalysis:
    """Analyse a unit-level experiment table: SRM check, then each treatment against control.

    ``kind="auto"`` uses the two-proportion z-test when every value is 0 or 1 and there is no
    covariate, Welch's t-test otherwise (CUPED-adjusted with a ``covariate``). ``tau`` is the
    mSPRT mixing sd for the sequential p-value (``None``: ``0.1 *`` the metric's sd).

    >>> v = ["control"] * 5000 + ["treatment"] * 5000
    >>> rng = np.random.default_rng(0)
    >>> y = np.concatenate([rng.random(5000) < 0.10, rng.random(5000) < 0.13]).astype(int)
    >>> res = analyze_experiment(v, y, control="control")
    >>> res.kind, res.srm.flagged, res.comparisons[0].p_value < 0.001
    ('binary', False, True)
    """
    _check_alpha(alpha)
    labels = np.asarray(variants).astype(str)
    y = np.asarray(values, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != y.shape:
        raise DataError(
            f"variants and values must be equal-length 1-D, got {labels.shape}, {y.shape}"
        )
    if not np.all(np.isfinite(y)):
        raise DataError(f"{metric}: values must be finite")
    x = None if covariate is None else np.asarray(covariate, dtype=np.float64)
    if x is not None and x.shape != y.shape:
        raise DataError(f"covariate has shape {x.shape}, metric {y.shape}")
    names, counts = np.unique(labels, return_counts=True)
    if control not in names:
        raise DataError(f"control variant {control!r} not found; variants are {names.tolist()}")
    if names.size < 2:
        raise DataError(f"need a control and at least one treatment, got only {names.tolist()}")
    srm = srm_check(
        dict(zip(names.tolist(), counts.tolist(), strict=True)), weights, threshold=srm_threshold
    )
    warnings: list[str] = []
    if srm.flagged:
        msg = (
            f"sample-ratio mismatch: counts {srm.observed} against expected "
            f"{ {k: round(v, 1) for k, v in srm.expected.items()} } (chi-square p = "
            f"{srm.p_value:.2g} < {srm_threshold}); fix assignment or logging before reading lifts"
        )
        if on_srm == "raise":
            raise DataError(msg)
        warnings.append(msg)
    binary = bool(np.all((y == 0) | (y == 1)))
    if kind == "auto":
        kind = "binary" if binary and x is None else "continuous"
    elif kind == "binary" and not binary:
        raise DataError(f"{metric}: kind 'binary' needs 0/1 values")
    if kind not in ("binary", "continuous"):
        raise ConfigError(f"kind must be auto, binary or continuous, got {kind!r}")
    if tau is None:
        sd = float(y.std(ddof=1)) if y.size > 1 else 0.0
        tau = 0.1 * sd if sd > 0 else 1.0
    results = []
    yc = y[labels == control]
    for name in names.tolist():
        if name == control:
            continue
        yt = y[labels == name]
        if x is not None:
            res = cuped_ttest(
                yc,
                x[labels == control],
                yt,
                x[labels == name],
                alpha=alpha,
                alternative=alternative,
                names=(control, name),
            )
        elif kind == "binary":
            res = proportions_ztest(
                int(yc.sum()),
                yc.size,
                int(yt.sum()),
                yt.size,
                alpha=alpha,
                alternative=alternative,
                control=control,
                treatment=name,
            )
        else:
            res = welch_ttest(yc, yt, alpha=alpha, alternative=alternative, names=(control, name))
        p_seq = float(msprt_p_values(res.absolute_lift, res.se**2, tau=tau))
        lo, hi = confidence_sequence(res.absolute_lift, res.se**2, tau=tau, alpha=alpha)
        results.append(replace(res, p_value_sequential=p_seq, sequential_ci=(float(lo), float(hi))))
    return ExperimentAnalysis(
        control=control,
        metric=metric,
        kind=kind,
        srm=srm,
        comparisons=results,
        tau=tau,
        warnings=warnings,
    )


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
