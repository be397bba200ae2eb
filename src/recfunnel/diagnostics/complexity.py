"""Bias and variance along a model-complexity axis (the textbook U-curve), and its plot.

Every complexity is decomposed on the *same* bootstrap resamples (the same ``random_seed``):
common random numbers, so differences between complexities are not resampling noise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recfunnel.core.errors import ConfigError
from recfunnel.diagnostics.bias_variance import (
    BiasVarianceResult,
    Progress,
    bias_variance_decomposition,
)


@dataclass(frozen=True, eq=False)
class ComplexityCurve:
    """One bias–variance decomposition per complexity value, in the order given."""

    parameter: str
    complexities: tuple[Any, ...]
    results: tuple[BiasVarianceResult, ...]

    @property
    def loss(self) -> str:
        return self.results[0].loss

    @property
    def definition(self) -> str:
        return self.results[0].definition

    @property
    def best_index(self) -> int:
        """Index of the complexity with the lowest expected loss (the first one on ties)."""
        losses = [r.expected_loss for r in self.results]
        return losses.index(min(losses))

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per complexity: the value, expected loss, bias and variance."""
        return [
            {
                "complexity": c,
                "expected_loss": r.expected_loss,
                "bias": r.bias,
                "variance": r.variance,
                "net_variance": r.net_variance,
            }
            for c, r in zip(self.complexities, self.results, strict=True)
        ]


def complexity_curve(
    make_estimator: Callable[[Any], Any],
    complexities: Sequence[Any],
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    *,
    parameter: str = "complexity",
    loss: str = "mse",
    n_rounds: int = 200,
    random_seed: int | None = 0,
    fit_params: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> ComplexityCurve:
    """Decompose ``make_estimator(c)`` for each ``c`` in ``complexities`` (simple to complex).

    ``parameter`` only names the axis (e.g. ``"max_depth"``). Deeper trees trade bias for
    variance:

    >>> import numpy as np
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-3, 3, size=(150, 1)); y = np.sin(2 * X[:, 0]) + 0.3 * rng.normal(size=150)
    >>> curve = complexity_curve(lambda d: DecisionTreeRegressor(max_depth=d, random_state=0),
    ...                          [1, None], X[:100], y[:100], X[100:], y[100:], n_rounds=20)
    >>> shallow, full = curve.results
    >>> shallow.bias > full.bias and shallow.variance < full.variance
    True
    """
    if len(complexities) == 0:
        raise ConfigError("complexities is empty: give at least one value")
    results = tuple(
        bias_variance_decomposition(
            make_estimator(c),
            X_train,
            y_train,
            X_test,
            y_test,
            loss=loss,
            n_rounds=n_rounds,
            random_seed=random_seed,
            fit_params=fit_params,
            progress=progress,
        )
        for c in complexities
    )
    return ComplexityCurve(parameter=parameter, complexities=tuple(complexities), results=results)


def plot_complexity_curve(
    curve: ComplexityCurve, path: Path | str | None = None, *, title: str | None = None
) -> Any:
    """Expected loss, bias and variance against complexity; a matplotlib ``Figure``.

    Complexities sit at even spacing with their values as tick labels (they are often powers
    of two or ``None`` for "unbounded"). Written as PNG to ``path`` when one is given.
    """
    # A bare Figure with an Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = list(range(len(curve.complexities)))
    squared = curve.loss == "mse"
    series = [
        ("expected loss", [r.expected_loss for r in curve.results], "-o"),
        (
            "bias² (incl. noise)" if squared else "bias (incl. noise)",
            [r.bias for r in curve.results],
            "--s",
        ),
        ("variance", [r.variance for r in curve.results], ":^"),
    ]
    for label, values, style in series:
        ax.plot(x, values, style, label=label)
    best = curve.best_index
    ax.axvline(best, color="grey", linewidth=0.8, alpha=0.6)
    ax.set_xticks(x, [str(c) for c in curve.complexities])
    ax.set_xlabel(f"{curve.parameter} (model complexity →)")
    ax.set_ylabel("squared error" if squared else "0-1 error")
    n_rounds = curve.results[0].n_rounds
    ax.set_title(title or f"bias–variance vs {curve.parameter} ({n_rounds} bootstrap rounds)")
    ax.legend(frameon=False)
    if path is not None:
        fig.savefig(path)
    return fig
