"""Standardising dense features from a stream, as batch-norm running statistics do in serving.

Per feature the normaliser keeps a (weighted) count ``W``, mean ``μ`` and sum of squared
deviations ``M2``. A batch with its own ``W_b, μ_b, M2_b`` is merged with Chan, Golub and
LeVeque's parallel update (exact in any chunking, no catastrophic cancellation)::

    W = W_a + W_b,   δ = μ_b - μ_a,   μ = μ_a + δ W_b / W,   M2 = M2_a + M2_b + δ² W_a W_b / W

With ``decay=d`` (``0 < d < 1``) the row that came ``k`` rows before the newest weighs ``d**k``
(half-life ``ln 2 / -ln d`` rows), whatever the batch sizes: the mean is
``Σ w_i x_i / Σ w_i`` and the variance ``Σ w_i (x_i - μ)² / Σ w_i``. Without decay these are the
plain mean and population variance (``numpy.var``, ``ddof=0``, as ``StandardScaler``).

Non-finite values (NaN, ±inf) are missing: they do not enter the statistics (their row still
ages the others under decay), ``transform`` imputes the mean (``z = 0``) and, with
``indicators``, appends one 0/1 "missing" column per feature. A variance at or below ``eps``
(a constant feature) centres without scaling, so nothing is ever divided by zero.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError, DataError, NotFittedError


class StreamingNormalizer:
    """Running mean / variance standardiser with optional exponential forgetting.

    >>> norm = StreamingNormalizer(indicators=True)
    >>> norm = norm.partial_fit([[1.0, 5.0], [3.0, 5.0]]).partial_fit([[np.nan, 5.0]])
    >>> norm.mean_.tolist(), norm.var_.tolist(), norm.count_.tolist()
    ([2.0, 5.0], [1.0, 0.0], [2.0, 3.0])
    >>> norm.transform([[4.0, 6.0], [np.nan, 5.0]]).tolist()
    [[2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    """

    def __init__(
        self,
        decay: float | None = None,
        eps: float = 1e-12,
        clip: float | None = None,
        indicators: bool = True,
    ) -> None:
        self.decay = decay
        self.eps = eps
        self.clip = clip
        self.indicators = indicators

    def _check_params(self) -> None:
        if self.decay is not None and not 0.0 < float(self.decay) < 1.0:
            raise ConfigError(f"decay must be in (0, 1) or None, got {self.decay}")
        if self.eps < 0:
            raise ConfigError(f"eps must be >= 0, got {self.eps}")
        if self.clip is not None and self.clip <= 0:
            raise ConfigError(f"clip must be positive or None, got {self.clip}")

    # ---- learning -----------------------------------------------------------------------
    def fit(self, X: npt.ArrayLike) -> Self:
        """Forget everything, then :meth:`partial_fit` ``X``."""
        for attr in ("count_", "mean_", "m2_", "n_rows_"):
            self.__dict__.pop(attr, None)
        return self.partial_fit(X)

    def partial_fit(self, X: npt.ArrayLike) -> Self:
        """Merge a batch ``B x F`` into the running statistics."""
        self._check_params()
        x = _matrix(X)
        n, f = x.shape
        if not hasattr(self, "mean_"):
            self.count_ = np.zeros(f)
            self.mean_ = np.zeros(f)
            self.m2_ = np.zeros(f)
            self.n_rows_ = 0
        if f != len(self.mean_):
            raise DataError(
                f"batch has {f} features, the normaliser was fitted on {len(self.mean_)}"
            )
        if n == 0:
            return self
        present = np.isfinite(x)
        xz = np.where(present, x, 0.0)
        if self.decay is None:
            w = present.astype(np.float64)
            age = 1.0
        else:
            d = float(self.decay)
            # Newest row weighs 1; weights are d**k, k = rows since.
            w = present * (d ** np.arange(n - 1, -1, -1, dtype=np.float64))[:, None]
            age = d**n
        w_b = w.sum(axis=0)
        safe_b = np.where(w_b > 0, w_b, 1.0)
        mean_b = (w * xz).sum(axis=0) / safe_b
        m2_b = (w * (xz - mean_b) ** 2).sum(axis=0)
        w_a = self.count_ * age
        m2_a = self.m2_ * age
        total = w_a + w_b
        safe = np.where(total > 0, total, 1.0)
        delta = mean_b - self.mean_
        self.mean_ = np.where(total > 0, self.mean_ + delta * w_b / safe, self.mean_)
        self.m2_ = np.where(total > 0, m2_a + m2_b + delta**2 * w_a * w_b / safe, 0.0)
        self.count_ = total
        self.n_rows_ += n
        return self

    # ---- learned statistics -------------------------------------------------------------
    @property
    def var_(self) -> npt.NDArray[np.float64]:
        """Population variance per feature (0 for a feature never seen)."""
        self._check_fitted()
        return np.where(self.count_ > 0, self.m2_ / np.where(self.count_ > 0, self.count_, 1), 0.0)

    @property
    def scale_(self) -> npt.NDArray[np.float64]:
        """The divisor of each feature: its standard deviation, or 1 where the variance is
        at or below ``eps``."""
        var = self.var_
        return np.where(var > self.eps, np.sqrt(np.maximum(var, 0.0)), 1.0)

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise NotFittedError("StreamingNormalizer is not fitted: call fit() or partial_fit()")

    # ---- applying -----------------------------------------------------------------------
    def transform(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """``(x - μ) / σ`` per feature (``B x F``), then ``B x F`` missing indicators if
        ``indicators``; missing values become 0 (the mean)."""
        self._check_fitted()
        self._check_params()
        x = _matrix(X)
        if x.shape[1] != len(self.mean_):
            raise DataError(
                f"input has {x.shape[1]} features, the normaliser was fitted on {len(self.mean_)}"
            )
        z = np.subtract(x, self.mean_)
        z /= self.scale_  # mean and scale are finite: NaN / inf pass through without warnings
        present = np.isfinite(z)
        all_present = bool(present.all())
        if not all_present:
            z[~present] = 0.0
        if self.clip is not None:
            np.clip(z, -self.clip, self.clip, out=z)
        if self.indicators:
            flags = np.zeros_like(z) if all_present else (~present).astype(np.float64)
            z = np.concatenate([z, flags], axis=1)
        return z

    def fit_transform(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return self.fit(X).transform(X)

    def feature_names_out(self, names: list[str] | tuple[str, ...]) -> list[str]:
        """Output column names for input columns ``names``.

        >>> StreamingNormalizer().feature_names_out(["age"])
        ['age', 'age.missing']
        """
        out = list(names)
        return out + [f"{n}.missing" for n in names] if self.indicators else out

    # ---- persistence (arrays only) ------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "eps": self.eps,
            "clip": self.clip,
            "indicators": self.indicators,
        }

    def state(self) -> dict[str, npt.NDArray[Any]]:
        self._check_fitted()
        return {
            "count": self.count_,
            "mean": self.mean_,
            "m2": self.m2_,
            "n_rows": np.asarray(self.n_rows_, np.int64),
        }

    def set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.count_ = np.asarray(arrays["count"], np.float64)
        self.mean_ = np.asarray(arrays["mean"], np.float64)
        self.m2_ = np.asarray(arrays["m2"], np.float64)
        self.n_rows_ = int(arrays["n_rows"])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"StreamingNormalizer({args})"


def _matrix(X: npt.ArrayLike) -> npt.NDArray[np.float64]:
    x = np.asarray(X, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise DataError(f"expected rows x features, got shape {x.shape}")
    return x
