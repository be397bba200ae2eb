"""Wald's sequential probability ratio test (1945), restarted so it runs on an endless stream."""

from __future__ import annotations

import math
from typing import Self

from recfunnel.core.drift import DriftDetector
from recfunnel.core.errors import DataError

FAMILIES = ("gaussian", "bernoulli")


class SPRT(DriftDetector):
    r"""Sequential probability ratio test between a null mean ``mu0`` and an alternative ``mu1``.

    The log-likelihood ratio :math:`S = \sum_t \log f_1(x_t) / f_0(x_t)` grows by

    * Gaussian (known or learned σ):
      :math:`\frac{\mu_1 - \mu_0}{\sigma^2}\left(x - \frac{\mu_0 + \mu_1}{2}\right)`;
    * Bernoulli (0/1 error streams, ``mu0 = p0``, ``mu1 = p1``):
      :math:`x \log\frac{p_1}{p_0} + (1 - x)\log\frac{1 - p_1}{1 - p_0}`.

    Wald's boundaries are :math:`A = \log\frac{1-\beta}{\alpha}` and
    :math:`B = \log\frac{\beta}{1-\alpha}`: :math:`S \ge A` accepts H1, which is the drift
    detection; :math:`S \le B` accepts H0, silently. Either decision ends a test and the next
    sample starts a new one at :math:`S = 0`, so the detector runs on an endless stream (the
    repeated test is close to a CUSUM whose floor is B instead of 0). The hypotheses are fixed:
    while the stream stays at ``mu1`` every test accepts H1 again, so detections repeat every
    few samples (a persistent alarm). The test is one-sided: a change away from ``mu1`` is
    never detected (use two detectors, or CUSUM, for both directions).

    Parameters
    ----------
    mu0, mu1
        Means under H0 (in control) and H1 (the change worth detecting); for
        ``family="bernoulli"`` the error probabilities p0 and p1, in (0, 1).
    sigma
        Standard deviation of the Gaussian family; ``None`` learns it from the first
        ``warmup`` samples (sample standard deviation, ddof=1; kept after detections, since
        the hypotheses are about the mean). Ignored for Bernoulli.
    alpha
        Type I error of *one test*. **False alarms**: on an endless stream alpha is spent
        once per test, and under H0 a test lasts only about :math:`|B| / E_0[\text{step}]`
        samples (9 samples for a 1σ gap with the defaults), so the alarm rate is roughly
        alpha / 9 per sample: the textbook alpha = 0.05 means one false alarm every ~200
        samples. The defaults (``alpha=1e-4``, ``mu0=0, mu1=1, sigma=1``) gave about 0.01
        alarms per 10,000 N(0, 1) samples and found a 1σ shift after about 21 samples; with
        σ learned from 100 samples, about 0.5 per 10,000 (``benchmarks/drift_vs_river.py``).
        Wald's approximation ignores the overshoot, so the true rate is below alpha / E[N].
    beta
        Type II error of one test. Smaller beta makes H0 acceptance slower (longer tests),
        which lowers the alarm rate per sample a little and slows nothing down under H1.
    family
        ``"gaussian"`` or ``"bernoulli"`` (then inputs must be 0/1).
    warmup
        Samples used to learn σ when ``sigma`` is None; nothing is tested before.

    Examples
    --------
    >>> import numpy as np
    >>> from recfunnel.monitoring.drift import SPRT
    >>> rng = np.random.default_rng(7)
    >>> errors = np.concatenate([rng.random(3000) < 0.1, rng.random(500) < 0.3])
    >>> sprt = SPRT(mu0=0.1, mu1=0.3, family="bernoulli")
    >>> sprt.update_many(errors).tolist()[:3]  # then again every few dozen samples
    [3118, 3164, 3186]
    >>> sprt.n_tests  # tests ended by accepting H0 or H1
    79

    References
    ----------
    A. Wald (1945). Sequential tests of statistical hypotheses. *The Annals of Mathematical
    Statistics* 16(2), 117–186.
    """

    def __init__(
        self,
        mu0: float = 0.0,
        mu1: float = 1.0,
        sigma: float | None = 1.0,
        alpha: float = 1e-4,
        beta: float = 0.01,
        family: str = "gaussian",
        warmup: int = 100,
    ) -> None:
        self.mu0 = mu0
        self.mu1 = mu1
        self.sigma = sigma
        self.alpha = alpha
        self.beta = beta
        self.family = family
        self.warmup = warmup

    def _check_params(self) -> None:
        if self.family not in FAMILIES:
            self._bad_param("family", f"one of {FAMILIES}")
        for name in ("mu0", "mu1"):
            value = getattr(self, name)
            if self.family == "bernoulli" and not 0.0 < value < 1.0:
                self._bad_param(name, "a probability in (0, 1) for family='bernoulli'")
            if not math.isfinite(value):
                self._bad_param(name, "finite")
        if self.mu0 == self.mu1:
            self._bad_param("mu1", f"different from mu0={self.mu0!r}")
        if not 0.0 < self.alpha < 1.0:
            self._bad_param("alpha", "in (0, 1)")
        if not 0.0 < self.beta < 1.0 or self.alpha + self.beta >= 1.0:
            self._bad_param("beta", "in (0, 1) with alpha + beta < 1")
        if self.family == "gaussian":
            if self.sigma is None:
                if not isinstance(self.warmup, int) or self.warmup < 2:
                    self._bad_param("warmup", "an integer >= 2 when sigma is learned")
            elif not (math.isfinite(self.sigma) and self.sigma > 0):
                self._bad_param("sigma", "> 0 or None")

    def _restart(self) -> None:
        self._llr = 0.0
        self._decision: str | None = None
        if self._started:  # after a detection: a new test, same hypotheses and σ
            return
        self._upper = math.log((1.0 - self.beta) / self.alpha)
        self._lower = math.log(self.beta / (1.0 - self.alpha))
        self._n_tests = 0
        learn = self.family == "gaussian" and self.sigma is None
        self._to_learn = self.warmup if learn else 0
        self._n = 0
        self._w_mean = 0.0
        self._w_m2 = 0.0
        if self.family == "bernoulli":
            self._step1 = math.log(self.mu1 / self.mu0)  # LLR of an error
            self._step0 = math.log((1.0 - self.mu1) / (1.0 - self.mu0))  # of a success
        else:
            self._set_sigma(self.sigma if self.sigma is not None else 1.0)

    def _set_sigma(self, sigma: float) -> None:
        self._sd = sigma
        self._slope = (self.mu1 - self.mu0) / (sigma * sigma)
        self._mid = (self.mu0 + self.mu1) / 2.0

    @property
    def log_likelihood_ratio(self) -> float:
        """:math:`S` of the current test after the last update (the value that crossed a
        boundary when the last update ended a test)."""
        return self._llr if self._started else 0.0

    @property
    def bounds(self) -> tuple[float, float]:
        """Wald's ``(B, A)``: accept H0 at or below B, H1 at or above A."""
        return (
            math.log(self.beta / (1.0 - self.alpha)),
            math.log((1.0 - self.beta) / self.alpha),
        )

    @property
    def decision(self) -> str | None:
        """``"h1"`` (drift), ``"h0"`` or None (test continues) for the last update."""
        return self._decision if self._started else None

    @property
    def n_tests(self) -> int:
        """Tests completed (by either decision) since the first update."""
        return self._n_tests if self._started else 0

    def update(self, x: float) -> Self:
        if self.family == "bernoulli" and float(x) not in (0.0, 1.0):
            raise DataError(
                f"SPRT(family='bernoulli') expects a 0/1 error stream (1 = error), got {x!r} "
                f"at sample {self._n_seen}"
            )
        x = self._observe(x)
        if self._decision == "h0":  # H0 accepted at the last update: start a new test
            self._llr = 0.0
        self._decision = None
        if self.family == "bernoulli":
            self._llr += self._step1 if x == 1.0 else self._step0
        elif self._to_learn:
            self._learn(x)
            return self
        else:
            self._llr += self._slope * (x - self._mid)
        if self._llr >= self._upper:
            self._decision = "h1"
            self._drift_detected = True
            self._n_tests += 1
        elif self._llr <= self._lower:
            self._decision = "h0"
            self._n_tests += 1
        return self

    def _learn(self, x: float) -> None:
        self._n += 1
        d = x - self._w_mean
        self._w_mean += d / self._n
        self._w_m2 += d * (x - self._w_mean)
        self._to_learn -= 1
        if not self._to_learn:
            sd = math.sqrt(max(self._w_m2, 0.0) / (self._n - 1))
            self._set_sigma(max(sd, 1e-12 * max(1.0, abs(self._w_mean))))
