"""Hour and weekday in a time zone, daylight saving time included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recfunnel.core.errors import ConfigError
from recfunnel.features.context import ContextFeatures


def test_local_hour_and_weekday_across_a_dst_change() -> None:
    # 2024-03-30 01:30 UTC (Saturday) is 02:30 in Paris (CET); a day later, after the switch
    # to summer time, 01:30 UTC is 03:30 (CEST, Sunday).
    ts = pd.Timestamp("2024-03-30 01:30", tz="UTC").timestamp()
    frame = pd.DataFrame({"timestamp": [ts, ts + 86_400, None]})
    block = ContextFeatures(tz="Europe/Paris").fit(frame).transform(frame)
    assert block.sparse.tolist() == [[2 + 2, 2 + 5], [2 + 3, 2 + 6], [0, 0]]
    np.testing.assert_allclose(
        block.dense[0, :2], [np.sin(np.pi * 2.5 / 12), np.cos(np.pi * 2.5 / 12)], atol=1e-6
    )
    assert block.dense[2].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_datetime_column_and_bad_zone() -> None:
    frame = pd.DataFrame({"when": pd.to_datetime(["2024-01-01 23:59"])})  # a Monday, naive = UTC
    block = ContextFeatures(column="when", tz="UTC", cyclical=False).fit(frame).transform(frame)
    assert block.sparse.tolist() == [[2 + 23, 2 + 0]] and block.dense.shape == (1, 0)
    with pytest.raises(ConfigError):
        ContextFeatures(tz="Mars/Olympus").fit(frame)
