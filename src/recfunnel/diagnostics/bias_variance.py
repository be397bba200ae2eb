"""Bias–variance decomposition by bootstrap (the protocol of mlxtend's ``bias_variance_decomp``).

M learners are fitted on bootstrap resamples of the training set (each as large as the training
set) and every test point is predicted M times. Per test point this gives the *main prediction*
(mean of the M predictions under squared loss, their mode under 0-1 loss), the spread of the M
predictions around it (variance) and the main prediction's loss against the observed label
(bias). The reported figures are averages over the test points.

The random stream is mlxtend's, draw for draw: ``np.random.RandomState(random_seed)`` and one
``rng.choice(np.arange(n), size=n, replace=True)`` per round, so that the same seed and the same
deterministic estimator give mlxtend's numbers (checked to 1e-9 in the tests). Differences from
mlxtend, on purpose: each round fits a fresh ``sklearn.base.clone`` of the estimator (mlxtend
refits the object it is given, so an estimator whose ``random_state`` is a ``RandomState``
*instance* draws other numbers there); labels under 0-1 loss may be any sortable values (mlxtend
casts predictions to int64, so it needs non-negative integer labels); Keras models are not
special-cased.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.base import clone

from recfunnel.core.errors import ConfigError, DataError

Loss = Literal["mse", "0-1"]
Progress = Callable[[int], object]

SQUARED_LOSS_DEFINITION = (
    "squared loss, bootstrap decomposition as in mlxtend bias_variance_decomp: "
    "expected_loss = mean over test points and rounds of (f_b(x) - y)^2; "
    "bias = mean over test points of (mean_b f_b(x) - y)^2, i.e. the SQUARED bias, and it "
    "includes the label noise because y is an observed label, not E[y|x]; "
    "variance = mean over test points of the variance of f_b(x) over rounds (ddof=0); "
    "expected_loss = bias + variance"
)
ZERO_ONE_LOSS_DEFINITION = (
    "0-1 loss, Domingos (2000) decomposition by bootstrap as in mlxtend bias_variance_decomp: "
    "main prediction = most frequent f_b(x) over rounds (ties go to the smallest label); "
    "bias = mean over test points of 1[main prediction != y] (label noise included); "
    "variance = mean over test points of the share of rounds with f_b(x) != main prediction; "
    "expected_loss = mean over test points and rounds of 1[f_b(x) != y], which is NOT "
    "bias + variance in general: expected_loss = bias + net_variance, where variance adds on "
    "unbiased points and subtracts on biased ones (net_variance = unbiased_variance - "
    "mean of P(f_b(x) = y) over biased points)"
)


@dataclass(frozen=True, eq=False)
class BiasVarianceResult:
    """Averages over the test set, plus the per-test-point terms they average.

    ``bias`` is the *squared* bias under ``loss="mse"`` (mlxtend's ``avg_bias``), label noise
    included. ``net_variance``, ``unbiased_variance`` and ``biased_variance`` are Domingos'
    terms, set under ``loss="0-1"`` only (``expected_loss == bias + net_variance`` there) and
    ``None`` under squared loss, where ``expected_loss == bias + variance``.

    Per-point arrays have one entry per test point: ``main_prediction`` (mean or mode of the
    bootstrap predictions), ``point_loss``, ``point_bias`` and ``point_variance``.
    """

    loss: Loss
    expected_loss: float
    bias: float
    variance: float
    net_variance: float | None
    unbiased_variance: float | None
    biased_variance: float | None
    n_rounds: int
    random_seed: int | None
    main_prediction: np.ndarray
    point_loss: npt.NDArray[np.float64]
    point_bias: npt.NDArray[np.float64]
    point_variance: npt.NDArray[np.float64]
    definition: str

    def to_dict(self) -> dict[str, Any]:
        """The averages and the definition as JSON-ready values (per-point arrays left out)."""
        return {
            "loss": self.loss,
            "expected_loss": self.expected_loss,
            "bias": self.bias,
            "variance": self.variance,
            "net_variance": self.net_variance,
            "unbiased_variance": self.unbiased_variance,
            "biased_variance": self.biased_variance,
            "n_rounds": self.n_rounds,
            "random_seed": self.random_seed,
            "n_test": len(self.point_loss),
            "definition": self.definition,
        }


def bias_variance_decomposition(
    estimator: Any,
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    *,
    loss: str = "mse",
    n_rounds: int = 200,
    random_seed: int | None = None,
    fit_params: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> BiasVarianceResult:
    """Bootstrap bias–variance decomposition of ``estimator``'s test-set loss.

    ``estimator`` is any scikit-learn-style object (``fit``/``predict``, clonable); it is not
    modified. ``loss`` is ``"mse"`` (squared loss: regression) or ``"0-1"`` (misclassification;
    ``"0-1_loss"``, mlxtend's name, is accepted too). ``progress``, when given, is called with
    ``1`` after each fitted round (``tqdm(...).update`` fits).

    A constant predictor has no variance, and its squared bias is the mean squared distance of
    the labels from the constant:

    >>> from sklearn.dummy import DummyRegressor
    >>> X = np.arange(8.0).reshape(-1, 1)
    >>> constant = DummyRegressor(strategy="constant", constant=1.0)
    >>> r = bias_variance_decomposition(
    ...     constant, X, X[:, 0], X[:2], np.array([0.0, 3.0]), n_rounds=5, random_seed=0)
    >>> r.expected_loss, r.bias, r.variance
    (2.5, 2.5, 0.0)

    Under 0-1 loss the decomposition is Domingos' and the loss is bias plus *net* variance:

    >>> from sklearn.tree import DecisionTreeClassifier
    >>> rng = np.random.default_rng(0)
    >>> Xc = rng.normal(size=(60, 2)); yc = (Xc[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int)
    >>> r = bias_variance_decomposition(DecisionTreeClassifier(random_state=0), Xc[:40], yc[:40],
    ...                                 Xc[40:], yc[40:], loss="0-1", n_rounds=20, random_seed=1)
    >>> bool(np.isclose(r.expected_loss, r.bias + r.net_variance))
    True
    """
    loss_name = _loss_name(loss)
    if isinstance(n_rounds, bool) or not isinstance(n_rounds, int | np.integer) or n_rounds < 1:
        raise ConfigError(f"n_rounds must be a positive integer, got {n_rounds!r}")
    Xtr, ytr = _features(X_train, "X_train"), _labels(y_train, "y_train")
    Xte, yte = _features(X_test, "X_test"), _labels(y_test, "y_test")
    _same_length(Xtr, ytr, "X_train", "y_train")
    _same_length(Xte, yte, "X_test", "y_test")
    if Xtr.shape[0] == 0:
        raise DataError("no training rows", source="X_train")
    if Xte.shape[0] == 0:
        raise DataError("no test rows", source="X_test")

    rng = np.random.RandomState(random_seed)
    sample_indices = np.arange(Xtr.shape[0])
    rows: list[np.ndarray] = []
    for _ in range(int(n_rounds)):
        # Exactly mlxtend's draw, so that a seed names the same resamples in both.
        boot = rng.choice(sample_indices, size=sample_indices.shape[0], replace=True)
        model = clone(estimator).fit(Xtr[boot], ytr[boot], **(fit_params or {}))
        pred = np.asarray(model.predict(Xte)).reshape(-1)
        if pred.shape[0] != Xte.shape[0]:
            raise DataError(
                f"the estimator returned {pred.shape[0]} predictions for {Xte.shape[0]} rows",
                source="X_test",
            )
        rows.append(pred)
        if progress is not None:
            progress(1)
    predictions = np.stack(rows)
    if loss_name == "mse":
        return _squared_loss(predictions, yte, random_seed)
    return _zero_one_loss(predictions, yte, random_seed)


def _squared_loss(predictions: np.ndarray, y: np.ndarray, seed: int | None) -> BiasVarianceResult:
    try:
        pred = predictions.astype(np.float64)
        target = y.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"squared loss needs numeric labels and predictions ({exc}); use loss='0-1' for "
            "class labels",
            source="y_test",
        ) from exc
    main = pred.mean(axis=0)
    point_loss = ((pred - target) ** 2).mean(axis=0)
    point_bias = (main - target) ** 2
    point_variance = ((pred - main) ** 2).mean(axis=0)
    return BiasVarianceResult(
        loss="mse",
        expected_loss=float(point_loss.mean()),
        bias=float(point_bias.mean()),
        variance=float(point_variance.mean()),
        net_variance=None,
        unbiased_variance=None,
        biased_variance=None,
        n_rounds=pred.shape[0],
        random_seed=seed,
        main_prediction=main,
        point_loss=point_loss,
        point_bias=point_bias,
        point_variance=point_variance,
        definition=SQUARED_LOSS_DEFINITION,
    )


def _zero_one_loss(predictions: np.ndarray, y: np.ndarray, seed: int | None) -> BiasVarianceResult:
    n_rounds, n_test = predictions.shape
    try:
        # Codes follow the sorted labels, so argmax of the counts breaks ties towards the
        # smallest label, as mlxtend's argmax(bincount) does.
        classes, codes = np.unique(
            np.concatenate([predictions.reshape(-1), y]), return_inverse=True
        )
    except TypeError as exc:
        raise DataError(
            f"predictions and labels cannot be compared ({exc})", source="y_test"
        ) from exc
    pred_codes = codes[: n_rounds * n_test].reshape(n_rounds, n_test)
    y_codes = codes[n_rounds * n_test :]
    n_classes = len(classes)
    counts = np.bincount(
        (pred_codes + np.arange(n_test) * n_classes).reshape(-1),
        minlength=n_test * n_classes,
    ).reshape(n_test, n_classes)
    main_codes = counts.argmax(axis=1)

    point_loss = (pred_codes != y_codes).mean(axis=0)
    biased = main_codes != y_codes
    point_bias = biased.astype(np.float64)
    point_variance = (pred_codes != main_codes).mean(axis=0)
    # Domingos: variance adds to the loss where the main prediction is right and subtracts
    # P(f_b(x) = y) where it is wrong, so point_loss == point_bias + net, point by point.
    net = np.where(biased, -(pred_codes == y_codes).mean(axis=0), point_variance)
    return BiasVarianceResult(
        loss="0-1",
        expected_loss=float(point_loss.mean()),
        bias=float(point_bias.mean()),
        variance=float(point_variance.mean()),
        net_variance=float(net.mean()),
        unbiased_variance=float(np.where(biased, 0.0, point_variance).mean()),
        biased_variance=float(np.where(biased, point_variance, 0.0).mean()),
        n_rounds=n_rounds,
        random_seed=seed,
        main_prediction=classes[main_codes],
        point_loss=point_loss,
        point_bias=point_bias,
        point_variance=point_variance,
        definition=ZERO_ONE_LOSS_DEFINITION,
    )


def _loss_name(loss: str) -> Loss:
    if loss == "mse":
        return "mse"
    if loss in ("0-1", "0-1_loss"):
        return "0-1"
    raise ConfigError(f"loss must be 'mse' or '0-1', got {loss!r}")


def _features(X: Any, name: str) -> Any:
    if sp.issparse(X):
        out = sp.csr_matrix(X)
    elif hasattr(X, "to_numpy"):
        out = X.to_numpy()
    else:
        out = np.asarray(X)
    if out.ndim != 2:
        raise DataError(
            f"expected a 2-d array (rows x features), got shape {out.shape}", source=name
        )
    return out


def _labels(y: Any, name: str) -> np.ndarray:
    out = y.to_numpy() if hasattr(y, "to_numpy") else np.asarray(y)
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim != 1:
        raise DataError(f"expected a 1-d array of labels, got shape {out.shape}", source=name)
    return out


def _same_length(X: Any, y: np.ndarray, x_name: str, y_name: str) -> None:
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{X.shape[0]} rows in {x_name} but {y.shape[0]} labels", source=y_name)
