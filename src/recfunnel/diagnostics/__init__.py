"""Model diagnostics: bias–variance decomposition by bootstrap and bootstrap prediction intervals.

* ``bias_variance``: ``bias_variance_decomposition`` (mlxtend's protocol and numbers, squared
  and Domingos 0-1 loss) and its result type;
* ``complexity``: the decomposition along a complexity axis, and the error-vs-complexity plot;
* ``families``: built-in estimator families with one complexity knob each;
* ``prediction_intervals``: ``BootstrapPredictionInterval`` for any regressor.

Depends on ``recfunnel.core``, numpy, scipy and scikit-learn; matplotlib and lightgbm lazily.
"""

from recfunnel.diagnostics.bias_variance import BiasVarianceResult, bias_variance_decomposition
from recfunnel.diagnostics.complexity import (
    ComplexityCurve,
    complexity_curve,
    plot_complexity_curve,
)
from recfunnel.diagnostics.families import FAMILIES, EstimatorFamily, estimator_family
from recfunnel.diagnostics.prediction_intervals import BootstrapPredictionInterval

__all__ = [
    "FAMILIES",
    "BiasVarianceResult",
    "BootstrapPredictionInterval",
    "ComplexityCurve",
    "EstimatorFamily",
    "bias_variance_decomposition",
    "complexity_curve",
    "estimator_family",
    "plot_complexity_curve",
]
