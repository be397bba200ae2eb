"""``recfunnel drift``: compare a current data file with a reference one.

Registered in ``cli/main.py`` with ``app.command("drift")(drift)``.

Exit codes: 0 done (with or without drift), 1 drift found and ``--fail-on-drift`` given (for a
CI gate), 2 bad input (the message names the file and, where it applies, the column).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recfunnel.core.errors import ConfigError, DataError, RecfunnelError

console = Console(stderr=True)

_TEXT = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_PARQUET = (".parquet", ".pq")


def _fail(exc: Exception) -> NoReturn:
    # soft_wrap: a path or message split over lines is hard to grep in a CI log.
    console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def read_frame(path: Path) -> pd.DataFrame:
    """A CSV/TSV (header line required) or Parquet file as a DataFrame; DataError naming the file.

    >>> read_frame(Path("/nonexistent/current.csv"))
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DataError: /nonexistent/current.csv: file not found
    """
    source = str(path)
    if not path.exists():
        raise DataError("file not found", source=source)
    if not path.is_file():
        raise DataError("expected a file", source=source)
    suffix = path.suffix.lower()
    if suffix in _PARQUET:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            names = list(pq.read_schema(path).names)
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise DataError(f"duplicate column name {dup[0]!r}", source=source, field=dup[0])
            frame: pd.DataFrame = pq.read_table(path).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"not a readable Parquet file: {exc}", source=source) from exc
    elif suffix in _TEXT:
        try:
            frame = pd.read_csv(path, sep=_TEXT[suffix])
        except pd.errors.EmptyDataError as exc:
            raise DataError("empty file (a header line is needed)", source=source) from exc
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"cannot parse: {exc}", source=source) from exc
    else:
        raise DataError(
            f"cannot tell the format from the suffix {path.suffix!r}: use .csv, .tsv or .parquet",
            source=source,
        )
    if len(frame) == 0:
        raise DataError("no data rows", source=source)
    return frame


def _columns(value: str | None) -> list[str]:
    return [c.strip() for c in value.split(",") if c.strip()] if value else []


def _summary_table(payload: dict[str, object]) -> Table:
    table = Table(title="per-feature tests (most significant first)")
    for name in ("feature", "test", "statistic", "p_adjusted", "drifted", "psi", "psi_level"):
        table.add_column(name)
    for row in payload["feature_tests"]:  # type: ignore[attr-defined]
        table.add_row(
            *[
                f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c])
                for c in ("feature", "test", "statistic", "p_adjusted", "drifted", "psi")
            ],
            str(row["psi_level"]),
        )
    return table


def drift(
    reference: Annotated[
        Path, typer.Option("--reference", "-r", help="Reference data (CSV, TSV or Parquet).")
    ],
    current: Annotated[
        Path, typer.Option("--current", "-c", help="Current data (CSV, TSV or Parquet).")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write report.json, index.html and plots/ into this directory."
        ),
    ] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object on stdout.")
    ] = False,
    alpha: Annotated[
        float, typer.Option(help="Overall significance level (split between the two tests).")
    ] = 0.05,
    correction: Annotated[
        str, typer.Option(help="Multiple-testing correction: bh | bonferroni | none.")
    ] = "bh",
    null: Annotated[
        str, typer.Option(help="Null of the adversarial AUC: analytic | permutation.")
    ] = "analytic",
    permutations: Annotated[
        int, typer.Option(help="Label permutations for --null permutation.")
    ] = 99,
    columns: Annotated[
        str | None, typer.Option(help="Comma-separated columns to compare (default: shared).")
    ] = None,
    drop: Annotated[
        str | None, typer.Option(help="Comma-separated columns to treat as ids/timestamps.")
    ] = None,
    keep: Annotated[
        str | None,
        typer.Option(help="Comma-separated columns never to treat as ids/timestamps."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the folds and permutations.")] = 0,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit with code 1 when drift is found.")
    ] = False,
) -> None:
    """Test whether the current data drifted from the reference data.

    Adversarial validation: a classifier separates current from reference rows; held-out AUC.

    Per-feature KS / chi-square tests (PSI, Wasserstein), profile alerts, correlation changes.

    Id, timestamp and row-number columns are flagged as leaky and left out.
    """
    from recfunnel.monitoring.report import drift_report

    if correction not in ("bh", "bonferroni", "none"):
        _fail(ConfigError(f"--correction must be bh, bonferroni or none, got {correction!r}"))
    if null not in ("analytic", "permutation"):
        _fail(ConfigError(f"--null must be analytic or permutation, got {null!r}"))
    sources = {"reference": str(reference), "current": str(current)}
    try:
        ref, cur = read_frame(reference), read_frame(current)
        report = drift_report(
            ref,
            cur,
            alpha=alpha,
            correction=correction,  # type: ignore[arg-type]
            columns=_columns(columns) or None,
            null=null,  # type: ignore[arg-type]
            n_permutations=permutations,
            drop_columns=_columns(drop),
            keep_columns=_columns(keep),
            seed=seed,
        )
        payload = report.to_dict()
        if output is not None:
            report.write(output)
    except DataError as exc:
        # The library names the frame ("reference"/"current"); the user knows it as a file.
        if exc.source in sources:
            exc = DataError(exc.message, source=sources[exc.source], line=exc.line, field=exc.field)
        _fail(exc)
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    if json_:
        typer.echo(json.dumps(payload, allow_nan=False))
    else:
        out = Console()
        verdict = "[bold red]DRIFT[/]" if payload["drift"] else "[bold green]no drift[/]"
        drifted = escape(", ".join(payload["drifted_features"]) or "none")
        out.print(
            f"{verdict}: adversarial AUC {payload['auc']:.3f} (p={payload['p_value']:.3g}), "
            f"drifted features: {drifted}"
        )
        if payload["leaky_columns"]:
            out.print(
                f"left out as ids/timestamps: {', '.join(payload['leaky_columns'])}", markup=False
            )
        for alert in payload["alerts"]:
            out.print(
                f"alert [{alert['kind']}] {alert['feature']}: {alert['message']}", markup=False
            )
        out.print(_summary_table(payload))
    if output is not None:
        console.print(f"report: {output / 'index.html'}")
    if fail_on_drift and payload["drift"]:
        raise typer.Exit(code=1)
