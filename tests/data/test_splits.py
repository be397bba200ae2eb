from __future__ import annotations

import numpy as np
import pytest

from recfunnel.core.errors import ConfigError
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.data.splits import (
    k_core,
    leave_last_out,
    make_split,
    parse_split_spec,
    random_split,
    recbole_split_counts,
    temporal_split,
    threshold,
)


def _log(n_users: int = 60, seed: int = 0) -> InteractionMatrix:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 40, n_users)
    users = np.repeat([f"u{i}" for i in range(n_users)], counts)
    items = [f"i{j}" for j in rng.integers(0, 200, len(users))]
    return InteractionMatrix.from_arrays(
        users, items, value=rng.integers(1, 6, len(users)), timestamp=rng.random(len(users)) * 1e6
    )


def _recbole_reference(tot: int, ratios: list[float]) -> list[int]:
    # Transcribed from RecBole 1.2.1 Dataset._calcu_split_ids (returns sizes, not cut points).
    ratios = [r / sum(ratios) for r in ratios]
    cnt = [int(ratios[i] * tot) for i in range(len(ratios))]
    cnt[0] = tot - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * tot < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt


def test_recbole_counts_for_every_group_size() -> None:
    for tot in range(1, 300):
        for ratios in ([0.8, 0.1, 0.1], [0.7, 0.15, 0.15], [0.9, 0.1], [8, 1, 1]):
            assert recbole_split_counts(tot, tuple(ratios)) == _recbole_reference(tot, ratios)


def test_random_split_sizes_per_user_partition_and_determinism() -> None:
    m = _log()
    s = random_split(m, (0.8, 0.1, 0.1), seed=3)
    assert len(s.train) + len(s.valid) + len(s.test) == len(m)
    for u in range(m.n_users):
        sizes = [int((p.user == u).sum()) for p in (s.train, s.valid, s.test)]
        assert sizes == recbole_split_counts(int((m.user == u).sum()), (0.8, 0.1, 0.1))
    again = random_split(m, (0.8, 0.1, 0.1), seed=3)
    assert np.array_equal(again.test.item, s.test.item)
    other = random_split(m, (0.8, 0.1, 0.1), seed=4)
    assert not np.array_equal(other.test.item, s.test.item)

    def rows(p: InteractionMatrix) -> set[tuple[int, int, float]]:
        return set(zip(p.user.tolist(), p.item.tolist(), p.timestamp.tolist(), strict=True))

    assert rows(s.train) | rows(s.valid) | rows(s.test) == rows(m)
    assert s.train.users is m.users and s.test.items is m.items


def test_temporal_split_is_a_global_cut() -> None:
    m = _log()
    s = temporal_split(m, ratios=(0.8, 0.1, 0.1))
    assert s.train.timestamp.max() < s.valid.timestamp.min() <= s.valid.timestamp.max()
    assert s.valid.timestamp.max() < s.test.timestamp.min()
    assert abs(len(s.test) / len(m) - 0.1) < 0.01
    with pytest.raises(ConfigError, match="after"):
        temporal_split(m, test_from=1.0, valid_from=2.0)
    no_time = InteractionMatrix.from_arrays(["a"], ["x"])
    with pytest.raises(ConfigError, match="timestamp"):
        temporal_split(no_time, test_from=0.0)


def test_leave_last_out_takes_the_latest() -> None:
    m = _log()
    s = leave_last_out(m, k=2)
    for u in range(m.n_users):
        ts = np.sort(m.timestamp[m.user == u])
        test_ts = np.sort(s.test.timestamp[s.test.user == u])
        n = len(ts)
        n_test = min(2, n - 1)
        assert np.array_equal(test_ts, ts[n - n_test :])
        assert (s.train.user == u).sum() >= 1


def test_threshold_and_k_core() -> None:
    m = _log()
    assert (threshold(m, 4).value >= 4).all()
    core = k_core(m, user_k=5, item_k=3)
    assert core.user_counts().min() >= 5 and core.item_counts().min() >= 3
    assert len(core.users) == len(np.unique(core.user))
    again = k_core(core, user_k=5, item_k=3)
    assert len(again) == len(core)


def test_split_specs() -> None:
    assert parse_split_spec("loo:2") == ("loo", (2.0,))
    assert parse_split_spec("temporal") == ("temporal", (0.8, 0.1, 0.1))
    for bad in ("xx:1", "ro:a,b", "loo:0", "ro:1,2,3,4", "ro:-1,1"):
        with pytest.raises(ConfigError):
            parse_split_spec(bad)
    assert len(make_split(_log(), "ro:0.5,0.5", seed=1).valid) == 0
