"""Counts over time windows before the request: item popularity, user activity.

For a row with key ``k`` (an item id for popularity, a user id for activity) and request time
``t``, the feature for window ``w`` is the number of logged events of ``k`` with timestamp in
``[t - w, t)``: **strictly before** ``t``, so an event at the request's own time (the very
interaction a training row is about) never counts, and a row never sees its future. The
window ``"all"`` counts every earlier event.

The log is kept as one sorted ``int64`` array of ``key * (T + 1) + time rank`` (``T`` distinct
event times), so a batch of rows is answered with two ``searchsorted`` calls per window,
exactly (no floating-point packing). Events without a timestamp are dropped; rows without a
time get ``NaN``; keys absent from the log count ``0``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

from recfunnel.core.errors import ConfigError
from recfunnel.features.base import (
    FeatureBlock,
    FeatureStep,
    Frame,
    column,
    lookup_codes,
    numeric_column,
    require_columns,
)

_DURATION = re.compile(r"(\d+(?:\.\d*)?)\s*(s|min|h|d|w)")
_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def window_seconds(window: str | float) -> float:
    """Length of a window in seconds: a number of seconds, a duration (``"30min"``, ``"12h"``,
    ``"1d"``, ``"2w"``) or
    ``"all"`` (infinite).

    >>> window_seconds("7d"), window_seconds(3600), window_seconds("all")
    (604800.0, 3600.0, inf)
    """
    if isinstance(window, str):
        if window == "all":
            return math.inf
        match = _DURATION.fullmatch(window.strip())
        if match is None:
            raise ConfigError(
                f"window {window!r} is not a duration like '30min', '12h', '7d' or '2w'"
            )
        seconds = float(match[1]) * _UNITS[match[2]]
    else:
        seconds = float(window)
    if not seconds > 0:
        raise ConfigError(f"window must be positive, got {window!r}")
    return seconds


class WindowedCounts(FeatureStep):
    """Events per ``key`` in each window before each row's time (needs ``events`` at fit).

    >>> events = pd.DataFrame({"item_id": ["a", "a", "a", "b"],
    ...                        "timestamp": [0.0, 86_000.0, 90_000.0, 50.0]})
    >>> rows = pd.DataFrame({"item_id": ["a", "a", "b", "z"],
    ...                      "timestamp": [90_000.0, 90_001.0, 50.0, 1e9]})
    >>> step = WindowedCounts("item_id", windows=("1d", "all")).fit(rows, events)
    >>> step.transform(rows).dense.tolist()
    [[1.0, 2.0], [2.0, 3.0], [0.0, 0.0], [0.0, 0.0]]
    """

    name: ClassVar[str] = "windowed_counts"
    reads_columns: ClassVar[bool] = True
    needs_events: ClassVar[bool] = True

    def __init__(
        self,
        key: str = "item_id",
        windows: Sequence[str | float] = ("1d", "7d", "30d"),
        time_column: str = "timestamp",
        log1p: bool = False,
    ) -> None:
        self.key = key
        self.windows = windows
        self.time_column = time_column
        self.log1p = log1p

    def fit(self, frame: pd.DataFrame, events: pd.DataFrame | None = None) -> Self:
        if events is None:
            raise ConfigError(
                f"{type(self).__name__}({self.key!r}) needs the event log: fit(events=...)"
            )
        [window_seconds(w) for w in self.windows]
        if not list(self.windows):
            raise ConfigError("WindowedCounts: give at least one window")
        require_columns(events, [self.key, self.time_column], "event log")
        times = pd.to_numeric(events[self.time_column], errors="coerce").to_numpy(np.float64)
        ok = np.isfinite(times)
        keys = events[self.key].to_numpy()[ok].astype(str)
        codes, uniques = pd.factorize(keys)
        self.keys_ = np.asarray(uniques, dtype=str)
        self.times_, ranks = np.unique(times[ok], return_inverse=True)
        self.events_ = np.sort(codes.astype(np.int64) * (len(self.times_) + 1) + ranks)
        return self

    def _before(
        self, code: npt.NDArray[np.int64], t: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.int64]:
        """Events of key ``code`` strictly before ``t``."""
        stride = len(self.times_) + 1
        rank = np.searchsorted(self.times_, t, side="left")  # distinct times < t
        start = np.searchsorted(self.events_, code * stride, side="left")
        return np.searchsorted(self.events_, code * stride + rank, side="left") - start

    def transform(self, frame: Frame) -> FeatureBlock:
        self._check_fitted("events_")
        require_columns(frame, [self.key, self.time_column], type(self).__name__)
        code = lookup_codes(self, "keys_", column(frame, self.key))
        known = code >= 0
        code = np.where(known, code, 0).astype(np.int64)
        t = numeric_column(frame, self.time_column)
        has_t = np.isfinite(t)
        t_safe = np.where(has_t, t, 0.0)
        upto = self._before(code, t_safe)
        out = np.empty((len(frame), len(self.windows)), np.float64)
        for j, w in enumerate(self.windows):
            sec = window_seconds(w)
            lower = np.zeros_like(upto) if math.isinf(sec) else self._before(code, t_safe - sec)
            out[:, j] = upto - lower
        out[~known] = 0.0
        out[~has_t] = np.nan
        if self.log1p:
            out = np.log1p(out)
        names = tuple(f"count_{w}" if isinstance(w, str) else f"count_{w:g}s" for w in self.windows)
        return FeatureBlock(
            out.astype(np.float32), np.zeros((len(frame), 0), np.int64), names, (), ()
        )

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        self._check_fitted("events_")
        return {"keys": self.keys_, "times": self.times_, "events": self.events_}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.keys_ = np.asarray(arrays["keys"], dtype=str)
        self.times_ = np.asarray(arrays["times"], np.float64)
        self.events_ = np.asarray(arrays["events"], np.int64)
