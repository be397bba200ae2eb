"""Probability calibration: negative downsampling and its correction, and the measures of a
click-probability model (calibration ratio, log loss, normalized entropy, ROC AUC, reliability
curve).

Negative downsampling (He et al. 2014, "Practical Lessons from Predicting Clicks on Ads at
Facebook", §6) keeps every positive and each negative with probability ``w``. A model trained on
the kept rows sees ``1/w`` times the true odds of a click, so its prediction ``p`` is corrected
back to

    q = p / (p + (1 − p) / w)        equivalently   logit(q) = logit(p) + ln w.

With positives kept at ``w₊`` as well, ``w`` is replaced by ``r = w₋ / w₊``. (Some notes write
``p / (p + (1 − p) s)``: the same formula with ``s = 1/w``, the number of original negatives per
kept negative, never ``s = w``.)

Normalized entropy (He et al. 2014, §3.1) is the mean log loss divided by the entropy of a
background rate ``p̄``, which should be the *training* set's click rate; it is an explicit
argument here because train and test rates give different numbers. Compute it, and the
calibration ratio, on data that was not downsampled, with corrected predictions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from recfunnel.core.errors import ConfigError

FloatArray = npt.NDArray[np.float64]


def _rate(value: float, what: str) -> float:
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{what} must be in (0, 1], got {value}")
    return float(value)


def downsample_negatives(
    labels: npt.ArrayLike,
    negative_keep_rate: float,
    rng: np.random.Generator,
    *,
    positive_keep_rate: float = 1.0,
) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    """Which rows to keep, and the importance weights of the kept rows.

    Each positive (label > 0) is kept with probability ``positive_keep_rate``, each negative
    with ``negative_keep_rate``. The weights are ``1 / keep rate`` of each row's class, for
    training with weights instead of correcting afterwards (train on ``labels[mask]`` with
    ``weights[mask]``).

    >>> rng = np.random.default_rng(0)
    >>> y = np.r_[np.ones(1000), np.zeros(9000)]
    >>> mask, weights = downsample_negatives(y, 0.1, rng)
    >>> int(mask[:1000].sum()), round(float(mask[1000:].mean()), 2), weights[[0, -1]].tolist()
    (1000, 0.1, [1.0, 10.0])
    """
    w_neg = _rate(negative_keep_rate, "negative_keep_rate")
    w_pos = _rate(positive_keep_rate, "positive_keep_rate")
    y = np.asarray(labels, dtype=np.float64)
    positive = y > 0
    keep_rate = np.where(positive, w_pos, w_neg)
    mask = rng.random(len(y)) < keep_rate
    return mask, 1.0 / keep_rate


def correct_downsampled(
    p: npt.ArrayLike, negative_keep_rate: float, *, positive_keep_rate: float = 1.0
) -> FloatArray:
    """Calibrated probabilities ``q = p / (p + (1 − p) / r)``, ``r = w₋ / w₊``.

    >>> correct_downsampled([0.5, 0.0, 1.0], 0.1).round(6).tolist()
    [0.090909, 0.0, 1.0]
    >>> float(correct_downsampled(0.3, 1.0))  # nothing was dropped: nothing to correct
    0.3
    """
    r = _rate(negative_keep_rate, "negative_keep_rate") / _rate(
        positive_keep_rate, "positive_keep_rate"
    )
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = p / (p + (1.0 - p) / r)
    return np.where(p <= 0.0, 0.0, q)


def calibration_ratio(
    y: npt.ArrayLike, p: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None
) -> float:
    """Expected over observed clicks: ``Σ p / Σ y`` (1 is calibrated on average; > 1 means
    over-prediction).

    >>> calibration_ratio([0, 1, 0, 1], [0.2, 0.6, 0.4, 0.8])
    1.0
    """
    yy, pp, w = _inputs(y, p, sample_weight)
    observed = float(np.sum(w * yy))
    if observed == 0:
        raise ConfigError("calibration_ratio: no positive labels (ratio undefined)")
    return float(np.sum(w * pp)) / observed


def log_loss(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    sample_weight: npt.ArrayLike | None = None,
    *,
    eps: float = 1e-15,
) -> float:
    """Mean binary cross-entropy in nats, ``p`` clipped to ``[eps, 1 − eps]``.

    >>> round(log_loss([1, 0], [0.8, 0.1]), 6)  # -(ln 0.8 + ln 0.9) / 2
    0.164252
    """
    yy, pp, w = _inputs(y, p, sample_weight)
    pp = np.clip(pp, eps, 1.0 - eps)
    losses = -(yy * np.log(pp) + (1.0 - yy) * np.log1p(-pp))
    return float(np.sum(w * losses) / np.sum(w))


def binary_entropy(rate: float) -> float:
    """Entropy in nats of a Bernoulli(``rate``) label.

    >>> round(binary_entropy(0.5), 6) == round(math.log(2), 6)
    True
    """
    if not 0.0 < rate < 1.0:
        raise ConfigError(f"the background rate must be in (0, 1), got {rate}")
    return -(rate * math.log(rate) + (1.0 - rate) * math.log1p(-rate))


def normalized_entropy(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    *,
    base_rate: float,
    sample_weight: npt.ArrayLike | None = None,
) -> float:
    """NE = log loss / H(``base_rate``); below 1 beats always predicting ``base_rate``.

    ``base_rate`` is the background click rate, by definition that of the training set.

    >>> y = [1, 0, 0, 0]
    >>> normalized_entropy(y, [0.25] * 4, base_rate=0.25)  # the base rate itself scores 1
    1.0
    """
    return log_loss(y, p, sample_weight) / binary_entropy(base_rate)


def roc_auc(y: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """ROC AUC as the Mann–Whitney statistic (ties count one half); NaN with one class only.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), roc_auc([0, 1], [0.5, 0.5])
    (0.75, 0.5)
    """
    labels = np.asarray(y).astype(bool)
    n1 = int(labels.sum())
    n0 = len(labels) - n1
    if n0 == 0 or n1 == 0:
        return math.nan
    ranks = stats.rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per bin of predicted probability: mean prediction, observed rate and row count
    (empty bins dropped)."""

    bin_edges: FloatArray
    mean_predicted: FloatArray
    observed_rate: FloatArray
    count: npt.NDArray[np.int64]

    def expected_calibration_error(self) -> float:
        """Row-weighted mean ``|mean predicted − observed|`` over the bins."""
        gaps = np.abs(self.mean_predicted - self.observed_rate)
        return float(np.sum(self.count * gaps) / np.sum(self.count))


def reliability_curve(
    y: npt.ArrayLike, p: npt.ArrayLike, *, n_bins: int = 10, strategy: str = "uniform"
) -> ReliabilityCurve:
    """Reliability diagram data; ``strategy`` ``"uniform"`` (equal-width bins on [0, 1]) or
    ``"quantile"`` (equal-count bins of ``p``).

    >>> c = reliability_curve([0, 1, 0, 1], [0.1, 0.2, 0.7, 0.9], n_bins=2)
    >>> c.mean_predicted.round(6).tolist(), c.observed_rate.tolist(), c.count.tolist()
    ([0.15, 0.8], [0.5, 0.5], [2, 2])
    """
    yy, pp, _ = _inputs(y, p, None)
    if n_bins <= 0:
        raise ConfigError(f"n_bins must be positive, got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(pp, np.linspace(0.0, 1.0, n_bins + 1)))
    else:
        raise ConfigError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    which = np.clip(np.searchsorted(edges, pp, side="right") - 1, 0, len(edges) - 2)
    count = np.bincount(which, minlength=len(edges) - 1)
    keep = count > 0
    mean_p = np.bincount(which, pp, minlength=len(edges) - 1)[keep] / count[keep]
    rate = np.bincount(which, yy, minlength=len(edges) - 1)[keep] / count[keep]
    return ReliabilityCurve(edges, mean_p, rate, count[keep].astype(np.int64))


def calibration_summary(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    *,
    base_rate: float,
    sample_weight: npt.ArrayLike | None = None,
) -> dict[str, float]:
    """Calibration ratio, log loss, NE and AUC of probabilities ``p`` for labels ``y``.

    >>> calibration_summary([0, 1, 0, 1], [0.2, 0.6, 0.4, 0.8], base_rate=0.5)["auc"]
    1.0
    """
    return {
        "calibration_ratio": calibration_ratio(y, p, sample_weight),
        "log_loss": log_loss(y, p, sample_weight),
        "normalized_entropy": normalized_entropy(
            y, p, base_rate=base_rate, sample_weight=sample_weight
        ),
        "auc": roc_auc(y, p),
    }


def _inputs(
    y: npt.ArrayLike, p: npt.ArrayLike, sample_weight: npt.ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    yy = np.asarray(y, dtype=np.float64).ravel()
    pp = np.asarray(p, dtype=np.float64).ravel()
    if yy.shape != pp.shape or len(yy) == 0:
        raise ConfigError(
            f"labels and predictions must be non-empty and of one length; got "
            f"{len(yy)} and {len(pp)}"
        )
    if ((pp < 0) | (pp > 1)).any() or not np.isfinite(pp).all():
        raise ConfigError("predictions must be probabilities in [0, 1]")
    w = np.ones_like(yy) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if w.shape != yy.shape:
        raise ConfigError("sample_weight must have one value per row")
    return yy, pp, w
