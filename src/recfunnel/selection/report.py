"""A fitted :class:`~recfunnel.selection.probe.ProbeSelector` as JSON and as a plot.

:func:`selection_report` is plain JSON values (NaN becomes ``None``); :func:`plot_selection`
draws, per feature, the spread over runs of the importance the hits were counted on, next to
the spread of the best probe, coloured by the decision. :func:`write_selection` writes both as
``selection.json`` and ``selection.png``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from recfunnel.core.errors import NotFittedError
from recfunnel.selection.probe import ProbeSelector

#: Colours of the three decisions in the plot.
COLOURS = {"confirmed": "#2a9d3f", "tentative": "#e9a23b", "rejected": "#b0b0b0"}
#: Features drawn at most (highest median importance first); the rest are counted in the title.
MAX_PLOTTED = 40


def _number(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def _median(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else None


def selection_report(selector: ProbeSelector) -> dict[str, Any]:
    """The decisions, tests and importance summaries of a fitted selector, as JSON values.

    >>> import pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    >>> sel = ProbeSelector(n_runs=8, n_estimators=30).fit(X, (X["a"] > 0).astype(int))
    >>> report = selection_report(sel)
    >>> report["confirmed"], report["features"][0]["hits"], report["runs_per_round"]
    (['a'], 8, 8)
    """
    if not hasattr(selector, "support_"):
        raise NotFittedError("ProbeSelector is not fitted yet; call fit(X, y) first")
    features = []
    for j, name in enumerate(selector.feature_names_in_):
        row: dict[str, Any] = {
            "feature": name,
            "decision": str(selector.decision_[j]),
            "hits": int(selector.hits_[j]),
            "round": int(selector.decided_in_round_[j]),
            "p_value": _number(selector.p_values_[j]),
            "p_adjusted": _number(selector.p_adjusted_[j]),
        }
        for key, history in selector.importances_.items():
            row[f"{key}_median"] = _median(history[:, j])
            finite = history[np.isfinite(history[:, j]), j]
            row[f"{key}_mean"] = float(finite.mean()) if len(finite) else None
        features.append(row)
    probe = {
        key: {
            "median_round_1": _median(values[selector.round_of_run_ == 1]),
            "median_last_round": _median(values[selector.round_of_run_ == selector.n_rounds_]),
        }
        for key, values in selector.probe_max_.items()
    }
    return {
        "confirmed": list(selector.confirmed_),
        "tentative": list(selector.tentative_),
        "rejected": list(selector.rejected_),
        "task": selector.task_,
        "estimator": selector.estimator,
        "importance": selector.importance,
        "runs_per_round": selector.n_runs,
        "rounds": int(selector.n_rounds_),
        "alpha": selector.alpha,
        "correction": selector.correction,
        "seed": selector.seed,
        "n_rows": int(selector.n_rows_),
        "features": features,
        "best_probe": probe,
    }


def plot_selection(selector: ProbeSelector, path: Path, importance: str | None = None) -> None:
    """Box plots of each feature's importance over runs and of the best probe's, as a PNG.

    ``importance``: ``"gain"`` or ``"permutation"``; default the one the decisions used.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    key = importance or selector.importance
    history = selector.importances_[key]
    medians = np.array([_median(history[:, j]) or 0.0 for j in range(history.shape[1])])
    order = np.argsort(-medians, kind="stable")[:MAX_PLOTTED]
    names = [selector.feature_names_in_[j] for j in order]
    boxes = [history[np.isfinite(history[:, j]), j] for j in order]
    colours = [COLOURS[str(selector.decision_[j])] for j in order]
    rounds = range(1, selector.n_rounds_ + 1)
    for r in rounds:
        boxes.append(selector.probe_max_[key][selector.round_of_run_ == r])
        names.append(f"best probe (round {r})" if selector.n_rounds_ > 1 else "best probe")
        colours.append("#3b6fb6")

    fig = Figure(figsize=(7.5, 1.5 + 0.28 * len(boxes)), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positions = np.arange(len(boxes))[::-1]
    art = ax.boxplot(
        [b if len(b) else [np.nan] for b in boxes],
        positions=positions,
        orientation="horizontal",
        widths=0.6,
        patch_artist=True,
        showfliers=True,
    )
    for patch, colour in zip(art["boxes"], colours, strict=True):
        patch.set_facecolor(colour)
    ax.set_yticks(positions, [str(n)[:30] for n in names])
    ax.set_xlabel(f"{key} importance per run")
    hidden = history.shape[1] - len(order)
    extra = f" ({hidden} more not shown)" if hidden > 0 else ""
    ax.set_title(f"probe selection: {key} importance vs the best probe{extra}", fontsize=10)
    legend = [Patch(color=c, label=d) for d, c in COLOURS.items()]
    legend.append(Patch(color="#3b6fb6", label="best probe"))
    ax.legend(handles=legend, fontsize=8, loc="lower right")
    fig.savefig(path)


def write_selection(selector: ProbeSelector, directory: Path) -> dict[str, Any]:
    """Write ``selection.json`` and ``selection.png`` into ``directory``; return the report."""
    directory.mkdir(parents=True, exist_ok=True)
    report = selection_report(selector)
    (directory / "selection.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    plot_selection(selector, directory / "selection.png")
    return report
