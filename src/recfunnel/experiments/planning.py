"""Sample size, power and minimum detectable effect of a two-arm A/B test.

Two families, named after what they assume:

* **Standardised effects** (``power``, ``sample_size``, ``detectable_effect``): the effect is a
  difference divided by a standard deviation, and the test is a two-sample z-test
  (``test="normal"``, as statsmodels ``NormalIndPower``) or a pooled two-sample t-test
  (``test="t"``, as statsmodels ``TTestIndPower``, noncentral t). Means use these directly with
  ``effect = delta / sd``.
* **Two proportions** (``plan_proportions``, ``proportions_mde``), two methods:

  - ``"cohen-h"``: Cohen's h, the difference of arcsine-square-root transformed proportions
    (``2 asin sqrt(p2) - 2 asin sqrt(p1)``, as statsmodels ``proportion_effectsize``), fed to the
    normal power above. The transform stabilises the variance, so one effect size serves all
    baselines. 10% -> 11% at alpha 0.05 two-sided, power 0.8: **14,744** per arm.
  - ``"pooled"``: the classical pooled-variance formula (Fleiss, without continuity correction):
    the variance under H0 uses the pooled proportion, under H1 the two arms' own proportions,
    ``n1 = (z_a sqrt(pbar qbar (1 + 1/k)) + z_b sqrt(p1 q1 + p2 q2 / k))^2 / (p2 - p1)^2``.
    Same example: **14,751** per arm.

``nobs1`` is the control arm; the treatment arm has ``ratio * nobs1`` (statsmodels' convention).
Alternatives are ``"two-sided"``, ``"larger"`` (treatment above control) and ``"smaller"``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scipy import optimize, special, stats

from recfunnel.core.errors import ConfigError

Alternative = Literal["two-sided", "larger", "smaller"]
Test = Literal["normal", "t"]
ProportionMethod = Literal["cohen-h", "pooled"]
Rounding = Literal["nearest", "up"]

ALTERNATIVES: tuple[str, ...] = ("two-sided", "larger", "smaller")
PROPORTION_METHODS: tuple[str, ...] = ("cohen-h", "pooled")


def _check(alpha: float, ratio: float, alternative: str, power: float | None = None) -> None:
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    if power is not None and not alpha < power < 1.0:
        raise ConfigError(f"power must be in (alpha, 1) = ({alpha}, 1), got {power}")
    if not ratio > 0:
        raise ConfigError(f"ratio (treatment / control size) must be positive, got {ratio}")
    if alternative not in ALTERNATIVES:
        raise ConfigError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")


def cohens_h(p_control: float, p_treatment: float) -> float:
    """Cohen's h of treatment against control: ``2 asin sqrt(p_t) - 2 asin sqrt(p_c)``.

    Positive when the treatment converts more (statsmodels' ``proportion_effectsize(p_t, p_c)``).

    >>> round(cohens_h(0.10, 0.11), 6)
    0.032629
    """
    for p in (p_control, p_treatment):
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"proportions must be in [0, 1], got {p}")
    return 2.0 * math.asin(math.sqrt(p_treatment)) - 2.0 * math.asin(math.sqrt(p_control))


def power(
    effect_size: float,
    nobs1: float,
    *,
    alpha: float = 0.05,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    test: Test = "normal",
) -> float:
    """Power of a two-sample test of a standardised ``effect_size`` with ``nobs1`` controls.

    A two-sided test counts both rejection regions, as statsmodels does.

    >>> round(power(0.2, 392.443), 4)  # Cohen's "small effect" at 80% power
    0.8
    >>> power(0.2, 394, test="t") < power(0.2, 394)
    True
    """
    _check(alpha, ratio, alternative)
    if nobs1 <= 0:
        raise ConfigError(f"nobs1 must be positive, got {nobs1}")
    nobs = 1.0 / (1.0 / nobs1 + 1.0 / (nobs1 * ratio))
    shift = effect_size * math.sqrt(nobs)
    a = alpha / 2.0 if alternative == "two-sided" else alpha
    out = 0.0
    if test == "normal":
        if alternative in ("two-sided", "larger"):
            out += stats.norm.sf(stats.norm.isf(a) - shift)
        if alternative in ("two-sided", "smaller"):
            out += stats.norm.cdf(stats.norm.ppf(a) - shift)
    elif test == "t":
        df = nobs1 + nobs1 * ratio - 2.0
        if df <= 0:
            raise ConfigError(f"a t-test needs more than 2 observations in all, got {nobs1}")
        if alternative in ("two-sided", "larger"):
            out += 1.0 - _nct_cdf(df, shift, stats.t.isf(a, df))
        if alternative in ("two-sided", "smaller"):
            out += _nct_cdf(df, shift, stats.t.ppf(a, df))
    else:
        raise ConfigError(f"test must be 'normal' or 't', got {test!r}")
    return float(out)


def _nct_cdf(df: float, shift: float, x: float) -> float:
    """Noncentral t CDF (``special.nctdtr``; ``stats.nct`` returns nan for a negative shift).

    nctdtr gives nan far in a tail (e.g. shift 18, x = -2.6, df 6000), where statsmodels'
    power is nan too; the CDF there is 0 below the shift and 1 above it, to double precision.
    """
    value = float(special.nctdtr(df, shift, x))
    if math.isnan(value):
        return 0.0 if x < shift else 1.0
    return value


def sample_size(
    effect_size: float,
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    test: Test = "normal",
) -> float:
    """Control-arm size (not rounded) that reaches ``power`` for a standardised effect.

    Round it yourself, or use :func:`plan_proportions` / :func:`plan_means`.

    >>> round(sample_size(0.2), 2)
    392.44
    >>> round(sample_size(cohens_h(0.10, 0.11)), 3)
    14744.105
    """
    target = power
    _check(alpha, ratio, alternative, target)
    d = _signed_effect(effect_size, alternative)

    def gap(n: float) -> float:
        return _power(d, n, alpha, ratio, alternative, test) - target

    # Solved exactly rather than by the closed form: a two-sided test's far tail and the t
    # test's degrees of freedom both move the answer a little.
    lo = 3.0 / (1.0 + ratio) if test == "t" else 1e-6  # t: df >= 1, below it nct degenerates
    if gap(lo) >= 0:
        return lo
    hi = 16.0
    while gap(hi) < 0:
        hi *= 4
    return float(optimize.brentq(gap, lo, hi, xtol=1e-10, rtol=1e-14))


def detectable_effect(
    nobs1: float,
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    test: Test = "normal",
) -> float:
    """Smallest standardised effect detected with ``power`` by ``nobs1`` controls.

    Positive, except for ``alternative="smaller"`` where it is negative.

    >>> round(detectable_effect(392.443), 4)
    0.2
    """
    target = power
    _check(alpha, ratio, alternative, target)
    if nobs1 <= 1:
        raise ConfigError(f"nobs1 must be above 1, got {nobs1}")
    sign = -1.0 if alternative == "smaller" else 1.0

    def gap(d: float) -> float:
        return _power(sign * d, nobs1, alpha, ratio, alternative, test) - target

    hi = 1.0
    while gap(hi) < 0:
        hi *= 2
    return sign * float(optimize.brentq(gap, 1e-12, hi, xtol=1e-14, rtol=1e-14))


def _power(d: float, n: float, alpha: float, ratio: float, alt: str, test: str) -> float:
    return power(d, n, alpha=alpha, ratio=ratio, alternative=alt, test=test)  # type: ignore[arg-type]


def _signed_effect(effect_size: float, alternative: str) -> float:
    if effect_size == 0 or not math.isfinite(effect_size):
        raise ConfigError(f"effect size must be finite and non-zero, got {effect_size}")
    if (alternative == "larger" and effect_size < 0) or (
        alternative == "smaller" and effect_size > 0
    ):
        raise ConfigError(
            f"a one-sided {alternative!r} test cannot detect an effect of sign "
            f"{'-' if effect_size < 0 else '+'}: flip the alternative or the effect"
        )
    return effect_size


@dataclass(frozen=True)
class SamplePlan:
    """Sample sizes of a planned test.

    ``n_per_arm`` is the control arm and ``n_exact`` the solver's unrounded value. By default
    sizes are rounded to the nearest user, the convention of the quoted reference figures
    (10% -> 11% by Cohen's h solves to 14,744.1, quoted as 14,744; power lost: under 1e-5).
    ``rounding="up"`` guarantees the power instead (14,745), which matters for small samples.
    """

    method: str
    n_exact: float
    n_per_arm: int
    n_treatment: int
    total: int
    effect_size: float
    baseline: float
    target: float
    alpha: float
    power: float
    ratio: float
    alternative: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _round(n: float, rounding: str) -> int:
    if rounding == "nearest":
        return max(1, round(n))
    if rounding == "up":
        # A solver value like 14744.0000000001 must not cost a whole extra user.
        return math.ceil(n - 1e-9)
    raise ConfigError(f"rounding must be 'nearest' or 'up', got {rounding!r}")


def _target(baseline: float, mde: float, relative: bool) -> float:
    return baseline * (1.0 + mde) if relative else baseline + mde


def plan_proportions(
    baseline: float,
    mde: float,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    method: ProportionMethod = "cohen-h",
    rounding: Rounding = "nearest",
) -> SamplePlan:
    """Sample size to detect a change of conversion rate from ``baseline`` by ``mde``.

    ``mde`` is absolute (0.10 -> 0.11 is ``mde=0.01``) unless ``relative`` (then 0.10 -> 0.11
    is ``mde=0.1``). ``total`` counts the two arms.

    >>> plan_proportions(0.10, 0.01).n_per_arm
    14744
    >>> plan_proportions(0.10, 0.01, method="pooled").n_per_arm
    14751
    >>> plan_proportions(0.10, 0.1, relative=True).total
    29488
    """
    target_p = _target(baseline, mde, relative)
    _check(alpha, ratio, alternative, power)
    if not 0.0 < baseline < 1.0 or not 0.0 < target_p < 1.0 or target_p == baseline:
        raise ConfigError(
            f"baseline {baseline} and target {target_p} must be distinct proportions in (0, 1)"
        )
    h = cohens_h(baseline, target_p)
    if method == "cohen-h":
        n1 = sample_size(
            h, power=power, alpha=alpha, ratio=ratio, alternative=alternative, test="normal"
        )
    elif method == "pooled":
        _signed_effect(target_p - baseline, alternative)
        n1 = _pooled_n(baseline, target_p, alpha, power, ratio, alternative)
    else:
        raise ConfigError(f"method must be one of {PROPORTION_METHODS}, got {method!r}")
    n_c, n_t = _round(n1, rounding), _round(n1 * ratio, rounding)
    return SamplePlan(
        method=method,
        n_exact=n1,
        n_per_arm=n_c,
        n_treatment=n_t,
        total=n_c + n_t,
        effect_size=h,
        baseline=baseline,
        target=target_p,
        alpha=alpha,
        power=power,
        ratio=ratio,
        alternative=alternative,
    )


def _pooled_n(p1: float, p2: float, alpha: float, pw: float, k: float, alternative: str) -> float:
    za = stats.norm.isf(alpha / 2 if alternative == "two-sided" else alpha)
    zb = stats.norm.isf(1 - pw)
    pbar = (p1 + k * p2) / (1 + k)
    null_sd = math.sqrt(pbar * (1 - pbar) * (1 + 1 / k))
    alt_sd = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2) / k)
    return float((za * null_sd + zb * alt_sd) ** 2 / (p2 - p1) ** 2)


def proportions_mde(
    baseline: float,
    n_per_arm: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    method: ProportionMethod = "cohen-h",
) -> float:
    """Smallest absolute lift of the conversion rate detectable with ``n_per_arm`` controls.

    The lift is upwards (negative for ``alternative="smaller"``); divide by ``baseline`` for
    the relative MDE.

    >>> round(proportions_mde(0.10, 14744), 4)
    0.01
    """
    _check(alpha, ratio, alternative, power)
    if not 0.0 < baseline < 1.0:
        raise ConfigError(f"baseline must be in (0, 1), got {baseline}")
    if method == "cohen-h":
        h = detectable_effect(
            n_per_arm, power=power, alpha=alpha, ratio=ratio, alternative=alternative
        )
        phi = math.asin(math.sqrt(baseline)) + h / 2.0
        if not 0.0 <= phi <= math.pi / 2:
            raise ConfigError(f"no detectable lift from {baseline} with n={n_per_arm}")
        return math.sin(phi) ** 2 - baseline
    if method != "pooled":
        raise ConfigError(f"method must be one of {PROPORTION_METHODS}, got {method!r}")
    sign = -1.0 if alternative == "smaller" else 1.0
    edge = baseline if sign < 0 else 1.0 - baseline

    def gap(delta: float) -> float:
        return n_per_arm - _pooled_n(
            baseline, baseline + sign * delta, alpha, power, ratio, alternative
        )

    if gap(edge * (1 - 1e-12)) < 0:
        raise ConfigError(f"no detectable lift from {baseline} with n={n_per_arm}")
    return sign * float(optimize.brentq(gap, 1e-12, edge * (1 - 1e-12), xtol=1e-14))


def plan_means(
    mde: float,
    sd: float,
    *,
    baseline: float | None = None,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    test: Test = "t",
    rounding: Rounding = "nearest",
) -> SamplePlan:
    """Sample size to detect a change ``mde`` of a mean metric with standard deviation ``sd``.

    ``relative`` reads ``mde`` as a share of ``baseline`` (the control mean). ``test="t"`` is the
    pooled two-sample t-test (``TTestIndPower``), ``"normal"`` the z-test (``NormalIndPower``).

    >>> plan_means(0.2, 1.0).n_per_arm, plan_means(0.2, 1.0, rounding="up").n_per_arm
    (393, 394)
    """
    if not sd > 0:
        raise ConfigError(f"sd must be positive, got {sd}")
    if relative and baseline is None:
        raise ConfigError("a relative MDE needs the baseline mean")
    base = 0.0 if baseline is None else baseline
    delta = base * mde if relative else mde
    d = delta / sd
    n1 = sample_size(d, power=power, alpha=alpha, ratio=ratio, alternative=alternative, test=test)
    n_c, n_t = _round(n1, rounding), _round(n1 * ratio, rounding)
    return SamplePlan(
        method="t-test" if test == "t" else "z-test",
        n_exact=n1,
        n_per_arm=n_c,
        n_treatment=n_t,
        total=n_c + n_t,
        effect_size=d,
        baseline=base,
        target=base + delta,
        alpha=alpha,
        power=power,
        ratio=ratio,
        alternative=alternative,
    )


def duration_weeks(
    n_per_arm: int, daily_traffic: float, n_arms: int = 2, exposure: float = 1.0
) -> int:
    """Whole weeks needed to enrol ``n_per_arm`` users in each of ``n_arms`` arms.

    ``daily_traffic`` counts new eligible users per day (returning users add no sample to a
    user-randomised test) and ``exposure`` is the share of them put in the experiment. Rounded
    up to whole weeks so each weekday is equally represented (weekly seasonality).

    >>> duration_weeks(14744, daily_traffic=2000)
    3
    >>> duration_weeks(14744, daily_traffic=2000, exposure=0.1)
    22
    """
    if n_per_arm <= 0 or n_arms < 2:
        raise ConfigError(f"need n_per_arm > 0 and at least 2 arms, got {n_per_arm}, {n_arms}")
    if not daily_traffic > 0 or not 0.0 < exposure <= 1.0:
        raise ConfigError(
            f"daily_traffic must be positive and exposure in (0, 1], got {daily_traffic}, "
            f"{exposure}"
        )
    days = n_per_arm * n_arms / (daily_traffic * exposure)
    return max(1, math.ceil(days / 7.0 - 1e-12))
