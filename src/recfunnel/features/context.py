"""Request context from the request time: local hour of day and day of week.

Timestamps are epoch seconds (the engine's convention; ``datetime64`` columns work too, naive
ones read as UTC) converted to the local time of the zone ``tz`` (an IANA name such as
``"Europe/Paris"``; daylight saving time is applied). Both are given as sparse ids
(``2 + hour``, ``2 + weekday`` with Monday ``0``; ``0`` when the time is missing) and, with
``cyclical``, as dense points on the unit circle (``sin`` / ``cos`` of the fractional hour and
of the weekday), so 23:59 sits next to 00:00. A missing time gives ``(0, 0)``, the circle's
centre.
"""

from __future__ import annotations

import zoneinfo
from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

from recfunnel.core.errors import ConfigError
from recfunnel.features.base import FeatureBlock, FeatureStep, require_columns
from recfunnel.features.hashing import MISSING_ID, N_RESERVED


def local_time(
    timestamps: pd.Series, tz: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Fractional local hour ``[0, 24)``, weekday (Monday ``0``) and the missing mask.

    >>> hour, weekday, missing = local_time(pd.Series([0.0, 1_700_000_000.0, None]),
    ...                                     "America/New_York")
    >>> hour.round(3).tolist(), weekday.tolist(), missing.tolist()
    ([19.0, 17.222, 0.0], [2, 1, 0], [False, False, True])
    """
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"unknown time zone {tz!r}; use an IANA name like 'Europe/Paris'"
        ) from exc
    if pd.api.types.is_datetime64_any_dtype(timestamps.dtype):
        when = pd.to_datetime(timestamps)
        when = when.dt.tz_localize("UTC") if when.dt.tz is None else when
    else:
        seconds = pd.to_numeric(timestamps, errors="coerce").astype(np.float64)
        when = pd.to_datetime(seconds, unit="s", utc=True)
    local = when.dt.tz_convert(tz)
    missing = local.isna().to_numpy()
    hour = (
        local.dt.hour.to_numpy(np.float64, na_value=0.0)
        + local.dt.minute.to_numpy(np.float64, na_value=0.0) / 60.0
        + local.dt.second.to_numpy(np.float64, na_value=0.0) / 3600.0
    )
    weekday = local.dt.day_of_week.to_numpy(np.float64, na_value=0.0).astype(np.int64)
    return hour, weekday, missing


class ContextFeatures(FeatureStep):
    """Hour of day and day of week of each row's request time, in time zone ``tz``.

    >>> frame = pd.DataFrame({"timestamp": [0.0, None]})
    >>> block = ContextFeatures(tz="UTC").fit(frame).transform(frame)
    >>> block.sparse.tolist(), block.sparse_names, block.n_buckets
    ([[2, 5], [0, 0]], ('hour', 'weekday'), (26, 9))
    >>> block.dense_names
    ('hour_sin', 'hour_cos', 'weekday_sin', 'weekday_cos')
    """

    name: ClassVar[str] = "context"

    def __init__(self, column: str = "timestamp", tz: str = "UTC", cyclical: bool = True) -> None:
        self.column = column
        self.tz = tz
        self.cyclical = cyclical

    def fit(self, frame: pd.DataFrame, events: pd.DataFrame | None = None) -> Self:
        local_time(pd.Series([0.0]), self.tz)  # fail fast on a bad zone
        self.fitted_ = True
        return self

    def transform(self, frame: pd.DataFrame) -> FeatureBlock:
        self._check_fitted("fitted_")
        require_columns(frame, [self.column], type(self).__name__)
        hour, weekday, missing = local_time(frame[self.column].reset_index(drop=True), self.tz)
        sparse = np.stack([N_RESERVED + hour.astype(np.int64), N_RESERVED + weekday], axis=1)
        sparse[missing] = MISSING_ID
        if not self.cyclical:
            dense = np.zeros((len(frame), 0), np.float32)
            names: tuple[str, ...] = ()
        else:
            a = 2 * np.pi * hour / 24.0
            b = 2 * np.pi * weekday / 7.0
            dense = np.stack([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], axis=1)
            dense[missing] = 0.0
            names = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")
        return FeatureBlock(
            dense.astype(np.float32),
            sparse,
            names,
            ("hour", "weekday"),
            (24 + N_RESERVED, 7 + N_RESERVED),
        )

    def _set_state(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        self.fitted_ = True
