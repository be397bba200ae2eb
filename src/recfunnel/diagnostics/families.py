"""Built-in estimator families with one complexity knob each, for complexity sweeps.

``estimator_family("tree")`` names the knob and builds a regressor or a classifier at a given
complexity. Knobs and what "more complex" means:

* ``tree``: ``max_depth`` (deeper is more complex; ``None`` grows the tree fully);
* ``linear``: polynomial ``degree`` of standardised features, then least squares (regression)
  or logistic regression (classification);
* ``knn``: ``n_neighbors`` on standardised features (*fewer* neighbours is more complex);
* ``lightgbm``: ``num_leaves`` of 50 boosted trees (imported only when built).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from recfunnel.core.errors import ConfigError

Task = Literal["regression", "classification"]


@dataclass(frozen=True)
class EstimatorFamily:
    """A named estimator family: its complexity knob, default sweep and builder."""

    name: str
    parameter: str
    defaults: tuple[Any, ...]
    _build: Callable[[Task, Any, int], Any]

    def build(self, task: Task, complexity: Any, *, seed: int = 0) -> Any:
        """An unfitted estimator of this family at ``complexity``.

        >>> estimator_family("tree").build("regression", 3)
        DecisionTreeRegressor(max_depth=3, random_state=0)
        """
        if task not in ("regression", "classification"):
            raise ConfigError(f"task must be regression or classification, got {task!r}")
        return self._build(task, complexity, seed)


def _tree(task: Task, depth: Any, seed: int) -> Any:
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    cls = DecisionTreeRegressor if task == "regression" else DecisionTreeClassifier
    return cls(max_depth=depth, random_state=seed)


def _linear(task: Task, degree: Any, seed: int) -> Any:
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    head = LinearRegression() if task == "regression" else LogisticRegression(max_iter=1000)
    return make_pipeline(
        StandardScaler(), PolynomialFeatures(degree=degree, include_bias=False), head
    )


def _knn(task: Task, k: Any, seed: int) -> Any:
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cls = KNeighborsRegressor if task == "regression" else KNeighborsClassifier
    return make_pipeline(StandardScaler(), cls(n_neighbors=k))


def _lightgbm(task: Task, leaves: Any, seed: int) -> Any:
    import lightgbm as lgb

    cls = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
    # One thread: each round is a small fit, and threads would only fight over shared cores.
    return cls(n_estimators=50, num_leaves=leaves, random_state=seed, n_jobs=1, verbose=-1)


FAMILIES: dict[str, EstimatorFamily] = {
    f.name: f
    for f in (
        EstimatorFamily("tree", "max_depth", (1, 2, 4, 8, None), _tree),
        EstimatorFamily("linear", "degree", (1, 2, 3, 5), _linear),
        EstimatorFamily("knn", "n_neighbors", (50, 20, 10, 5, 1), _knn),
        EstimatorFamily("lightgbm", "num_leaves", (2, 4, 8, 16, 32), _lightgbm),
    )
}


def estimator_family(name: str) -> EstimatorFamily:
    """The family called ``name``; ConfigError listing the choices otherwise.

    >>> estimator_family("knn").parameter
    'n_neighbors'
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown model family {name!r}: choose one of {', '.join(FAMILIES)}"
        ) from None
