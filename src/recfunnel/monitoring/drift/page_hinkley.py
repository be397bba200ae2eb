"""Page-Hinkley test (Page 1954), one- or two-sided."""

from __future__ import annotations

from typing import Self

from recfunnel.core.drift import DriftDetector

MODES = ("both", "up", "down")


class PageHinkley(DriftDetector):
    r"""Page-Hinkley test for a change in the mean of a stream.

    With :math:`\bar x_T` the running mean since the last (re)start, the cumulative deviation
    :math:`m_T = \sum_{t \le T} (x_t - \bar x_t - \delta)` and :math:`M_T = \min_{0 \le t \le
    T} m_t` (with :math:`m_0 = 0`), an increase is detected when
    :math:`m_T - M_T > \lambda`. The decrease side mirrors it with
    :math:`\sum (x_t - \bar x_t + \delta)` and its running maximum. After a detection the mean
    and the sums restart on the next sample.

    Parameters
    ----------
    delta
        Magnitude of changes that are tolerated (:math:`\delta`), in the units of ``x``; like
        CUSUM's ``k``, about half the shift to detect fastest (0.25: shifts of 0.5σ). The
        statistic drifts down by ``delta`` per stationary sample, so larger values forget
        noise faster and make false alarms rarer, but shifts below ``delta`` may never be
        detected.
    threshold
        :math:`\lambda`, in the units of ``x``. **False alarms**: the stationary statistic is
        a random walk with drift ``-delta`` reflected at 0, whose tail is about
        :math:`\exp(-2\delta\lambda/\sigma^2)`. The defaults are for unit-variance data
        (standardise first, or multiply ``delta`` and ``threshold`` by σ): on N(0, 1) noise
        ``delta=0.25, threshold=16`` gave about 0.4 false alarms per 10,000 samples on long
        streams and 0.5 in the first 2,000 samples after a start, and found a 1σ shift after
        about 20 samples (``benchmarks/drift_vs_river.py``). river's defaults
        (``delta=0.005, threshold=50``) give about 6 per 10,000 on the same noise: with so
        small a ``delta`` the tail above is :math:`e^{-0.5}`.
    min_samples
        No detection before this many samples since the last (re)start (the running mean is
        too noisy before).
    mode
        ``"both"`` (increases and decreases), ``"up"`` (increases only: error rates,
        latencies) or ``"down"``. A two-sided test has about twice the false-alarm rate of
        one side.

    Examples
    --------
    >>> import numpy as np
    >>> from recfunnel.monitoring.drift import PageHinkley
    >>> rng = np.random.default_rng(7)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 2000), rng.normal(1.0, 1.0, 1000)])
    >>> PageHinkley().update_many(stream).tolist()
    [2023]
    >>> PageHinkley(mode="down").update_many(-stream).tolist()
    [2023]
    >>> PageHinkley(mode="down").update_many(stream).tolist()
    []

    References
    ----------
    E. S. Page (1954). Continuous inspection schemes. *Biometrika* 41(1/2), 100–115.
    The form with the running mean and :math:`\delta` is the one of Mouss et al. (2004) and
    Gama et al. (2013), *On evaluating stream learning algorithms*, Machine Learning 90(3).
    """

    def __init__(
        self,
        delta: float = 0.25,
        threshold: float = 16.0,
        min_samples: int = 30,
        mode: str = "both",
    ) -> None:
        self.delta = delta
        self.threshold = threshold
        self.min_samples = min_samples
        self.mode = mode

    def _check_params(self) -> None:
        if not self.delta >= 0:
            self._bad_param("delta", ">= 0")
        if not self.threshold > 0:
            self._bad_param("threshold", "> 0")
        if not isinstance(self.min_samples, int) or self.min_samples < 1:
            self._bad_param("min_samples", "an integer >= 1")
        if self.mode not in MODES:
            self._bad_param("mode", f"one of {MODES}")

    def _restart(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._sum_up = 0.0  # m_T of the increase side, and its running minimum
        self._min_up = 0.0
        self._sum_down = 0.0  # the decrease side, and its running maximum
        self._max_down = 0.0
        self._up = self.mode != "down"
        self._down = self.mode != "up"

    @property
    def statistic(self) -> float:
        """The largest active side of the test after the last update (compared with
        ``threshold``); 0 before the first update."""
        if not self._started:
            return 0.0
        up = self._sum_up - self._min_up if self._up else 0.0
        down = self._max_down - self._sum_down if self._down else 0.0
        return max(up, down)

    def update(self, x: float) -> Self:
        x = self._observe(x)
        self._n += 1
        self._mean += (x - self._mean) / self._n
        dev = x - self._mean
        drift = False
        if self._up:
            self._sum_up += dev - self.delta
            if self._sum_up < self._min_up:
                self._min_up = self._sum_up
            drift = self._sum_up - self._min_up > self.threshold
        if self._down:
            self._sum_down += dev + self.delta
            if self._sum_down > self._max_down:
                self._max_down = self._sum_down
            drift = drift or self._max_down - self._sum_down > self.threshold
        self._drift_detected = drift and self._n >= self.min_samples
        return self
