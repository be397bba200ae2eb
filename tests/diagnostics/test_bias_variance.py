from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlxtend.evaluate import bias_variance_decomp
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.diagnostics import (
    bias_variance_decomposition,
    complexity_curve,
    plot_complexity_curve,
)
from recfunnel.diagnostics.bias_variance import _zero_one_loss


def _regression(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(n, 3))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + 0.3 * rng.normal(size=n)
    return X, y


def _classification(n: int = 240, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    score = X[:, 0] + 0.5 * X[:, 1] + 0.7 * rng.normal(size=n)
    return X, np.digitize(score, [-0.5, 0.6])  # three classes, 0/1/2


@pytest.mark.parametrize(
    ("estimator", "data", "loss"),
    [
        (DecisionTreeRegressor(random_state=0), _regression, "mse"),
        (DecisionTreeRegressor(max_depth=3, random_state=0), _regression, "mse"),
        (LinearRegression(), _regression, "mse"),
        (DecisionTreeClassifier(random_state=0), _classification, "0-1_loss"),
        (DecisionTreeClassifier(max_depth=2, random_state=0), _classification, "0-1_loss"),
    ],
    ids=["tree-full", "tree-depth3", "linear", "clf-full", "clf-depth2"],
)
@pytest.mark.parametrize("seed", [0, 123])
def test_agrees_with_mlxtend(estimator, data, loss, seed) -> None:
    X, y = data()
    # An even number of rounds, so that 0-1 votes can tie and the tie rule is checked too.
    args = (X[:160], y[:160], X[160:], y[160:])
    theirs = bias_variance_decomp(estimator, *args, loss=loss, num_rounds=30, random_seed=seed)
    ours = bias_variance_decomposition(estimator, *args, loss=loss, n_rounds=30, random_seed=seed)
    np.testing.assert_allclose(
        [ours.expected_loss, ours.bias, ours.variance], theirs, rtol=0, atol=1e-9
    )


def test_pandas_inputs_and_string_labels_give_mlxtends_numbers() -> None:
    X, y = _classification()
    theirs = bias_variance_decomp(
        DecisionTreeClassifier(random_state=0),
        X[:160],
        y[:160],
        X[160:],
        y[160:],
        num_rounds=20,
        random_seed=7,
    )
    # Names sort like the integer codes, so ties break the same way.
    names = np.array(["a-low", "b-mid", "c-high"])[y]
    frame = pd.DataFrame(X, columns=["u", "v", "w"])
    ours = bias_variance_decomposition(
        DecisionTreeClassifier(random_state=0),
        frame.iloc[:160],
        pd.Series(names[:160]),
        frame.iloc[160:],
        pd.Series(names[160:]),
        loss="0-1",
        n_rounds=20,
        random_seed=7,
    )
    np.testing.assert_allclose([ours.expected_loss, ours.bias, ours.variance], theirs, atol=1e-9)
    assert set(ours.main_prediction) <= set(names)


def test_squared_loss_is_bias_plus_variance_point_by_point() -> None:
    X, y = _regression()
    r = bias_variance_decomposition(
        DecisionTreeRegressor(max_depth=4, random_state=0),
        X[:160],
        y[:160],
        X[160:],
        y[160:],
        n_rounds=25,
        random_seed=0,
    )
    np.testing.assert_allclose(r.point_loss, r.point_bias + r.point_variance, atol=1e-12)
    assert r.expected_loss == pytest.approx(r.bias + r.variance, abs=1e-12)
    assert r.net_variance is None
    assert "SQUARED bias" in r.definition and "label noise" in r.definition
    assert r.point_loss.shape == (80,)


def test_constant_predictor_has_zero_variance_and_bias_equal_to_loss() -> None:
    X, y = _regression()
    r = bias_variance_decomposition(
        DummyRegressor(strategy="constant", constant=0.25),
        X[:160],
        y[:160],
        X[160:],
        y[160:],
        n_rounds=10,
        random_seed=0,
    )
    assert r.variance == 0.0
    assert r.bias == pytest.approx(np.mean((0.25 - y[160:]) ** 2), abs=1e-12)
    assert r.expected_loss == pytest.approx(r.bias, abs=1e-12)


def test_mean_predictor_variance_is_that_of_the_bootstrap_mean() -> None:
    # Predicting the training mean: across bootstrap resamples its variance is var(y) / n.
    X, y = _regression(n=200)
    r = bias_variance_decomposition(
        DummyRegressor(), X[:100], y[:100], X[100:], y[100:], n_rounds=2000, random_seed=0
    )
    assert r.variance == pytest.approx(np.var(y[:100]) / 100, rel=0.1)
    np.testing.assert_allclose(r.point_variance, r.point_variance[0])


def test_fully_grown_tree_has_more_variance_and_less_bias_than_a_stump() -> None:
    X, y = _regression()
    args = (X[:160], y[:160], X[160:], y[160:])
    stump = bias_variance_decomposition(
        DecisionTreeRegressor(max_depth=1, random_state=0), *args, n_rounds=25, random_seed=0
    )
    full = bias_variance_decomposition(
        DecisionTreeRegressor(random_state=0), *args, n_rounds=25, random_seed=0
    )
    assert full.variance > 3 * stump.variance
    assert stump.bias > 2 * full.bias


def test_domingos_terms_on_a_hand_worked_matrix() -> None:
    # Rows are rounds, columns test points; labels y = [0, 0, 1, 1].
    predictions = np.array([[0, 1, 1, 0], [0, 1, 0, 1], [1, 1, 0, 1], [0, 0, 0, 0]])
    r = _zero_one_loss(predictions, np.array([0, 0, 1, 1]), seed=None)
    # Point 3 ties 2-2 between 0 and 1: the main prediction is the smaller label, 0.
    np.testing.assert_array_equal(r.main_prediction, [0, 1, 0, 0])
    np.testing.assert_allclose(r.point_bias, [0, 1, 1, 1])
    np.testing.assert_allclose(r.point_variance, [0.25, 0.25, 0.25, 0.5])
    np.testing.assert_allclose(r.point_loss, [0.25, 0.75, 0.75, 0.5])
    assert r.expected_loss == pytest.approx(2.25 / 4)
    assert r.bias == pytest.approx(3 / 4)
    assert r.variance == pytest.approx(1.25 / 4)
    # Net variance: +V on the unbiased point, -P(prediction = y) on the biased ones.
    assert r.net_variance == pytest.approx((0.25 - 0.25 - 0.25 - 0.5) / 4)
    assert r.unbiased_variance == pytest.approx(0.25 / 4)
    assert r.biased_variance == pytest.approx(1.0 / 4)
    assert r.expected_loss == pytest.approx(r.bias + r.net_variance)
    assert r.expected_loss != pytest.approx(r.bias + r.variance)


def test_leaves_the_estimator_unfitted_and_reports_progress() -> None:
    X, y = _regression()
    tree = DecisionTreeRegressor(random_state=0)
    calls: list[int] = []
    bias_variance_decomposition(
        tree,
        X[:100],
        y[:100],
        X[100:],
        y[100:],
        n_rounds=7,
        random_seed=0,
        progress=calls.append,
    )
    assert calls == [1] * 7
    assert not hasattr(tree, "tree_")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"loss": "hinge"}, ConfigError, "loss must be 'mse' or '0-1'"),
        ({"n_rounds": 0}, ConfigError, "n_rounds must be a positive integer"),
        ({"y_test": np.zeros(3)}, DataError, "y_test: 80 rows in X_test but 3 labels"),
        ({"X_train": np.zeros(160)}, DataError, "X_train: expected a 2-d array"),
        ({"y_test": np.array(["a"] * 80)}, DataError, "squared loss needs numeric labels"),
    ],
)
def test_bad_input_says_what_and_where(kwargs, error, message) -> None:
    X, y = _regression()
    args = {"X_train": X[:160], "y_train": y[:160], "X_test": X[160:], "y_test": y[160:]}
    args.update({k: v for k, v in kwargs.items() if k in args})
    options = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises(error, match=message):
        bias_variance_decomposition(
            DecisionTreeRegressor(max_depth=2),
            **args,
            n_rounds=options.pop("n_rounds", 3),
            **options,
        )


def test_complexity_curve_and_plot(tmp_path) -> None:
    X, y = _regression()
    args = (X[:160], y[:160], X[160:], y[160:])
    curve = complexity_curve(
        lambda d: DecisionTreeRegressor(max_depth=d, random_state=0),
        [1, 3, None],
        *args,
        parameter="max_depth",
        n_rounds=15,
        random_seed=4,
    )
    # Each point is the plain decomposition with the same seed (common random numbers).
    alone = bias_variance_decomposition(
        DecisionTreeRegressor(max_depth=3, random_state=0), *args, n_rounds=15, random_seed=4
    )
    assert curve.results[1].expected_loss == alone.expected_loss
    rows = curve.rows()
    assert [r["complexity"] for r in rows] == [1, 3, None]
    losses = [r["expected_loss"] for r in rows]
    assert curve.best_index == int(np.argmin(losses))
    assert rows[0]["bias"] > rows[2]["bias"] and rows[0]["variance"] < rows[2]["variance"]
    path = tmp_path / "curve.png"
    fig = plot_complexity_curve(curve, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["1", "3", "None"]


def test_complexity_curve_needs_values() -> None:
    X, y = _regression()
    with pytest.raises(ConfigError, match="complexities is empty"):
        complexity_curve(DecisionTreeRegressor, [], X, y, X, y)
