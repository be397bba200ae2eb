"""Uncertainty of mean metrics: bootstrap intervals over users and paired model comparisons.

scipy's ``stats.bootstrap``, ``ttest_rel``, ``wilcoxon`` and ``permutation_test`` do the work;
this module only fixes the protocol (resample users, percentile intervals, seeded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from recfunnel.core.errors import ConfigError


def bootstrap_ci(
    values: npt.ArrayLike,
    *,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
    method: str = "percentile",
) -> tuple[float, float]:
    """Bootstrap confidence interval of the mean of per-user ``values``.

    Percentile by default: BCa needs a jackknife whose memory grows with the square of the
    number of users. A constant sample gives a zero-width interval.

    >>> bootstrap_ci([1.0, 1.0, 1.0])
    (1.0, 1.0)
    >>> lo, hi = bootstrap_ci(np.random.default_rng(0).normal(size=500), seed=1)
    >>> lo < 0 < hi
    True
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return (float("nan"), float("nan"))
    if np.all(v == v[0]):
        return (float(v[0]), float(v[0]))
    res = stats.bootstrap(
        (v,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method=method,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


@dataclass(frozen=True)
class PairedComparison:
    """Model B minus model A on the same users."""

    metric: str
    mean_a: float
    mean_b: float
    difference: float
    ci95: tuple[float, float]
    p_value_t: float
    p_value_wilcoxon: float
    p_value_permutation: float
    n_users: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_test(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    metric: str = "metric",
    n_resamples: int = 2000,
    seed: int = 0,
) -> PairedComparison:
    """Compare two models' per-user values on the same users.

    Reports the mean difference (b - a) with a bootstrap 95% interval, the paired t-test, the
    Wilcoxon signed-rank test and a sign-flip permutation test (two-sided p-values).

    >>> rng = np.random.default_rng(0)
    >>> a = rng.random(300)
    >>> r = paired_test(a, a + 0.1 + 0.05 * rng.normal(size=300))
    >>> round(r.difference, 2), r.p_value_t < 1e-6, r.ci95[0] < r.difference < r.ci95[1]
    (0.1, True, True)
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(
            f"paired test needs two equal-length 1-D arrays, got {x.shape}, {y.shape}"
        )
    d = y - x
    if len(d) < 2 or np.all(d == d[0]):
        p = 1.0 if np.all(d == 0) else 0.0
        return PairedComparison(
            metric, float(x.mean()), float(y.mean()), float(d.mean()),
            (float(d.mean()), float(d.mean())), p, p, p, len(d),
        )  # fmt: skip
    t = stats.ttest_rel(y, x)
    w = stats.wilcoxon(d) if np.any(d != 0) else None
    perm = stats.permutation_test(
        (d,),
        np.mean,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        rng=np.random.default_rng(seed),
    )
    return PairedComparison(
        metric=metric,
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        difference=float(d.mean()),
        ci95=bootstrap_ci(d, n_resamples=n_resamples, seed=seed),
        p_value_t=float(t.pvalue),
        p_value_wilcoxon=float(w.pvalue) if w is not None else 1.0,
        p_value_permutation=float(perm.pvalue),
        n_users=len(d),
    )
