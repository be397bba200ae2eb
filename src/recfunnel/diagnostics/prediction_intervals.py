"""Bootstrap prediction intervals around any scikit-learn-style regressor.

``fit`` refits clones of the estimator on ``n_resamples`` bootstrap resamples of the training
set (and one on all of it, for the point prediction). ``predict_interval`` returns percentile
intervals of the bootstrap predictions at each row:

* ``interval="mean"``: percentiles of f_b(x) alone, a confidence interval for the *fitted
  regression function* at x (the model's mean response; it ignores the model's bias).
* ``interval="observation"`` (default): a prediction interval for a *new observation* y at x.
  Each f_b(x) gets a residual drawn from the out-of-bag residuals (y_i minus the mean
  prediction of the models that did not see row i), so the label noise is in the interval.
  Out-of-bag residuals already hold some estimation error, so the interval is slightly
  conservative; training residuals would be too small for flexible models.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.base import clone

from recfunnel.core.errors import ConfigError, DataError, NotFittedError

Interval = Literal["observation", "mean"]


class BootstrapPredictionInterval:
    """Percentile bootstrap intervals for a regressor's predictions.

    Parameters are stored as given (scikit-learn style) and checked in ``fit``.

    >>> from sklearn.linear_model import LinearRegression
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 10, size=(200, 1)); y = 2 * X[:, 0] + 1 + rng.normal(size=200)
    >>> pi = BootstrapPredictionInterval(LinearRegression(), n_resamples=100, random_state=0)
    >>> lo, hi = pi.fit(X, y).predict_interval(np.array([[5.0]]))[0]
    >>> bool(lo < 11 < hi), bool(2.5 < hi - lo < 4.5)  # 90% of N(0, 1) is 3.29 wide
    (True, True)
    """

    def __init__(
        self,
        estimator: Any,
        *,
        n_resamples: int = 200,
        confidence: float = 0.9,
        interval: Interval = "observation",
        random_state: int | None = None,
    ) -> None:
        self.estimator = estimator
        self.n_resamples = n_resamples
        self.confidence = confidence
        self.interval = interval
        self.random_state = random_state

    def fit(self, X: Any, y: Any, **fit_params: Any) -> BootstrapPredictionInterval:
        """Fit the full-data model and the bootstrap models; collect out-of-bag residuals."""
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if self.interval not in ("observation", "mean"):
            raise ConfigError(f"interval must be 'observation' or 'mean', got {self.interval!r}")
        if isinstance(self.n_resamples, bool) or int(self.n_resamples) < 2:
            raise ConfigError(f"n_resamples must be an integer >= 2, got {self.n_resamples!r}")
        Xa = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
        ya = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
        if Xa.ndim != 2 or ya.ndim != 1 or Xa.shape[0] != ya.shape[0]:
            raise DataError(
                f"X must be rows x features and y one label per row, got "
                f"X {Xa.shape} and y {ya.shape}",
                source="y",
            )
        try:
            ya = ya.astype(np.float64)
        except ValueError as exc:
            raise DataError(f"labels must be numeric ({exc})", source="y") from exc
        n = Xa.shape[0]
        if n < 2:
            raise DataError("at least two training rows are needed", source="X")
        rng = np.random.default_rng(self.random_state)
        self.estimator_ = clone(self.estimator).fit(Xa, ya, **fit_params)
        oob_sum, oob_count = np.zeros(n), np.zeros(n)
        self.estimators_: list[Any] = []
        for _ in range(int(self.n_resamples)):
            boot = rng.integers(0, n, size=n)
            model = clone(self.estimator).fit(Xa[boot], ya[boot], **fit_params)
            self.estimators_.append(model)
            out = np.ones(n, dtype=bool)
            out[boot] = False
            if out.any():
                oob_sum[out] += np.asarray(model.predict(Xa[out]), dtype=np.float64).reshape(-1)
                oob_count[out] += 1
        seen = oob_count > 0
        self.oob_residuals_: npt.NDArray[np.float64] = ya[seen] - oob_sum[seen] / oob_count[seen]
        # A fixed noise stream: the same rows get the same interval on every call.
        self.noise_seed_ = int(rng.integers(2**63 - 1))
        return self

    def predict(self, X: Any) -> npt.NDArray[np.float64]:
        """Point predictions of the model fitted on all the training data."""
        self._check_fitted()
        Xa = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
        return np.asarray(self.estimator_.predict(Xa), dtype=np.float64).reshape(-1)

    def predict_interval(self, X: Any, confidence: float | None = None) -> npt.NDArray[np.float64]:
        """``(n_rows, 2)`` array of lower and upper bounds at ``confidence`` (default: fitted)."""
        self._check_fitted()
        level = self.confidence if confidence is None else confidence
        if not 0.0 < level < 1.0:
            raise ConfigError(f"confidence must be in (0, 1), got {level!r}")
        Xa = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
        draws = np.stack(
            [np.asarray(m.predict(Xa), dtype=np.float64).reshape(-1) for m in self.estimators_]
        )
        if self.interval == "observation" and len(self.oob_residuals_):
            noise = np.random.default_rng(self.noise_seed_)
            draws = draws + noise.choice(self.oob_residuals_, size=draws.shape)
        alpha = 1.0 - level
        lo, hi = np.quantile(draws, [alpha / 2, 1 - alpha / 2], axis=0)
        return np.column_stack([lo, hi])

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimators_"):
            raise NotFittedError(
                "BootstrapPredictionInterval is not fitted yet: call fit(X, y) first"
            )
