"""``recfunnel abtest``: plan, analyse and interleave A/B tests.

Registered in ``cli/main.py`` with ``app.add_typer(abtest_app, name="abtest")``.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, cast

import numpy as np
import numpy.typing as npt
import typer
from rich.console import Console
from rich.table import Table

from recfunnel.core.errors import ConfigError, DataError, RecfunnelError

if TYPE_CHECKING:
    from recfunnel.experiments.planning import Alternative, ProportionMethod, Rounding

# Typer passes plain strings; the library checks them and raises a ConfigError on bad values.
Kind = Literal["auto", "binary", "continuous"]

abtest_app = typer.Typer(
    help="Plan A/B tests (sample size, duration), analyse their results (lift, CIs, SRM, "
    "CUPED, always-valid p-values) and interleave two rankers.",
    no_args_is_help=True,
)
console = Console(stderr=True)


def _fail(exc: Exception) -> NoReturn:
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=2)


def _echo_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, allow_nan=False)
    sys.stdout.write("\n")


@abtest_app.command("plan")
def plan(
    baseline: Annotated[
        float, typer.Option(help="Control conversion rate (or control mean with --sd).")
    ],
    mde: Annotated[
        float,
        typer.Option(
            help="Minimum detectable effect: absolute (0.01 = 10% -> 11%) unless "
            "--relative (0.1 = 10% -> 11%)."
        ),
    ],
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    power: Annotated[float, typer.Option(help="Power (1 - type II error).")] = 0.8,
    relative: Annotated[bool, typer.Option(help="Read --mde as a share of --baseline.")] = False,
    method: Annotated[
        str,
        typer.Option(
            help="Proportions: cohen-h (arcsine, as statsmodels NormalIndPower) or "
            "pooled (pooled-variance formula)."
        ),
    ] = "cohen-h",
    sd: Annotated[
        float | None,
        typer.Option(help="Plan a mean metric with this standard deviation (two-sample t-test)."),
    ] = None,
    alternative: Annotated[
        str, typer.Option(help="two-sided | larger | smaller (treatment vs control).")
    ] = "two-sided",
    ratio: Annotated[float, typer.Option(help="Treatment size / control size.")] = 1.0,
    round_up: Annotated[
        bool,
        typer.Option(
            help="Round sizes up (guarantees the power) instead of to the nearest user "
            "(the convention of published tables)."
        ),
    ] = False,
    daily_traffic: Annotated[
        float | None, typer.Option(help="New eligible users per day, for the duration.")
    ] = None,
    arms: Annotated[
        int, typer.Option(help="Number of arms, control included (no multiplicity correction).")
    ] = 2,
    exposure: Annotated[float, typer.Option(help="Share of traffic in the experiment.")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Sample size per arm (and duration in whole weeks) to detect a lift of --mde."""
    from recfunnel.experiments.planning import duration_weeks, plan_means, plan_proportions

    try:
        if arms < 2:
            raise ConfigError(f"--arms must be at least 2, got {arms}")
        rounding: Rounding = "up" if round_up else "nearest"
        if sd is None:
            p = plan_proportions(
                baseline,
                mde,
                relative=relative,
                alpha=alpha,
                power=power,
                ratio=ratio,
                alternative=cast("Alternative", alternative),
                method=cast("ProportionMethod", method),
                rounding=rounding,
            )
        else:
            p = plan_means(
                mde,
                sd,
                baseline=baseline,
                relative=relative,
                alpha=alpha,
                power=power,
                ratio=ratio,
                alternative=cast("Alternative", alternative),
                rounding=rounding,
            )
        total = p.n_per_arm + (arms - 1) * p.n_treatment
        weeks = None
        if daily_traffic is not None:
            weeks = duration_weeks(math.ceil(total / arms), daily_traffic, arms, exposure)
    except RecfunnelError as exc:
        _fail(exc)
    doc = {
        "n_per_arm": p.n_per_arm,
        "n_treatment": p.n_treatment,
        "total": total,
        "method": p.method,
        "weeks": weeks,
        "n_exact": p.n_exact,
        "baseline": p.baseline,
        "target": p.target,
        "mde_absolute": round(p.target - p.baseline, 12),
        "relative": relative,
        "effect_size": p.effect_size,
        "alpha": alpha,
        "power": power,
        "alternative": alternative,
        "ratio": ratio,
        "arms": arms,
        "exposure": exposure,
        "daily_traffic": daily_traffic,
    }
    if as_json:
        _echo_json(doc)
        return
    typer.echo(
        f"{p.baseline:g} -> {p.target:g} ({p.method}, alpha {alpha:g} {alternative}, power "
        f"{power:g}): {p.n_per_arm:,} per arm (control), {p.n_treatment:,} per treatment, "
        f"{total:,} in all"
    )
    if weeks is not None:
        typer.echo(
            f"duration: {weeks} week(s) at {daily_traffic:g} users/day, exposure {exposure:g}"
        )


@dataclass
class _Table:
    """The columns of an experiment CSV that the analysis needs, parsed and checked."""

    variants: npt.NDArray[np.str_]
    values: npt.NDArray[np.float64]
    covariate: npt.NDArray[np.float64] | None
    times: npt.NDArray[Any] | None


def read_experiment_csv(
    path: Path, *, variant_col: str, metric: str, covariate: str | None, time_col: str | None
) -> _Table:
    """Read the unit-level CSV; errors name the file, the line and the column."""
    src = str(path)
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot open: {exc.strerror or exc}", source=src) from exc
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError("empty file: expected a header line", source=src) from None
        header = [h.strip() for h in header]
        wanted = [c for c in (variant_col, metric, covariate, time_col) if c is not None]
        index: dict[str, int] = {}
        for col in wanted:
            if col not in header:
                raise DataError(
                    f"no column {col!r}; the header has {header}", source=src, line=1, field=col
                )
            index[col] = header.index(col)
        variants: list[str] = []
        values: list[float] = []
        cov: list[float] = []
        times: list[str] = []
        lines: list[int] = []
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{len(row)} fields, the header has {len(header)}", source=src, line=line
                )
            variants.append(row[index[variant_col]].strip())
            values.append(_number(row[index[metric]], src, line, metric))
            if covariate is not None:
                cov.append(_number(row[index[covariate]], src, line, covariate))
            if time_col is not None:
                times.append(row[index[time_col]].strip())
                lines.append(line)
    if not variants:
        raise DataError("no data rows after the header", source=src)
    return _Table(
        variants=np.array(variants),
        values=np.array(values, dtype=np.float64),
        covariate=None if covariate is None else np.array(cov, dtype=np.float64),
        times=None if time_col is None else _parse_times(times, lines, src, time_col),
    )


def _number(text: str, source: str, line: int, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"not a number: {text!r}", source=source, line=line, field=field) from None
    if not math.isfinite(value):
        raise DataError(f"not a finite number: {text!r}", source=source, line=line, field=field)
    return value


def _parse_times(texts: list[str], lines: list[int], source: str, field: str) -> npt.NDArray[Any]:
    """Numbers, or dates / datetimes in ISO 8601; the first bad value is reported by line."""
    try:
        return np.array([float(t) for t in texts], dtype=np.float64)
    except ValueError:
        pass
    out = []
    for t, line in zip(texts, lines, strict=True):
        try:
            out.append(np.datetime64(t))
        except ValueError:
            raise DataError(
                f"not a number or an ISO-8601 date: {t!r}", source=source, line=line, field=field
            ) from None
    return np.array(out)


def _parse_weights(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            weights[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(
                f"--weights {text!r}: expected NAME=WEIGHT,NAME=WEIGHT (e.g. control=1,treatment=1)"
            ) from None
    return weights


@abtest_app.command("analyze")
def analyze(
    data: Annotated[Path, typer.Option(help="CSV, one row per unit (user).")],
    metric: Annotated[
        str, typer.Option(help="Metric column: 0/1 conversions or any numeric metric.")
    ] = "converted",
    variant_col: Annotated[str, typer.Option(help="Column naming each row's variant.")] = "variant",
    control: Annotated[str, typer.Option(help="Name of the control variant.")] = "control",
    covariate: Annotated[
        str | None, typer.Option(help="Pre-period covariate column for CUPED.")
    ] = None,
    time_col: Annotated[
        str | None,
        typer.Option(help="Time column (numbers or ISO dates): curves over time in the report."),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            help="Designed allocation for the SRM check, e.g. control=1,treatment=1 "
            "[default: equal]."
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(help="Level of tests and intervals.")] = 0.05,
    kind: Annotated[str, typer.Option(help="auto | binary | continuous")] = "auto",
    tau: Annotated[
        float | None,
        typer.Option(
            help="mSPRT mixing sd, in metric units (about the MDE) [default: 0.1 x "
            "the metric's sd]."
        ),
    ] = None,
    strict_srm: Annotated[
        bool, typer.Option(help="Exit with an error on a sample-ratio mismatch.")
    ] = False,
    max_looks: Annotated[int, typer.Option(help="Most looks in the curves over time.")] = 100,
    output: Annotated[
        Path | None, typer.Option(help="Write report.json and the plots (PNG) here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Analyse an experiment: SRM check, lift with CIs and p-values, always-valid p-value."""
    from recfunnel.experiments.analysis import analyze_experiment
    from recfunnel.experiments.report import build_report

    try:
        table = read_experiment_csv(
            data, variant_col=variant_col, metric=metric, covariate=covariate, time_col=time_col
        )
        found = sorted(set(table.variants.tolist()))
        if control not in found:
            raise DataError(
                f"control variant {control!r} not found; the column has {found}",
                source=str(data),
                field=variant_col,
            )
        design = _parse_weights(weights)
        result = analyze_experiment(
            table.variants,
            table.values,
            control=control,
            covariate=table.covariate,
            kind=cast("Kind", kind),
            weights=design,
            alpha=alpha,
            tau=tau,
            on_srm="raise" if strict_srm else "flag",
            metric=metric,
        )
        report = build_report(
            result,
            times=table.times,
            variants=table.variants,
            values=table.values,
            covariate=table.covariate,
            weights=design,
            max_looks=max_looks,
            source=str(data),
        )
        paths = report.write(output) if output is not None else []
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    for w in result.warnings:
        console.print(f"[bold yellow]warning:[/] {w}", highlight=False)
    doc = report.to_dict()
    doc.pop("over_time", None)  # the per-look arrays go to report.json only
    if as_json:
        _echo_json(doc)
    else:
        _print_analysis(doc, report.srm_status)
    for p in paths:
        console.print(f"wrote {p}")


def _print_analysis(doc: dict[str, Any], srm_status: str) -> None:
    typer.echo(srm_status)
    table = Table(title=f"{doc['metric']}: each treatment against {doc['control']}")
    for col in (
        "treatment",
        "test",
        "control mean",
        "treatment mean",
        "abs lift [CI]",
        "p",
        "rel lift [CI, delta]",
        "p (rel)",
        "p (mSPRT)",
    ):
        table.add_column(col, justify="left" if col in ("treatment", "test") else "right")

    def num(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    for c in doc["comparisons"]:
        lo, hi = c["absolute_ci"]
        rlo, rhi = c["relative_ci"]
        table.add_row(
            c["treatment"],
            c["test"],
            num(c["mean_control"], ".4g"),
            num(c["mean_treatment"], ".4g"),
            f"{num(c['absolute_lift'], '+.4g')} [{num(lo, '+.4g')}, {num(hi, '+.4g')}]",
            num(c["p_value"], ".3g"),
            f"{num(c['relative_lift'], '+.2%')} [{num(rlo, '+.2%')}, {num(rhi, '+.2%')}]",
            num(c["p_value_relative"], ".3g"),
            num(c.get("p_value_sequential_running", c["p_value_sequential"]), ".3g"),
        )
    Console(width=160).print(table)
    for c in doc["comparisons"]:
        if c["variance_reduction"] is not None:
            typer.echo(
                f"{c['treatment']}: CUPED theta {c['theta']:.4g}, variance of the lift reduced by "
                f"{c['variance_reduction']:.1%}"
            )


@abtest_app.command("interleave")
def interleave(
    ranking_a: Annotated[str, typer.Option("--a", help="Ranker A's items, comma-separated.")],
    ranking_b: Annotated[str, typer.Option("--b", help="Ranker B's items, comma-separated.")],
    length: Annotated[int | None, typer.Option(help="Longest interleaved list.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the team-draft coin.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Team-draft interleave two rankings (Radlinski et al. 2008); show each item's team."""
    from recfunnel.experiments.interleaving import team_draft

    try:
        a = [x.strip() for x in ranking_a.split(",") if x.strip()]
        b = [x.strip() for x in ranking_b.split(",") if x.strip()]
        if not a or not b:
            raise ConfigError("--a and --b need at least one item each")
        il = team_draft(a, b, length=length, rng=seed)
    except RecfunnelError as exc:
        _fail(exc)
    if as_json:
        _echo_json({"items": il.items, "teams": il.teams})
        return
    for rank, (item, team) in enumerate(zip(il.items, il.teams, strict=True), start=1):
        typer.echo(f"{rank:>3}. {item}\t{team}")
