"""Experiment report: the analysis as JSON, and plots of the lift and p-values over time.

Over time (with a time column) each distinct time value is a look (at most ``max_looks``,
evenly spaced over the distinct values), and for each treatment the report shows, on
cumulative data at each look:

* the absolute lift with its pointwise ``1 - alpha`` interval (normal approximation) and the
  always-valid confidence sequence of the mSPRT; only the latter may be read at every look;
* the fixed-horizon p-value beside the always-valid (mSPRT) p-value, which never increases;
* the sample-ratio-mismatch p-value at each look; the title states the final SRM status.

With a covariate the curves are CUPED-adjusted with ``theta`` refitted on the data up to each
look (never on later data), so the last look reproduces the final CUPED analysis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.ids import write_json_atomic
from recfunnel.experiments.analysis import ExperimentAnalysis
from recfunnel.experiments.sequential import confidence_sequence, msprt_p_values

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LiftOverTime:
    """Cumulative comparison of one treatment with control at successive looks."""

    treatment: str
    looks: list[str]
    n_control: FloatArray
    n_treatment: FloatArray
    lift: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    p_fixed: FloatArray
    p_sequential: FloatArray
    cs_low: FloatArray
    cs_high: FloatArray
    srm_p: FloatArray

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()
        }


def lift_over_time(
    times: npt.ArrayLike,
    variants: npt.ArrayLike,
    values: npt.ArrayLike,
    *,
    control: str,
    treatment: str,
    tau: float,
    alpha: float = 0.05,
    binary: bool = False,
    covariate: npt.ArrayLike | None = None,
    weights: tuple[float, float] = (1.0, 1.0),
    max_looks: int = 100,
) -> LiftOverTime:
    """Lift, intervals, fixed and sequential p-values on cumulative data at each look.

    ``times`` are sortable (numbers, ``datetime64`` or ISO-8601 strings). ``binary`` uses the
    pooled variance under H0 for the fixed-horizon p-value, as the z-test does. A
    ``covariate`` makes every look a CUPED-adjusted Welch comparison (see the module notes).

    >>> t = np.repeat(np.arange(4), 2000)
    >>> v = np.tile(["c", "t"], 4000)
    >>> y = np.random.default_rng(0).normal(size=8000) + (v == "t") * 0.2
    >>> lot = lift_over_time(t, v, y, control="c", treatment="t", tau=0.1)
    >>> lot.looks, bool(np.all(np.diff(lot.p_sequential) <= 0)), bool(lot.p_sequential[-1] < 0.01)
    (['0', '1', '2', '3'], True, True)
    """
    if max_looks < 1:
        raise ConfigError(f"max_looks must be at least 1, got {max_looks}")
    tt = np.asarray(times)
    vv = np.asarray(variants).astype(str)
    yy = np.asarray(values, dtype=np.float64)
    if not (tt.shape == vv.shape == yy.shape) or yy.ndim != 1:
        raise DataError(
            f"times, variants, values differ in shape: {tt.shape}, {vv.shape}, {yy.shape}"
        )
    xx = None if covariate is None else np.asarray(covariate, dtype=np.float64)
    if xx is not None and xx.shape != yy.shape:
        raise DataError(f"covariate has shape {xx.shape}, values {yy.shape}")
    keep = (vv == control) | (vv == treatment)
    tt, vv, yy = tt[keep], vv[keep], yy[keep]
    xx = None if xx is None else xx[keep]
    binary = binary and xx is None
    uniq = np.unique(tt)
    if uniq.size == 0:
        raise DataError(f"no rows for {control!r} or {treatment!r}")
    # Fewer looks than distinct times: the looks are every k-th distinct value (always the last).
    edges = uniq[
        np.unique(np.linspace(0, uniq.size - 1, min(max_looks, uniq.size)).round().astype(int))
    ]
    look = np.searchsorted(edges, tt, side="left")
    n_looks = edges.size
    is_t = vv == treatment

    def cumsum(mask: npt.NDArray[np.bool_], w: FloatArray | None) -> FloatArray:
        return np.cumsum(np.bincount(look[mask], weights=w, minlength=n_looks).astype(np.float64))

    n_c, n_t = cumsum(~is_t, None), cumsum(is_t, None)
    s_c, s_t = cumsum(~is_t, yy[~is_t]), cumsum(is_t, yy[is_t])
    ss_c, ss_t = cumsum(~is_t, yy[~is_t] ** 2), cumsum(is_t, yy[is_t] ** 2)
    if xx is not None:
        s_c, ss_c, s_t, ss_t = _cuped_sums(
            look, n_looks, is_t, yy, xx, n_c, s_c, ss_c, n_t, s_t, ss_t
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        m_c, m_t = s_c / n_c, s_t / n_t
        # Variances of the means, as the final tests compute them: p (1 - p) / n for
        # conversions (the z-test), the unbiased sample variance / n otherwise (Welch).
        ddof = 0 if binary else 1
        var_c = np.maximum(ss_c - n_c * m_c**2, 0.0) / (n_c - ddof) / n_c
        var_t = np.maximum(ss_t - n_t * m_t**2, 0.0) / (n_t - ddof) / n_t
        var = np.where((n_c >= 2) & (n_t >= 2), var_c + var_t, np.nan)
        lift = m_t - m_c
        se = np.sqrt(var)
        if binary:
            pooled = (s_c + s_t) / (n_c + n_t)
            se0 = np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
        else:
            se0 = se
        z = np.where(se0 > 0, lift / se0, 0.0)
    p_fixed = np.where(np.isfinite(z) & np.isfinite(var), 2 * stats.norm.sf(np.abs(z)), 1.0)
    half = stats.norm.isf(alpha / 2) * se
    cs_lo, cs_hi = confidence_sequence(lift, var, tau=tau, alpha=alpha)
    w = np.asarray(weights, dtype=np.float64)
    expected = np.outer(n_c + n_t, w / w.sum())
    observed = np.stack([n_c, n_t], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = np.sum((observed - expected) ** 2 / expected, axis=1)
    srm_p = np.where(np.isfinite(chi2), stats.chi2.sf(chi2, df=1), 1.0)
    return LiftOverTime(
        treatment=treatment,
        looks=[str(e) for e in edges],
        n_control=n_c,
        n_treatment=n_t,
        lift=lift,
        ci_low=lift - half,
        ci_high=lift + half,
        p_fixed=p_fixed,
        p_sequential=msprt_p_values(lift, var, tau=tau),
        cs_low=cs_lo,
        cs_high=cs_hi,
        srm_p=srm_p,
    )


def _cuped_sums(
    look: npt.NDArray[np.intp],
    n_looks: int,
    is_t: npt.NDArray[np.bool_],
    y: FloatArray,
    x: FloatArray,
    n_c: FloatArray,
    s_c: FloatArray,
    ss_c: FloatArray,
    n_t: FloatArray,
    s_t: FloatArray,
    ss_t: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per-look sums and sums of squares of the CUPED-adjusted metric, theta fitted per look.

    With ``w = y - theta x`` the adjusted value is ``w + theta mean(x)``: a shift common to both
    arms, so the sums of ``w`` give the same lift and variances and need only running sums.
    """

    def cs(mask: npt.NDArray[np.bool_], w: FloatArray) -> FloatArray:
        return np.cumsum(np.bincount(look[mask], weights=w[mask], minlength=n_looks))

    ones = np.ones_like(is_t)
    n = n_c + n_t
    sx, sxx, sxy = cs(ones, x), cs(ones, x * x), cs(ones, x * y)
    sy = s_c + s_t
    with np.errstate(divide="ignore", invalid="ignore"):
        var_x = sxx - sx * sx / n
        theta = np.where(var_x > 0, (sxy - sx * sy / n) / var_x, 0.0)
        x_mean = sx / n
    shift = theta * x_mean  # puts the adjusted means back on the metric's own scale
    out = []
    for mask, n_a, s, ss in ((~is_t, n_c, s_c, ss_c), (is_t, n_t, s_t, ss_t)):
        sx_a, sxx_a, sxy_a = cs(mask, x), cs(mask, x * x), cs(mask, x * y)
        w_sum = s - theta * sx_a
        w_sq = ss - 2 * theta * sxy_a + theta**2 * sxx_a
        out += [w_sum + n_a * shift, w_sq + 2 * shift * w_sum + n_a * shift**2]
    return out[0], out[1], out[2], out[3]


@dataclass
class ExperimentReport:
    """An :class:`ExperimentAnalysis` plus its curves over time (when a time column exists).

    ``write(directory)`` writes ``report.json`` and ``lift.png`` (the final lifts with their
    intervals), and with curves ``lift_over_time.png`` (lift with bands, p-values, SRM).
    """

    analysis: ExperimentAnalysis
    over_time: list[LiftOverTime] = field(default_factory=list)
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = {"source": self.source, **self.analysis.to_dict()}
        if self.over_time:
            doc["over_time"] = {lot.treatment: lot.to_dict() for lot in self.over_time}
            for c in doc["comparisons"]:
                lot = next(o for o in self.over_time if o.treatment == c["treatment"])
                c["p_value_sequential_running"] = float(lot.p_sequential[-1])
        safe: dict[str, Any] = _json_safe(doc)
        return safe

    @property
    def srm_status(self) -> str:
        srm = self.analysis.srm
        state = "MISMATCH" if srm.flagged else "ok"
        return f"SRM {state} (chi-square p = {srm.p_value:.3g}, threshold {srm.threshold:g})"

    def write(self, directory: Path | str) -> list[Path]:
        """Write the JSON report and the plots into ``directory``; returns the paths."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "report.json", out / "lift.png"]
        write_json_atomic(paths[0], self.to_dict())
        self._plot_lifts(paths[1])
        if self.over_time:
            paths.append(out / "lift_over_time.png")
            self._plot_over_time(paths[2])
        return paths

    def _plot_lifts(self, path: Path) -> None:
        fig = _figure(6.0, 1.2 + 0.6 * len(self.analysis.comparisons))
        ax = fig.add_subplot(1, 1, 1)
        for i, c in enumerate(self.analysis.comparisons):
            lo, hi = c.absolute_ci
            ax.errorbar(
                [c.absolute_lift],
                [i],
                xerr=[[c.absolute_lift - lo], [hi - c.absolute_lift]],
                fmt="o",
                color="C0",
                capsize=4,
            )
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_yticks(range(len(self.analysis.comparisons)))
        ax.set_yticklabels([c.treatment for c in self.analysis.comparisons])
        ax.set_xlabel(f"absolute lift of {self.analysis.metric} vs {self.analysis.control}")
        ax.set_title(self.srm_status, fontsize=9)
        h = fig.get_figheight()
        fig.subplots_adjust(left=0.25, right=0.95, bottom=0.55 / h, top=1 - 0.35 / h)
        fig.savefig(path, dpi=110)

    def _plot_over_time(self, path: Path) -> None:
        fig = _figure(8.0, 9.0)
        ax_lift, ax_p, ax_srm = (fig.add_subplot(3, 1, i) for i in (1, 2, 3))
        alpha = self.analysis.comparisons[0].alpha if self.analysis.comparisons else 0.05
        for k, lot in enumerate(self.over_time):
            x = np.arange(len(lot.looks))
            color = f"C{k}"
            ax_lift.plot(x, lot.lift, color=color, label=f"{lot.treatment}: lift")
            ax_lift.fill_between(
                x,
                lot.ci_low,
                lot.ci_high,
                color=color,
                alpha=0.25,
                label=f"{lot.treatment}: pointwise {1 - alpha:.0%} CI",
            )
            finite = np.isfinite(lot.cs_low) & np.isfinite(lot.cs_high)
            ax_lift.plot(
                x[finite],
                lot.cs_low[finite],
                color=color,
                ls="--",
                lw=0.9,
                label=f"{lot.treatment}: always-valid CI (mSPRT)",
            )
            ax_lift.plot(x[finite], lot.cs_high[finite], color=color, ls="--", lw=0.9)
            ax_p.plot(
                x,
                np.maximum(lot.p_sequential, 1e-12),
                color=color,
                label=f"{lot.treatment}: always-valid p (mSPRT)",
            )
            ax_p.plot(
                x,
                np.maximum(lot.p_fixed, 1e-12),
                color=color,
                ls=":",
                label=f"{lot.treatment}: fixed-horizon p (invalid when peeking)",
            )
            ax_srm.plot(x, np.maximum(lot.srm_p, 1e-12), color=color, label=lot.treatment)
        looks = self.over_time[0].looks
        for ax in (ax_lift, ax_p, ax_srm):
            step = max(1, len(looks) // 10)
            ax.set_xticks(range(0, len(looks), step))
            ax.set_xticklabels(looks[::step], rotation=30, ha="right", fontsize=7)
            ax.legend(fontsize=7)
        ax_lift.axhline(0.0, color="grey", lw=0.8)
        ax_lift.set_ylabel(f"cumulative lift ({self.analysis.metric})")
        ax_p.axhline(alpha, color="red", lw=0.8)
        ax_p.set_yscale("log")
        ax_p.set_ylabel("p-value")
        ax_srm.axhline(self.analysis.srm.threshold, color="red", lw=0.8)
        ax_srm.set_yscale("log")
        ax_srm.set_ylabel("SRM p-value")
        fig.suptitle(f"{self.analysis.metric}: {self.srm_status}", fontsize=10)
        # Fixed margins: tight_layout would measure every tick label again (a second or more).
        fig.subplots_adjust(left=0.1, right=0.97, top=0.94, bottom=0.07, hspace=0.45)
        fig.savefig(path, dpi=110)


def build_report(
    analysis: ExperimentAnalysis,
    *,
    times: npt.ArrayLike | None = None,
    variants: Sequence[str] | npt.ArrayLike | None = None,
    values: npt.ArrayLike | None = None,
    covariate: npt.ArrayLike | None = None,
    weights: dict[str, float] | None = None,
    max_looks: int = 100,
    source: str | None = None,
) -> ExperimentReport:
    """The report of ``analysis``; with ``times`` (and the same rows' variants and values) the
    curves over time for every treatment."""
    report = ExperimentReport(analysis=analysis, source=source)
    if times is None:
        return report
    if variants is None or values is None:
        raise ConfigError("curves over time need the rows' variants and values too")
    tau = analysis.tau if analysis.tau is not None else 1.0
    for c in analysis.comparisons:
        w = (1.0, 1.0) if weights is None else (weights[c.control], weights[c.treatment])
        report.over_time.append(
            lift_over_time(
                times,
                variants,
                values,
                control=c.control,
                treatment=c.treatment,
                tau=tau,
                alpha=c.alpha,
                binary=analysis.kind == "binary",
                covariate=covariate,
                weights=w,
                max_looks=max_looks,
            )
        )
    return report


def _figure(width: float, height: float) -> Any:
    # A bare Figure with an Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _json_safe(obj: Any) -> Any:
    """NaN and infinities become ``None`` (JSON has neither); tuples become lists."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
