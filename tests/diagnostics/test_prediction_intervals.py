from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from recfunnel.core.errors import ConfigError, NotFittedError
from recfunnel.diagnostics import BootstrapPredictionInterval


def _linear(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 10, size=(n, 2))
    mean = 2.0 * X[:, 0] - 0.5 * X[:, 1] + 1.0
    return X, mean + rng.normal(size=n), mean


@pytest.fixture(scope="module")
def fitted() -> BootstrapPredictionInterval:
    X, y, _ = _linear(200, seed=0)
    return BootstrapPredictionInterval(LinearRegression(), n_resamples=200, random_state=0).fit(
        X, y
    )


def test_observation_interval_covers_about_90_percent_of_fresh_points(fitted) -> None:
    X, y, _ = _linear(3000, seed=1)
    lo, hi = fitted.predict_interval(X).T
    coverage = np.mean((lo <= y) & (y <= hi))
    assert 0.85 <= coverage <= 0.95  # 0.879 with these seeds
    # Width close to that of the noise's own 90% interval, 2 * 1.645 * sigma.
    assert np.median(hi - lo) == pytest.approx(3.29, rel=0.1)


def test_mean_interval_matches_the_ols_confidence_interval(fitted) -> None:
    # For least squares the interval for the mean response has a textbook width:
    # 2 * z(0.95) * sigma_hat * sqrt(x0' (X'X)^-1 x0), with an intercept column in X.
    X, y, _ = _linear(200, seed=0)
    pi = BootstrapPredictionInterval(
        LinearRegression(), n_resamples=400, interval="mean", random_state=0
    ).fit(X, y)
    Xn = _linear(300, seed=2)[0]
    lo, hi = pi.predict_interval(Xn).T
    design = np.column_stack([np.ones(len(X)), X])
    residuals = y - LinearRegression().fit(X, y).predict(X)
    sigma = np.sqrt(residuals @ residuals / (len(X) - design.shape[1]))
    x0 = np.column_stack([np.ones(len(Xn)), Xn])
    se = sigma * np.sqrt(np.einsum("ij,jk,ik->i", x0, np.linalg.inv(design.T @ design), x0))
    ratio = (hi - lo) / (2 * 1.6449 * se)
    assert np.median(ratio) == pytest.approx(1.0, abs=0.1)
    centre = LinearRegression().fit(X, y).predict(Xn)
    assert np.all((lo < centre) & (centre < hi))
    obs = fitted.predict_interval(Xn)
    assert np.median(hi - lo) < 0.5 * np.median(obs[:, 1] - obs[:, 0])


def test_point_prediction_is_the_full_data_fit(fitted) -> None:
    X, y, _ = _linear(200, seed=0)
    Xn = _linear(5, seed=3)[0]
    np.testing.assert_allclose(fitted.predict(Xn), LinearRegression().fit(X, y).predict(Xn))


def test_deterministic_with_a_seed_and_between_calls(fitted) -> None:
    X, y, _ = _linear(200, seed=0)
    Xn = _linear(50, seed=4)[0]
    again = BootstrapPredictionInterval(LinearRegression(), n_resamples=200, random_state=0)
    np.testing.assert_array_equal(again.fit(X, y).predict_interval(Xn), fitted.predict_interval(Xn))
    np.testing.assert_array_equal(fitted.predict_interval(Xn), fitted.predict_interval(Xn))
    other = BootstrapPredictionInterval(LinearRegression(), n_resamples=200, random_state=1)
    assert not np.array_equal(other.fit(X, y).predict_interval(Xn), fitted.predict_interval(Xn))


def test_wider_at_higher_confidence(fitted) -> None:
    Xn = _linear(50, seed=5)[0]
    w90 = np.diff(fitted.predict_interval(Xn), axis=1)
    w99 = np.diff(fitted.predict_interval(Xn, confidence=0.99), axis=1)
    assert np.all(w99 > w90)


def test_noise_free_data_gives_zero_width_intervals() -> None:
    X = np.arange(20.0).reshape(-1, 1)
    pi = BootstrapPredictionInterval(LinearRegression(), n_resamples=20, random_state=0)
    lo, hi = pi.fit(X, 3.0 * X[:, 0] - 1.0).predict_interval(np.array([[7.5]]))[0]
    assert lo == pytest.approx(21.5) and hi == pytest.approx(21.5)


def test_errors() -> None:
    with pytest.raises(NotFittedError, match="call fit"):
        BootstrapPredictionInterval(LinearRegression()).predict_interval(np.zeros((1, 1)))
    X, y, _ = _linear(20, seed=0)
    with pytest.raises(ConfigError, match="confidence must be in"):
        BootstrapPredictionInterval(LinearRegression(), confidence=1.5).fit(X, y)
    with pytest.raises(ConfigError, match="interval must be"):
        BootstrapPredictionInterval(LinearRegression(), interval="both").fit(X, y)  # type: ignore[arg-type]
