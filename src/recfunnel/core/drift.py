"""The ``DriftDetector`` contract: a streaming change detector fed one number at a time.

A detector watches a stream of floats (a metric, a model's 0/1 errors, a feature value) and
says, after each ``update``, whether a change was detected *at that sample*. Implementations
live one per file in ``recfunnel.monitoring.drift`` and write one method, ``update``; the rest
(state properties, ``reset``, the batch-first ``update_many``, parameter introspection) lives
here once.

Life cycle, following scikit-learn's habits:

* ``__init__`` only stores hyper-parameters under their own names (no logic, no validation),
  so ``type(d)(**d.get_params())`` is a fresh copy.
* The first ``update`` checks the hyper-parameters (``ConfigError``) and builds the state;
  ``reset()`` returns to the state before that first update.
* ``drift_detected`` / ``warning_detected`` describe the *last* update only. Unless the
  detector documents otherwise, it restarts its statistics on the update *after* a detection,
  so one change gives one detection and the detector then watches the new regime.

>>> class Threshold(DriftDetector):
...     '''Flags every sample above ``limit`` (a toy detector).'''
...     def __init__(self, limit: float = 1.0) -> None:
...         self.limit = limit
...     def update(self, x: float) -> "Threshold":
...         x = self._observe(x)
...         self._drift_detected = x > self.limit
...         return self
>>> d = Threshold(limit=2.0)
>>> d.update_many([0.0, 3.0, 1.0, 5.0]).tolist()
[1, 3]
>>> d.n_seen, d.drift_detected
(4, True)
>>> d
Threshold(limit=2.0)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import ClassVar, NoReturn, Self, cast

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.params import Params


class DriftDetector(Params, ABC):
    """Base class of every streaming drift detector.

    Subclasses implement ``update(x)``: call ``x = self._observe(x)`` first (it validates the
    value, checks the hyper-parameters on the very first call, restarts after a detection and
    counts the sample), then set ``self._drift_detected`` (and ``self._warning_detected`` for
    detectors with a warning zone) and ``return self``. Two optional hooks:
    ``_check_params()`` (raise ``ConfigError`` through ``self._bad_param``) and
    ``_restart()`` (set the statistics to their initial values).
    """

    #: True for detectors of 0/1 error streams (1 = error); other values raise ``DataError``.
    binary_input: ClassVar[bool] = False
    #: Whether the statistics restart on the update after a detection (see the class doc).
    restart_on_drift: ClassVar[bool] = True

    # Class-level initial values: subclasses' ``__init__`` only store hyper-parameters, so
    # nothing here needs a ``super().__init__()`` call.
    _drift_detected: bool = False
    _warning_detected: bool = False
    _n_seen: int = 0
    _started: bool = False

    # ---- the contract --------------------------------------------------------------------
    @abstractmethod
    def update(self, x: float) -> Self:
        """Feed one sample; afterwards ``drift_detected`` tells whether it revealed a change."""

    # ---- hooks ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Raise ``ConfigError`` for invalid hyper-parameters (called at the first update)."""
        return None

    def _restart(self) -> None:
        """Set the statistics to their initial values (first update, after a detection)."""
        return None

    # ---- state ---------------------------------------------------------------------------
    @property
    def drift_detected(self) -> bool:
        """Whether a change was detected at the last update."""
        return bool(self._drift_detected)

    @property
    def warning_detected(self) -> bool:
        """Whether the detector was in its warning zone after the last update (always False
        for detectors without one)."""
        return bool(self._warning_detected)

    @property
    def n_seen(self) -> int:
        """Samples fed since construction or the last ``reset()`` (detections do not reset it)."""
        return self._n_seen

    def reset(self) -> Self:
        """Forget everything seen: the next ``update`` behaves like the first one."""
        self._started = False
        self._drift_detected = False
        self._warning_detected = False
        self._n_seen = 0
        return self

    # ---- conveniences --------------------------------------------------------------------
    def update_many(self, xs: Iterable[float] | npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Feed every value of ``xs`` (a 1-D array, sequence or iterable) in order; the
        positions (0-based, within ``xs``) at which a drift was detected. Same result and
        same final state as calling ``update`` on each value."""
        if isinstance(xs, np.ndarray | list | tuple):
            arr = np.asarray(xs, dtype=np.float64)
        else:  # generators and other one-shot iterables
            arr = np.fromiter(cast(Iterable[float], xs), dtype=np.float64)
        if arr.ndim != 1:
            raise DataError(
                f"{type(self).__name__}.update_many expects a 1-D stream, got shape {arr.shape}"
            )
        values: list[float] = arr.tolist()
        update = self.update  # bound once: this loop is the hot path of batch use
        hits: list[int] = []
        for i, x in enumerate(values):
            if update(x)._drift_detected:
                hits.append(i)
        return np.asarray(hits, dtype=np.int64)

    # ---- for implementations -------------------------------------------------------------
    def _observe(self, x: float) -> float:
        """Validate ``x`` and do the bookkeeping common to every ``update``; returns ``x`` as a
        float."""
        value = float(x)
        if self.binary_input:
            if value != 0.0 and value != 1.0:
                raise DataError(
                    f"{type(self).__name__} expects a 0/1 error stream (1 = error), got {x!r} "
                    f"at sample {self._n_seen}"
                )
        elif not math.isfinite(value):
            raise DataError(
                f"{type(self).__name__}: sample {self._n_seen} is {x!r}; drop or impute "
                "non-finite values before the detector"
            )
        if not self._started:
            self._check_params()
            self._restart()
            self._warning_detected = False
            self._started = True
        elif self._drift_detected and self.restart_on_drift:
            self._restart()
            self._warning_detected = False
        self._drift_detected = False
        self._n_seen += 1
        return value

    def _bad_param(self, name: str, expected: str) -> NoReturn:
        """Raise the ``ConfigError`` for hyper-parameter ``name`` (``expected``: what is valid)."""
        raise ConfigError(
            f"{type(self).__name__}: {name} must be {expected}, got {getattr(self, name)!r}"
        )
