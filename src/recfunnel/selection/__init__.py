"""Feature selection stage: probe ("random bar") selection against shadow and noise features.

Depends only on ``recfunnel.core`` (and numpy / pandas / scipy; lightgbm or scikit-learn when
fitting, matplotlib lazily in the report).
"""

from recfunnel.selection.probe import ProbeSelector
from recfunnel.selection.report import plot_selection, selection_report, write_selection

__all__ = ["ProbeSelector", "plot_selection", "selection_report", "write_selection"]
