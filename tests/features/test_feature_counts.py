"""Windowed counts: a hand-built log, no leakage, and a brute-force reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recfunnel.core.errors import ConfigError
from recfunnel.features.counts import WindowedCounts

DAY = 86_400.0


def test_hand_built_log_counts_only_events_strictly_before_the_request() -> None:
    events = pd.DataFrame(
        {
            "item_id": ["a", "a", "a", "a", "b", "a"],
            "timestamp": [0.0, 5 * DAY, 9 * DAY, 10 * DAY, 10 * DAY, np.nan],
        }
    )
    rows = pd.DataFrame(
        {
            "item_id": ["a", "a", "a", "b", "b", "new", "a"],
            # 10 days: the event at exactly t is the row's own interaction, never counted.
            "timestamp": [10 * DAY, 10 * DAY + 1, 0.0, 10 * DAY, 11 * DAY, 10 * DAY, np.nan],
        }
    )
    step = WindowedCounts("item_id", windows=("1d", "7d", "all")).fit(rows, events)
    block = step.transform(rows)
    assert block.dense_names == ("count_1d", "count_7d", "count_all")
    expected = [
        [1, 2, 3],  # [9d, 10d): the 9d event; [3d, 10d): 5d and 9d; all before: 0, 5d, 9d
        [1, 3, 4],  # a second later 10d is in the past and 9d out of the day
        [0, 0, 0],  # the first event's own time
        [0, 0, 0],
        [1, 1, 1],
        [0, 0, 0],  # unknown item
    ]
    assert block.dense[:6].tolist() == expected
    assert np.isnan(block.dense[6]).all()


def test_window_lower_edge_is_inclusive() -> None:
    events = pd.DataFrame({"user_id": ["u"], "timestamp": [100.0]})
    rows = pd.DataFrame({"user_id": ["u", "u"], "timestamp": [100.0 + 3600, 100.0 + 3601]})
    step = WindowedCounts("user_id", windows=(3600,), log1p=True).fit(rows, events)
    out = step.transform(rows)
    assert out.dense_names == ("count_3600s",)
    assert out.dense[:, 0].tolist() == [pytest.approx(np.log(2)), 0.0]


def test_matches_brute_force_on_a_random_log() -> None:
    rng = np.random.default_rng(0)
    events = pd.DataFrame(
        {
            "item_id": rng.integers(0, 20, 3000).astype(str),
            "timestamp": rng.integers(0, 60, 3000).astype(float) * DAY / 4,
        }
    )
    rows = pd.DataFrame(
        {
            "item_id": rng.integers(0, 25, 400).astype(str),
            "timestamp": rng.integers(0, 64, 400).astype(float) * DAY / 4,
        }
    )
    windows = ("1d", "7d", "all")
    out = WindowedCounts("item_id", windows=windows).fit(rows, events).transform(rows).dense
    ev_item, ev_t = events["item_id"].to_numpy(), events["timestamp"].to_numpy()
    for r, (item, t) in enumerate(zip(rows["item_id"], rows["timestamp"], strict=True)):
        for j, w in enumerate((DAY, 7 * DAY, np.inf)):
            ref = np.sum((ev_item == item) & (ev_t < t) & (ev_t >= t - w))
            assert out[r, j] == ref


def test_needs_the_event_log_and_valid_windows() -> None:
    rows = pd.DataFrame({"item_id": ["a"], "timestamp": [1.0]})
    with pytest.raises(ConfigError):
        WindowedCounts().fit(rows)
    with pytest.raises(ConfigError):
        WindowedCounts(windows=("fortnight",)).fit(rows, rows)
    with pytest.raises(ConfigError):
        WindowedCounts(windows=(0,)).fit(rows, rows)
