"""ADWIN: adaptive windowing (Bifet & Gavaldà 2007), the ADWIN2 exponential-histogram form."""

from __future__ import annotations

import math
from typing import Self

from recfunnel.core.drift import DriftDetector

BOUNDS = ("paper", "moa")


class ADWIN(DriftDetector):
    r"""ADWIN keeps the longest recent window whose mean is consistent, and cuts it at changes.

    The window :math:`W` (``width`` samples) is stored as an exponential histogram: buckets
    of :math:`2^i` samples, at most ``max_buckets`` per size, each holding its sum and its
    sum of squared deviations, so memory and time per check are :math:`O(M \log |W|)`. At a
    check, every split of :math:`W` at a bucket boundary into an older part :math:`W_0`
    (:math:`n_0` samples) and a newer :math:`W_1` (:math:`n_1`) with
    :math:`n_0, n_1 \ge` ``min_window_length`` is tested, and while some split has

    .. math::

        |\hat\mu_{W_0} - \hat\mu_{W_1}| > \varepsilon_{cut}
        = \sqrt{\frac{2}{m} \hat\sigma^2_W L} + \frac{2}{3m} L,
        \qquad L = \ln\frac{2}{\delta'}, \quad \delta' = \frac{\delta}{\ln |W|},

    the oldest bucket is dropped and a drift is reported for this sample (the paper's
    "practical" Bernstein-type bound, §3, with the union bound taken over the
    :math:`O(\ln |W|)` cut points ADWIN2 checks, §4).

    After a detection the window restarts empty on the next sample, like every detector here
    and like river's ``ADWIN``. The paper's estimator keeps :math:`W_1` instead; as a
    detector that turns one false cut into a cluster of them (the window left after a cut is
    the part selected for looking different), which cost about 20% more false alarms at the
    same δ in ``benchmarks/drift_vs_river.py`` for the same delays.

    Parameters
    ----------
    delta
        Confidence δ. **False alarms**: δ bounds the probability of a false cut at *one
        check*, so on an endless stream the bound allows up to δ × (checks) alarms; the real
        rate is far lower (the bound is loose): with the defaults, N(0, 1) noise gave about
        0.03 alarms per 10,000 samples, and δ = 0.07 is where it reaches about 0.7 per 10,000
        (``benchmarks/drift_vs_river.py``).
        Smaller δ means fewer false alarms and slower detection (the bound grows like
        :math:`\sqrt{\ln(1/\delta)}`).
    clock
        Check every ``clock`` samples. 1 is the paper (a check after every sample, O(M log W)
        work each); MOA and river use 32, which adds up to 31 samples (16 on average) of
        delay. The default 8 keeps most of the speed (a check costs about as much as 30
        insertions) and cut the delay on an abrupt 1σ shift from about 32 to 20 samples at
        the same false-alarm rate; but more checks also mean more false alarms at the same
        δ, so at that rate a slow ramp was found about 7% later than with 32.
    max_buckets
        M, buckets of each size kept before the two oldest merge (the paper's and MOA's 5).
        More buckets: more cut points, finer cuts, more memory.
    min_window_length
        Smallest :math:`n_0` and :math:`n_1` tested.
    grace_period
        No check while the window holds this many samples or fewer.
    bound
        ``"paper"``: :math:`1/m = 1/n_0 + 1/n_1` (Bifet & Gavaldà's harmonic mean).
        ``"moa"``: :math:`1/m = 1/(n_0 - L + 1) + 1/(n_1 - L + 1)` with
        L = ``min_window_length``, the small-window correction of MOA's ``ADWIN.java``, which
        river's ``drift.ADWIN`` also uses: slightly larger :math:`\varepsilon_{cut}`, so a
        little slower and fewer false alarms at the same δ (about the same delay at the same
        false-alarm rate). With ``bound="moa", clock=32`` and river's other defaults this
        class reproduces river's detection indices exactly.

    Examples
    --------
    >>> import numpy as np
    >>> from recfunnel.monitoring.drift import ADWIN
    >>> rng = np.random.default_rng(7)
    >>> stream = np.concatenate([rng.normal(0.0, 1.0, 2000), rng.normal(1.0, 1.0, 1000)])
    >>> adwin = ADWIN()
    >>> adwin.update_many(stream).tolist()
    [2031]
    >>> adwin.width  # restarted after the detection: the samples since then
    968

    References
    ----------
    A. Bifet, R. Gavaldà (2007). Learning from time-changing data with adaptive windowing.
    *Proceedings of the 2007 SIAM International Conference on Data Mining*, 443–448.
    """

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 8,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
        bound: str = "paper",
    ) -> None:
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self.bound = bound

    def _check_params(self) -> None:
        if not 0.0 < self.delta < 1.0:
            self._bad_param("delta", "in (0, 1)")
        for name in ("clock", "max_buckets", "min_window_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                self._bad_param(name, "an integer >= 1")
        if not isinstance(self.grace_period, int) or self.grace_period < 0:
            self._bad_param("grace_period", "an integer >= 0")
        if self.bound not in BOUNDS:
            self._bad_param("bound", f"one of {BOUNDS}")

    def _restart(self) -> None:
        # Row i holds buckets of 2**i samples, oldest first: their sums and their sums of
        # squared deviations from the bucket mean.
        self._totals: list[list[float]] = [[]]
        self._variances: list[list[float]] = [[]]
        self._width = 0
        self._total = 0.0
        self._variance = 0.0  # sum of squared deviations over the whole window
        self._tick = 0
        # The small-window correction of the "moa" bound; 0 gives the paper's harmonic mean.
        self._offset = self.min_window_length - 1.0 if self.bound == "moa" else 0.0

    # ---- state -------------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Samples in the window."""
        return self._width if self._started else 0

    @property
    def estimation(self) -> float:
        """Mean of the window (0 when empty)."""
        return self._total / self._width if self._started and self._width else 0.0

    @property
    def variance(self) -> float:
        """Population variance of the window (0 when empty)."""
        return max(self._variance, 0.0) / self._width if self._started and self._width else 0.0

    # ---- algorithm ---------------------------------------------------------------------
    def update(self, x: float) -> Self:
        x = self._observe(x)
        self._insert(x)
        self._tick += 1
        if self._tick % self.clock == 0 and self._width > self.grace_period:
            while self._cut():
                self._drift_detected = True
        return self

    def _insert(self, x: float) -> None:
        # Incremental sum of squared deviations (the paper's §4 / Babcock et al. update).
        self._width += 1
        width = self._width
        if width > 1:
            d = x - self._total / (width - 1)
            self._variance += (width - 1) * d * d / width
        self._total += x
        self._totals[0].append(x)
        self._variances[0].append(0.0)
        # Merge the two oldest buckets of a row that overflowed into one of the next size.
        i = 0
        m = self.max_buckets
        while len(self._totals[i]) > m:
            if i + 1 == len(self._totals):
                self._totals.append([])
                self._variances.append([])
            size = float(1 << i)
            tots, vars_ = self._totals[i], self._variances[i]
            mu1 = tots[0] / size
            mu2 = tots[1] / size
            self._totals[i + 1].append(tots[0] + tots[1])
            self._variances[i + 1].append(
                vars_[0] + vars_[1] + size * 0.5 * (mu1 - mu2) * (mu1 - mu2)
            )
            del tots[:2], vars_[:2]
            i += 1

    def _cut(self) -> bool:
        """Test every split, oldest part first; drop the oldest bucket at the first split that
        differs (the caller repeats until none does)."""
        width = self._width
        dd = math.log(2.0 * math.log(width) / self.delta)
        var = max(self._variance, 0.0) / width
        low = self.min_window_length
        off = self._offset
        n0 = 0.0
        n1 = float(width)
        u0 = 0.0
        u1 = self._total
        for i in range(len(self._totals) - 1, -1, -1):
            size = float(1 << i)
            for total in self._totals[i]:
                n0 += size
                n1 -= size
                u0 += total
                u1 -= total
                if n1 < low:
                    return False  # every later split has a smaller W1
                if n0 < low:
                    continue
                m_recip = 1.0 / (n0 - off) + 1.0 / (n1 - off)
                eps = math.sqrt(2.0 * m_recip * var * dd) + 2.0 / 3.0 * dd * m_recip
                if abs(u0 / n0 - u1 / n1) > eps:
                    self._drop_oldest()
                    return True
        return False

    def _drop_oldest(self) -> None:
        last = len(self._totals) - 1
        size = float(1 << last)
        total = self._totals[last].pop(0)
        var = self._variances[last].pop(0)
        self._width -= int(size)
        self._total -= total
        width = float(self._width)
        mu = total / size
        mu_window = self._total / width
        self._variance -= var + size * width * (mu - mu_window) * (mu - mu_window) / (size + width)
        if not self._totals[last] and last > 0:
            self._totals.pop()
            self._variances.pop()
