"""``recfunnel select-features``: probe ("random bar") feature selection on a data file.

Registered in ``cli/main.py`` with ``app.command("select-features")(select_features)``.

Every column but the target is a candidate feature (text columns become ordinal codes;
``--drop`` leaves out ids and the like). Exit codes: 0 done, 2 bad input (the message names
the file and, where it applies, the column).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recfunnel.cli.drift_cmd import read_frame
from recfunnel.core.errors import ConfigError, DataError, RecfunnelError

console = Console(stderr=True)


def _fail(exc: Exception) -> NoReturn:
    console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _split_target(frame: pd.DataFrame, target: str, source: str) -> tuple[pd.DataFrame, pd.Series]:
    if target not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:20]))
        raise DataError(
            f"no target column {target!r}; columns: {shown}", source=source, field=target
        )
    y = frame[target]
    if not (pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y)):
        bad = pd.to_numeric(y, errors="coerce").isna() & y.notna()
        first = int(np.argmax(bad.to_numpy())) if bad.any() else 0
        raise DataError(
            f"target must be numeric, got {y.iloc[first]!r} (data row {first + 1}); "
            "encode class labels as integers",
            source=source,
            field=target,
        )
    values = pd.to_numeric(y).astype("float64").to_numpy()
    missing = ~np.isfinite(values)
    if missing.any():
        raise DataError(
            f"target has {int(missing.sum())} missing or infinite values "
            f"(first in data row {int(np.argmax(missing)) + 1})",
            source=source,
            field=target,
        )
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise DataError("no feature columns besides the target", source=source)
    return features, y


def _table(report: dict[str, Any]) -> Table:
    key = report["importance"]
    table = Table(title=f"probe selection ({key} importance; most hits first)")
    for name in ("feature", "decision", "hits", "round", "p_adjusted", f"{key}_median"):
        table.add_column(name)
    style = {"confirmed": "green", "tentative": "yellow", "rejected": "dim"}
    rows = sorted(
        report["features"],
        key=lambda r: (list(style).index(r["decision"]), -r["hits"]),
    )
    for row in rows:
        median = row[f"{key}_median"]
        table.add_row(
            str(row["feature"]),
            f"[{style[row['decision']]}]{row['decision']}[/]",
            str(row["hits"]),
            str(row["round"]),
            f"{row['p_adjusted']:.3g}",
            "-" if median is None else f"{median:.4g}",
        )
    return table


def select_features(
    data: Annotated[
        Path, typer.Option("--data", "-d", help="Data file (CSV, TSV or Parquet) with a header.")
    ],
    target: Annotated[str, typer.Option("--target", "-y", help="Name of the target column.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write selection.json and selection.png here."),
    ] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")
    ] = False,
    task: Annotated[
        str,
        typer.Option(
            help="auto | classification | regression (auto: integer targets with "
            "at most 20 values are classes)."
        ),
    ] = "auto",
    runs: Annotated[int, typer.Option(help="Runs per round (fresh shadows each run).")] = 20,
    rounds: Annotated[int, typer.Option(help="Rounds at most (rejected features leave).")] = 3,
    estimator: Annotated[str, typer.Option(help="lightgbm | random_forest.")] = "lightgbm",
    importance: Annotated[
        str, typer.Option(help="Importance the decision uses: gain | permutation.")
    ] = "gain",
    alpha: Annotated[float, typer.Option(help="Family-wise level of the binomial tests.")] = 0.05,
    drop: Annotated[
        str | None, typer.Option(help="Comma-separated columns to leave out (ids, timestamps).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the shadows, noise, splits and models.")] = 0,
    jobs: Annotated[int, typer.Option(help="Threads of the tree ensemble.")] = 1,
) -> None:
    """Select the features that beat the best of many noise probes (Boruta-style).

    Every run appends a shuffled copy of each feature and a few Gaussian columns, fits a tree
    ensemble and counts, per feature, whether it beat the best probe. A binomial test with a
    Bonferroni correction confirms, rejects or leaves each feature tentative.
    """
    from recfunnel.selection import ProbeSelector, selection_report, write_selection

    source = str(data)
    if task not in ("auto", "classification", "regression"):
        _fail(ConfigError(f"--task must be auto, classification or regression, got {task!r}"))
    if estimator not in ("lightgbm", "random_forest"):
        _fail(ConfigError(f"--estimator must be lightgbm or random_forest, got {estimator!r}"))
    if importance not in ("gain", "permutation"):
        _fail(ConfigError(f"--importance must be gain or permutation, got {importance!r}"))
    try:
        frame = read_frame(data)
        dropped = [c.strip() for c in drop.split(",") if c.strip()] if drop else []
        unknown = [c for c in dropped if c not in frame.columns]
        if unknown:
            raise DataError(f"column to drop not found: {unknown[0]!r}", source=source)
        X, y = _split_target(frame.drop(columns=dropped), target, source)
        selector = ProbeSelector(
            estimator,  # type: ignore[arg-type]
            importance=importance,  # type: ignore[arg-type]
            n_runs=runs,
            max_rounds=rounds,
            alpha=alpha,
            task=task,  # type: ignore[arg-type]
            n_jobs=jobs,
            seed=seed,
        )
        with Progress(
            TextColumn("probe runs"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task_id = bar.add_task("runs", total=runs)

            def advance(done: int, planned: int) -> None:
                bar.update(task_id, completed=done, total=planned)

            selector.fit(X, y, progress=advance)
        report = write_selection(selector, output) if output else selection_report(selector)
    except DataError as exc:
        # The library names the column but not the file: the user knows the data as a file.
        if exc.source is None:
            exc = DataError(exc.message, source=source, line=exc.line, field=exc.field)
        _fail(exc)
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    report["data"] = source
    report["target"] = target
    if json_:
        typer.echo(json.dumps(report, allow_nan=False))
    else:
        out = Console()
        out.print(
            f"confirmed {len(report['confirmed'])}, tentative {len(report['tentative'])}, "
            f"rejected {len(report['rejected'])} of {len(report['features'])} features "
            f"({report['task']}, {report['rounds']} round(s) of {runs} runs)"
        )
        out.print(_table(report))
    if output is not None:
        console.print(f"report: {output / 'selection.json'}, {output / 'selection.png'}")
