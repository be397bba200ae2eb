"""``recfunnel drift-stream``: run a streaming drift detector over a file of numbers.

Registered in ``cli/main.py`` with ``app.command("drift-stream")(drift_stream)``.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from recfunnel.core.errors import ConfigError, DataError, RecfunnelError

console = Console(stderr=True)


def _fail(exc: Exception) -> NoReturn:
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=2)


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["delta=0.01", "mode=up", "std=null"]`` -> ``{"delta": 0.01, "mode": "up", "std": None}``.

    Values are read as JSON when they parse (numbers, ``true``, ``null``), else as strings.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE, e.g. --param delta=0.01")
        text = text.strip()
        try:
            value: Any = json.loads(text)
        except json.JSONDecodeError:
            value = None if text == "None" else text
        out[key] = value
    return out


def _number(text: str, source: str, line: int, field: str | None = None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"not a number: {text.strip()!r}", source=source, line=line, field=field
        ) from None
    if not math.isfinite(value):
        raise DataError(
            f"{text.strip()!r} is not finite; drop or impute it first",
            source=source,
            line=line,
            field=field,
        )
    return value


def read_values(path: Path, column: str | None = None) -> list[float]:
    """The numbers of ``path``: one per non-blank line, or the CSV column ``column`` (a header
    name, or a 0-based position; with a position, a first row that is not numeric is taken
    as the header)."""
    source = str(path)
    with path.open(newline="", encoding="utf-8") as fh:
        if column is None:
            return [
                _number(text, source, n)
                for n, text in enumerate(fh, start=1)
                if text.strip() and not text.lstrip().startswith("#")
            ]
        rows = csv.reader(fh)
        header = next(rows, None)
        if header is None:
            raise DataError("the file is empty", source=source)
        values: list[float] = []
        if column in header:
            index, label = header.index(column), column
        elif column.strip().isdigit():
            index, label = int(column), column
            if index >= len(header):
                raise ConfigError(f"--column {column}: the file has {len(header)} column(s)")
            try:
                values.append(float(header[index]))  # no header: the first row is data
            except ValueError:
                pass
        else:
            raise ConfigError(f"--column {column!r} is not one of the header's columns {header}")
        for n, row in enumerate(rows, start=2):
            if not row:
                continue
            if index >= len(row):
                raise DataError("row too short", source=source, line=n, field=label)
            values.append(_number(row[index], source, n, label))
        return values


def drift_stream(
    input_path: Annotated[
        Path,
        typer.Option(
            "--input",
            help="A file with one number per line (blank and #-lines skipped), or a CSV file "
            "with --column.",
        ),
    ],
    detector: Annotated[
        str, typer.Option(help="adwin | cusum | ddm | eddm | page_hinkley (ph) | sprt")
    ],
    param: Annotated[
        list[str] | None,
        typer.Option(help="A detector parameter NAME=VALUE (repeatable), e.g. delta=0.01"),
    ] = None,
    column: Annotated[
        str | None, typer.Option(help="CSV column to read: a header name or a 0-based position.")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print {"detections", "warnings", "detector", "params", "n_samples"} as JSON.',
        ),
    ] = False,
) -> None:
    """Run a drift detector over a stream and print the 0-based positions of detections.

    "warnings" lists the positions where a warning zone starts (DDM, EDDM; empty for the
    others).
    """
    from recfunnel.monitoring.drift import REGISTRY, make_detector

    try:
        det = make_detector(detector, **parse_params(param or []))
        values = read_values(input_path, column)
        detections: list[int] = []
        warnings: list[int] = []
        in_warning = False
        for i, x in enumerate(values):
            det.update(x)
            if det.drift_detected:
                detections.append(i)
            if det.warning_detected and not in_warning:
                warnings.append(i)
            in_warning = det.warning_detected
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    name = next(k for k, cls in REGISTRY.items() if cls is type(det))
    if as_json:
        doc = {
            "detections": detections,
            "warnings": warnings,
            "detector": name,
            "params": det.get_params(),
            "n_samples": len(values),
        }
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
        return
    for i in detections:
        typer.echo(i)
    console.print(
        f"{det!r}: {len(detections)} detection(s), {len(warnings)} warning zone(s) in "
        f"{len(values)} samples",
        highlight=False,
    )
