"""StreamingNormalizer against numpy, an explicit weighted formula and StandardScaler."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from recfunnel.core.errors import ConfigError, DataError, NotFittedError
from recfunnel.features.normalizer import StreamingNormalizer


def _data(seed: int = 0, n: int = 500) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=[1e6, -3.0, 0.0], scale=[10.0, 2.0, 1e-3], size=(n, 3))
    x[rng.random((n, 3)) < 0.1] = np.nan
    return x


def _chunks(x: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    edges = np.cumsum([0, *sizes])
    return [x[a:b] for a, b in itertools.pairwise(edges)]


CHUNKINGS = [[500], [1] * 500, [7] * 71 + [3], [250, 0, 250], [13, 400, 87]]


@pytest.mark.parametrize("sizes", CHUNKINGS)
def test_equals_numpy_mean_and_variance_in_any_chunking(sizes: list[int]) -> None:
    x = _data()
    norm = StreamingNormalizer()
    for chunk in _chunks(x, sizes):
        norm.partial_fit(chunk)
    np.testing.assert_allclose(norm.mean_, np.nanmean(x, axis=0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(norm.var_, np.nanvar(x, axis=0), rtol=1e-9, atol=1e-12)
    assert norm.count_.tolist() == np.isfinite(x).sum(axis=0).tolist()
    assert norm.n_rows_ == 500


@pytest.mark.parametrize("sizes", CHUNKINGS)
def test_decayed_statistics_equal_the_weighted_formula(sizes: list[int]) -> None:
    x, d = _data(1), 0.99
    norm = StreamingNormalizer(decay=d)
    for chunk in _chunks(x, sizes):
        norm.partial_fit(chunk)
    w = d ** np.arange(len(x) - 1, -1, -1)[:, None] * np.isfinite(x)
    xz = np.nan_to_num(x)
    mean = (w * xz).sum(0) / w.sum(0)
    var = (w * (xz - mean) ** 2).sum(0) / w.sum(0)
    np.testing.assert_allclose(norm.mean_, mean, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(norm.var_, var, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(norm.count_, w.sum(0), rtol=1e-12)


def test_decay_follows_a_shift() -> None:
    before, after = np.zeros((1000, 1)), np.full((200, 1), 10.0)
    forgetting = StreamingNormalizer(decay=0.95).partial_fit(before).partial_fit(after)
    plain = StreamingNormalizer().partial_fit(before).partial_fit(after)
    assert forgetting.mean_[0] == pytest.approx(10.0, abs=1e-3)
    assert plain.mean_[0] == pytest.approx(10.0 * 200 / 1200)


def test_matches_sklearn_standard_scaler() -> None:
    from sklearn.preprocessing import StandardScaler

    x = np.nan_to_num(_data(2), nan=0.5)
    ours, ref = StreamingNormalizer(indicators=False), StandardScaler()
    for chunk in _chunks(x, [100, 300, 100]):
        ours.partial_fit(chunk)
        ref.partial_fit(chunk)
    np.testing.assert_allclose(ours.transform(x), ref.transform(x), rtol=1e-7, atol=1e-9)


def test_zero_variance_and_unseen_features_never_divide_by_zero() -> None:
    x = np.column_stack([np.full(10, 3.0), np.arange(10.0), np.full(10, np.nan)])
    norm = StreamingNormalizer(indicators=False).fit(x)
    with np.errstate(all="raise"):
        z = norm.transform([[3.0, 4.5, 1.0], [4.0, 0.0, np.nan]])
    assert norm.scale_.tolist()[0] == 1.0 and norm.scale_.tolist()[2] == 1.0
    assert z[0, 0] == 0.0 and z[1, 0] == 1.0  # centred, not scaled
    assert z[0, 1] == pytest.approx(0.0) and z[0, 2] == 1.0 and z[1, 2] == 0.0
    assert np.isfinite(z).all()


def test_missing_values_are_imputed_with_the_mean_and_flagged() -> None:
    norm = StreamingNormalizer(clip=3.0).fit([[1.0], [3.0]])
    z = norm.transform([[np.nan], [np.inf], [2.0], [100.0]])
    assert z.tolist() == [[0.0, 1.0], [0.0, 1.0], [0.0, 0.0], [3.0, 0.0]]
    assert norm.feature_names_out(["x"]) == ["x", "x.missing"]


def test_state_round_trip_and_errors() -> None:
    x = _data(3)
    norm = StreamingNormalizer(decay=0.9).fit(x)
    copy = StreamingNormalizer(**norm.get_params())
    copy.set_state(norm.state())
    np.testing.assert_array_equal(copy.transform(x), norm.transform(x))
    with pytest.raises(NotFittedError):
        StreamingNormalizer().transform(x)
    with pytest.raises(DataError):
        norm.partial_fit(np.zeros((2, 4)))
    with pytest.raises(ConfigError):
        StreamingNormalizer(decay=1.0).fit(x)
    refit = StreamingNormalizer().fit(x).fit(x[:10])
    assert refit.n_rows_ == 10
