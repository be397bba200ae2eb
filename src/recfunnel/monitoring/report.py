"""One drift report from the three views: adversarial validation, per-feature tests, profiles.

:func:`drift_report` runs :class:`~recfunnel.monitoring.adversarial.AdversarialValidation` (an
omnibus test of the joint distribution, plus held-out permutation importance), the per-feature
tests of :mod:`~recfunnel.monitoring.feature_tests` and the profile comparison of
:mod:`~recfunnel.monitoring.profile` on the columns both frames share. Columns flagged as ids,
timestamps or row numbers are left out of all three and listed as ``leaky_columns``.

The verdict ``drift`` is "the adversarial AUC test **or** a corrected per-feature test is
significant". Each family runs at ``alpha / 2`` (Bonferroni over the two), so with no drift the
report flags at most ``alpha`` of the time, not up to twice that. ``drifted_features`` lists the
columns the classifier leans on (most important first), then the columns whose own test is
significant. Alerts are descriptive thresholds, not tests; they do not set ``drift``.

:meth:`DriftReport.write` lays out a directory::

    report.json          DriftReport.to_dict()
    index.html           plain HTML (no scripts) with the tables and the plots
    plots/feature_*.png  reference vs current per feature (histograms / category bars)
    plots/correlation_change.png   current - reference correlations, Pearson and Spearman
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from recfunnel.core.errors import ConfigError
from recfunnel.monitoring.adversarial import AdversarialValidation
from recfunnel.monitoring.feature_tests import (
    ColumnKind,
    Correction,
    category_labels,
    common_columns,
    feature_tests,
)
from recfunnel.monitoring.profile import AlertThresholds, ProfileComparison, compare_profiles

#: Categories drawn per bar plot; the rest are summed into one bar.
MAX_BARS = 15


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN and infinities ``None``, frames records.

    >>> jsonable({"a": np.float64("nan"), "b": [np.int64(2), np.bool_(True)]})
    {'a': None, 'b': [2, True]}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return [jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if value is None or isinstance(value, str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


@dataclass
class DriftReport:
    """What :func:`drift_report` found. ``to_dict`` is the stable JSON layout."""

    drift: bool
    alpha: float
    correction: str
    adversarial: dict[str, Any]
    feature_tests: pd.DataFrame
    profile: ProfileComparison
    drifted_features: list[str]
    kinds: dict[str, ColumnKind]
    reference: pd.DataFrame = field(repr=False)
    current: pd.DataFrame = field(repr=False)

    @property
    def auc(self) -> float:
        return float(self.adversarial["auc"])

    @property
    def p_value(self) -> float:
        return float(self.adversarial["p_value"])

    @property
    def leaky_columns(self) -> dict[str, str]:
        return dict(self.adversarial["leaky_columns"])

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return self.profile.alerts

    def to_dict(self) -> dict[str, Any]:
        """``{"drift", "auc", "p_value", "drifted_features", "leaky_columns", "feature_tests",
        "alerts", "correlation_changes", ...}`` with plain JSON values (NaN as ``null``)."""
        adv = self.adversarial
        out: dict[str, Any] = jsonable(
            {
                "drift": self.drift,
                "auc": adv["auc"],
                "p_value": adv["p_value"],
                "alpha": self.alpha,
                "correction": self.correction,
                "adversarial_drift": adv["drift"],
                "feature_drift": bool(self.feature_tests["drifted"].any()),
                "drifted_features": self.drifted_features,
                "leaky_columns": list(adv["leaky_columns"]),
                "leaky_reasons": adv["leaky_columns"],
                "importances": adv["importances"],
                "adversarial": {k: v for k, v in adv.items() if k != "leaky_columns"},
                "feature_tests": self.feature_tests,
                "alerts": self.profile.alerts,
                "correlation_changes": self.profile.correlation_changes,
                "profile": self.profile.side_by_side(),
                "n_reference": len(self.reference),
                "n_current": len(self.current),
            }
        )
        return out

    def write(self, directory: str | Path, *, max_plots: int = 24) -> Path:
        """Write ``report.json``, ``index.html`` and ``plots/`` into ``directory``, all or nothing.

        Everything is written into a temporary sibling directory that is renamed into place at
        the end, so a failure leaves no half-written report. An existing ``directory`` is
        replaced only if it is empty or holds a previous report (a ``report.json``).
        """
        directory = Path(directory)
        if directory.exists():
            if not directory.is_dir():
                raise ConfigError(f"{directory}: exists and is not a directory")
            if any(directory.iterdir()) and not (directory / "report.json").is_file():
                raise ConfigError(
                    f"{directory}: exists and is not a drift report; pick a new or empty directory"
                )
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            # mkdtemp makes the directory private (0700); a report is meant to be shared.
            tmp.chmod(0o755)
            self._write_into(tmp, max_plots=max_plots)
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
                directory.rename(old)
                try:
                    tmp.rename(directory)
                except BaseException:
                    old.rename(directory)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    def _write_into(self, out: Path, *, max_plots: int) -> None:
        payload = self.to_dict()
        (out / "plots").mkdir()
        plots = []
        tested = self.feature_tests["feature"].tolist()
        order = list(dict.fromkeys([*self.drifted_features, *tested]))
        for i, col in enumerate(order[:max_plots]):
            name = f"plots/feature_{i:03d}_{_slug(col)}.png"
            _plot_feature(out / name, col, self.kinds[col], self.reference[col], self.current[col])
            plots.append((col, name))
        heatmap = None
        numeric = [c for c in tested if self.kinds[c] == "numeric"]
        if len(numeric) >= 2:
            heatmap = "plots/correlation_change.png"
            _plot_correlation_change(out / heatmap, self.reference, self.current, numeric)
        text = json.dumps(payload, indent=1, allow_nan=False)
        (out / "report.json").write_text(text + "\n", encoding="utf-8")
        (out / "index.html").write_text(_html(payload, plots, heatmap), encoding="utf-8")


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    alpha: float = 0.05,
    correction: Correction = "bh",
    columns: Sequence[str] | None = None,
    null: Literal["analytic", "permutation"] = "analytic",
    n_permutations: int = 99,
    drop_columns: Sequence[str] = (),
    keep_columns: Sequence[str] = (),
    thresholds: AlertThresholds | None = None,
    adversarial: AdversarialValidation | None = None,
    top_k_correlations: int | None = 10,
    seed: int = 0,
) -> DriftReport:
    """Compare ``current`` with ``reference`` on their shared columns (or ``columns``).

    ``adversarial`` overrides the classifier settings (its parameters are copied, its ``alpha``
    replaced by ``alpha / 2``); otherwise one is built from ``null``, ``n_permutations``,
    ``drop_columns``, ``keep_columns`` and ``seed``.

    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(size=500), "y": rng.normal(size=500)})
    >>> cur = pd.DataFrame({"x": rng.normal(0.5, size=500), "y": rng.normal(size=500)})
    >>> r = drift_report(ref, cur)
    >>> r.drift, r.drifted_features
    (True, ['x'])
    """
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    kinds = common_columns(reference, current, columns)
    reference, current = reference[list(kinds)], current[list(kinds)]
    if adversarial is None:
        adversarial = AdversarialValidation(
            null=null,
            n_permutations=n_permutations,
            drop_columns=drop_columns,
            keep_columns=keep_columns,
            seed=seed,
        )
    av = AdversarialValidation(**{**adversarial.get_params(), "alpha": alpha / 2})
    av.fit(reference, current)
    leaky = list(av.leaky_columns_)
    tests = feature_tests(reference, current, exclude=leaky, alpha=alpha / 2, correction=correction)
    profile = compare_profiles(
        reference, current, exclude=leaky, thresholds=thresholds, top_k=top_k_correlations
    )
    by_test = tests.loc[tests["drifted"], "feature"].tolist()
    drifted = list(dict.fromkeys([*av.drifted_features_, *by_test]))
    return DriftReport(
        drift=bool(av.drift_ or len(by_test) > 0),
        alpha=alpha,
        correction=correction,
        adversarial=av.summary(),
        feature_tests=tests,
        profile=profile,
        drifted_features=drifted,
        kinds=kinds,
        reference=reference,
        current=current,
    )


# -- plots -----------------------------------------------------------------------------------
def _slug(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_-]+", "_", name)[:40] or "col"


def _figure(width: float, height: float) -> Any:
    # A bare Figure (no pyplot): no global backend switch, nothing left open between calls.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=90, layout="constrained")


def _plot_feature(path: Path, col: str, kind: ColumnKind, ref: pd.Series, cur: pd.Series) -> None:
    fig = _figure(5.5, 3.2)
    ax = fig.add_subplot()
    if kind == "numeric":
        r = pd.to_numeric(ref, errors="coerce").astype("float64").dropna().to_numpy()
        c = pd.to_numeric(cur, errors="coerce").astype("float64").dropna().to_numpy()
        both = np.concatenate([r, c])
        both = both[np.isfinite(both)]
        if len(both):
            # Clip the range to the central 99% so one outlier does not squash the histogram.
            lo, hi = np.quantile(both, [0.005, 0.995])
            if lo == hi:
                lo, hi = lo - 0.5, hi + 0.5
            bins = np.linspace(lo, hi, 41)
            ax.hist(r, bins=bins, density=True, alpha=0.5, label=f"reference (n={len(r)})")
            ax.hist(c, bins=bins, density=True, alpha=0.5, label=f"current (n={len(c)})")
        ax.set_ylabel("density")
    else:
        r_share = category_labels(ref).value_counts(normalize=True)
        c_share = category_labels(cur).value_counts(normalize=True)
        table = pd.DataFrame({"reference": r_share, "current": c_share}).fillna(0.0)
        table = table.loc[table.max(axis=1).sort_values(ascending=False).index]
        if len(table) > MAX_BARS:
            rest = table.iloc[MAX_BARS - 1 :].sum()
            table = pd.concat([table.iloc[: MAX_BARS - 1], rest.to_frame("(other)").T])
        x = np.arange(len(table))
        ax.bar(x - 0.2, table["reference"], width=0.4, label="reference")
        ax.bar(x + 0.2, table["current"], width=0.4, label="current")
        ax.set_xticks(x, [str(v)[:14] for v in table.index], rotation=45, ha="right")
        ax.set_ylabel("share of rows")
    ax.set_title(col)
    ax.legend(fontsize=8)
    fig.savefig(path)


def _plot_correlation_change(
    path: Path, reference: pd.DataFrame, current: pd.DataFrame, numeric: list[str]
) -> None:
    cols = numeric[:25]
    ref = reference[cols].apply(pd.to_numeric, errors="coerce").astype("float64")
    cur = current[cols].apply(pd.to_numeric, errors="coerce").astype("float64")
    fig = _figure(4.0 + 0.5 * len(cols), 2.5 + 0.25 * len(cols))
    deltas = {
        m: (cur.corr(method=m) - ref.corr(method=m)).to_numpy() for m in ("pearson", "spearman")
    }
    finite = np.concatenate([d[np.isfinite(d)] for d in deltas.values()])
    vmax = max(0.2, float(np.abs(finite).max()) if len(finite) else 0.2)
    axes = fig.subplots(1, 2)
    for ax, (method, delta) in zip(axes, deltas.items(), strict=True):
        im = ax.imshow(delta, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_xticks(range(len(cols)), [c[:12] for c in cols], rotation=90)
        ax.set_yticks(range(len(cols)), [c[:12] for c in cols])
        ax.set_title(f"change in {method.capitalize()}", fontsize=10)
        if len(cols) <= 10:
            for (i, j), v in np.ndenumerate(delta):
                if np.isfinite(v) and i != j:
                    dark = abs(v) > 0.6 * vmax
                    ax.text(
                        j, i, f"{v:+.2f}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black",
                    )  # fmt: skip
    fig.suptitle("correlation: current - reference", fontsize=10)
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.savefig(path)


# -- HTML ------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return html.escape(json.dumps(value))
    return html.escape(str(value))


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>None.</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html(payload: dict[str, Any], plots: list[tuple[str, str]], heatmap: str | None) -> str:
    verdict = "DRIFT" if payload["drift"] else "no drift"
    auc, p = payload["auc"], payload["p_value"]
    leaky = [{"column": c, "reason": r} for c, r in payload["leaky_reasons"].items()]
    figures = "".join(
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(col)}">'
        f"<figcaption>{html.escape(col)}</figcaption></figure>"
        for col, src in plots
    )
    heat = (
        f'<h2>Correlation changes</h2><img src="{html.escape(heatmap)}" alt="correlation change">'
        if heatmap
        else "<h2>Correlation changes</h2>"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; font-size: 90%; text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; }}
</style></head><body>
<h1>Drift report: {verdict}</h1>
<p>Adversarial validation: AUC {_cell(auc)}, p-value {_cell(p)}
(drift: {payload["adversarial_drift"]}); per-feature tests ({html.escape(payload["correction"])}
correction): drift: {payload["feature_drift"]}. Overall alpha {_cell(payload["alpha"])}, split
between the two. Reference rows: {payload["n_reference"]}, current rows: {payload["n_current"]}.</p>
<h2>Drifted features</h2><p>{_cell(", ".join(payload["drifted_features"]) or "none")}</p>
<h2>Leaky columns (ids, timestamps, row numbers: left out)</h2>{_table(leaky)}
<h2>Alerts</h2>{_table(payload["alerts"], ["feature", "kind", "message"])}
<h2>Permutation importance (held-out AUC lost when shuffled)</h2>
{_table(payload["importances"] or [])}
<h2>Per-feature tests</h2>{_table(payload["feature_tests"])}
{heat}{_table(payload["correlation_changes"])}
<h2>Distributions</h2>{figures}
</body></html>
"""
