"""Streaming drift detectors, one per module, and the registry that names them.

Every detector implements :class:`recfunnel.core.drift.DriftDetector`: ``update(x)`` per
sample, then ``drift_detected`` / ``warning_detected``; ``update_many(xs)`` returns the
positions of detections in a batch.

=================  ==========================================  =============================
name               detector                                    input
=================  ==========================================  =============================
``adwin``          :class:`ADWIN` (Bifet & Gavaldà 2007)       any numbers
``cusum``          :class:`CUSUM` (Page 1954, tabular)         any numbers
``ddm``            :class:`DDM` (Gama et al. 2004)             0/1 errors
``eddm``           :class:`EDDM` (Baena-García et al. 2006)    0/1 errors
``page_hinkley``   :class:`PageHinkley` (Page 1954)            any numbers
``sprt``           :class:`SPRT` (Wald 1945)                   numbers, or 0/1 (bernoulli)
=================  ==========================================  =============================

>>> make_detector("cusum", h=6.0)
CUSUM(k=0.5, h=6.0, mean=None, std=None, warmup=250, mode='both')
>>> make_detector("ph").update_many([0.0] * 100 + [50.0] * 10).tolist()
[100]
"""

from __future__ import annotations

from typing import Any

from recfunnel.core.drift import DriftDetector
from recfunnel.core.errors import ConfigError
from recfunnel.monitoring.drift.adwin import ADWIN
from recfunnel.monitoring.drift.cusum import CUSUM
from recfunnel.monitoring.drift.ddm import DDM
from recfunnel.monitoring.drift.eddm import EDDM
from recfunnel.monitoring.drift.page_hinkley import PageHinkley
from recfunnel.monitoring.drift.sprt import SPRT

#: Registry name -> detector class.
REGISTRY: dict[str, type[DriftDetector]] = {
    "adwin": ADWIN,
    "cusum": CUSUM,
    "ddm": DDM,
    "eddm": EDDM,
    "page_hinkley": PageHinkley,
    "sprt": SPRT,
}
#: Other spellings accepted by ``make_detector``.
ALIASES: dict[str, str] = {"ph": "page_hinkley", "pagehinkley": "page_hinkley"}


def detector_class(name: str) -> type[DriftDetector]:
    """The class registered under ``name`` (case-insensitive; ``-`` and ``_`` alike)."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    try:
        return REGISTRY[key]
    except KeyError:
        raise ConfigError(
            f"unknown drift detector {name!r}; available: {', '.join(sorted(REGISTRY))}"
        ) from None


def make_detector(name: str, **params: Any) -> DriftDetector:
    """A new detector by registry name. Unknown parameter names raise ``ConfigError`` here;
    invalid values raise it at the first ``update``."""
    cls = detector_class(name)
    unknown = sorted(set(params) - set(cls._param_names()))
    if unknown:
        raise ConfigError(
            f"{cls.__name__} has no parameter(s) {unknown}; it takes {cls._param_names()}"
        )
    return cls(**params)


__all__ = [
    "ADWIN",
    "CUSUM",
    "DDM",
    "EDDM",
    "REGISTRY",
    "SPRT",
    "DriftDetector",
    "PageHinkley",
    "detector_class",
    "make_detector",
]
