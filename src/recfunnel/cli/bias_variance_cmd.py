"""``recfunnel bias-variance``: bias–variance decomposition of a model family along its complexity.

Registered in ``cli/main.py`` with ``app.command("bias-variance")(bias_variance)``.

Exit codes: 0 done, 2 bad input (the message names the file and, where it applies, the column
or the option).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recfunnel.cli.drift_cmd import read_frame
from recfunnel.core.errors import ConfigError, DataError, RecfunnelError

console = Console(stderr=True)

# Integer targets with at most this many distinct values are read as class labels by --loss auto.
_MAX_AUTO_CLASSES = 10


def _fail(exc: Exception) -> NoReturn:
    # soft_wrap: a path or message split over lines is hard to grep in a CI log.
    console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _parse_complexities(value: str) -> list[Any]:
    out: list[Any] = []
    for token in (t.strip() for t in value.split(",")):
        if not token:
            continue
        if token.lower() == "none":
            out.append(None)
            continue
        try:
            out.append(int(token))
        except ValueError:
            try:
                number = float(token)
            except ValueError:
                raise ConfigError(
                    f"--complexity: {token!r} is not a number (or 'none' for unbounded)"
                ) from None
            if not math.isfinite(number):
                raise ConfigError(f"--complexity: {token!r} is not finite") from None
            out.append(number)
    if not out:
        raise ConfigError("--complexity is empty: give comma-separated values, e.g. 1,2,4,8")
    return out


def _choose_loss(loss: str, y: pd.Series, source: str, target: str) -> str:
    if loss not in ("auto", "mse", "0-1"):
        raise ConfigError(f"--loss must be auto, mse or 0-1, got {loss!r}")
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    if loss == "mse" and not numeric:
        raise DataError(
            f"--loss mse needs a numeric target, column {target!r} has dtype {y.dtype}",
            source=source,
            field=target,
        )
    if loss != "auto":
        return loss
    if not numeric:
        return "0-1"
    few = y.nunique() <= _MAX_AUTO_CLASSES
    return "0-1" if pd.api.types.is_integer_dtype(y) and few else "mse"


def _design(frame: pd.DataFrame, target: str, source: str) -> tuple[pd.DataFrame, pd.Series]:
    if target not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:10]))
        raise DataError(f"no column {target!r} (columns: {shown})", source=source, field=target)
    y = frame[target]
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise DataError("no feature columns besides the target", source=source, field=target)
    for name in [target, *features.columns]:
        missing = int(frame[name].isna().sum())
        if missing:
            raise DataError(
                f"{missing} missing value(s): drop or impute them first",
                source=source,
                field=str(name),
            )
    # Categorical features become one-hot columns; numeric ones pass through.
    X = pd.get_dummies(features, dtype=np.float64) if not _all_numeric(features) else features
    return X.astype(np.float64), y


def _all_numeric(frame: pd.DataFrame) -> bool:
    return all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes)


def _table(payload: dict[str, Any]) -> Table:
    table = Table(title=f"bias–variance vs {payload['parameter']} ({payload['loss']} loss)")
    for name in (payload["parameter"], "expected_loss", "bias", "variance"):
        table.add_column(name, justify="right")
    for i, row in enumerate(payload["complexity_curve"]):
        mark = " *" if i == payload["selected_index"] else ""
        table.add_row(
            f"{row['complexity']}{mark}",
            *(f"{row[c]:.4g}" for c in ("expected_loss", "bias", "variance")),
        )
    return table


def bias_variance(
    data: Annotated[Path, typer.Option("--data", "-d", help="Data file (CSV, TSV or Parquet).")],
    target: Annotated[str, typer.Option("--target", "-t", help="Column to predict.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model family: tree | linear | knn | lightgbm.")
    ] = "tree",
    complexity: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated complexities, simple to complex (tree: max_depth, 'none' = "
            "fully grown; linear: degree; knn: n_neighbors; lightgbm: num_leaves). "
            "Default: the family's own sweep."
        ),
    ] = None,
    loss: Annotated[
        str,
        typer.Option(
            help="mse | 0-1 | auto (0-1 for a non-numeric target or an integer one with at "
            f"most {_MAX_AUTO_CLASSES} values, else mse)."
        ),
    ] = "auto",
    rounds: Annotated[int, typer.Option(help="Bootstrap rounds per complexity.")] = 100,
    test_size: Annotated[float, typer.Option(help="Share of rows held out as test set.")] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the split, resamples and models.")] = 0,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write bias_variance.json and bias_variance.png into this dir."
        ),
    ] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")
    ] = False,
) -> None:
    """Bias–variance decomposition by bootstrap of a model family over its complexity.

    Fits --rounds models on bootstrap resamples of the training split per complexity and
    decomposes the test-split loss as mlxtend's bias_variance_decomp does: under mse, bias is
    the squared bias and includes label noise; under 0-1 loss (Domingos) loss is not
    bias + variance. The summary figures are those of the complexity with the lowest loss.
    """
    from sklearn.model_selection import train_test_split
    from tqdm import tqdm

    from recfunnel.diagnostics import complexity_curve, estimator_family, plot_complexity_curve
    from recfunnel.diagnostics.families import Task

    source = str(data)
    try:
        family = estimator_family(model)
        sweep = _parse_complexities(complexity) if complexity else list(family.defaults)
        if rounds < 1:
            raise ConfigError(f"--rounds must be at least 1, got {rounds}")
        if not 0.0 < test_size < 1.0:
            raise ConfigError(f"--test-size must be in (0, 1), got {test_size}")
        X, y = _design(read_frame(data), target, source)
        loss_name = _choose_loss(loss, y, source, target)
        if loss_name == "0-1" and not pd.api.types.is_numeric_dtype(y):
            y = y.astype(str)  # one label type, so that labels sort
        n_test = math.ceil(test_size * len(y))
        if n_test < 1 or len(y) - n_test < 2:
            raise DataError(
                f"{len(y)} rows are too few to split with --test-size {test_size}", source=source
            )
        X_tr, X_te, y_tr, y_te = train_test_split(
            X.to_numpy(), y.to_numpy(), test_size=test_size, random_state=seed
        )
        task: Task = "regression" if loss_name == "mse" else "classification"
        with tqdm(
            total=len(sweep) * rounds, desc="bias-variance", unit="fit", file=sys.stderr
        ) as bar:
            try:
                curve = complexity_curve(
                    lambda c: family.build(task, c, seed=seed),
                    sweep,
                    X_tr,
                    y_tr,
                    X_te,
                    y_te,
                    parameter=family.parameter,
                    loss=loss_name,
                    n_rounds=rounds,
                    random_seed=seed,
                    progress=bar.update,
                )
            except RecfunnelError:
                raise
            except (ValueError, TypeError) as exc:
                # The estimator refused a complexity (e.g. more neighbours than rows).
                raise ConfigError(
                    f"--model {model} with --complexity {complexity or sweep}: {exc}"
                ) from exc
        best = curve.results[curve.best_index]
        payload: dict[str, Any] = {
            "data": source,
            "target": target,
            "model": model,
            "parameter": family.parameter,
            "loss": loss_name,
            "rounds": rounds,
            "seed": seed,
            "test_size": test_size,
            "n_train": len(y_tr),
            "n_test": len(y_te),
            "n_features": X.shape[1],
            "selected_index": curve.best_index,
            "selected_complexity": curve.complexities[curve.best_index],
            "expected_loss": best.expected_loss,
            "bias": best.bias,
            "variance": best.variance,
            "net_variance": best.net_variance,
            "definition": best.definition,
            "complexity_curve": curve.rows(),
        }
        if output is not None:
            output.mkdir(parents=True, exist_ok=True)
            (output / "bias_variance.json").write_text(json.dumps(payload, indent=2) + "\n")
            plot_complexity_curve(curve, output / "bias_variance.png")
    except (RecfunnelError, OSError) as exc:
        _fail(exc)
    if json_:
        typer.echo(json.dumps(payload, allow_nan=False))
    else:
        out = Console()
        out.print(_table(payload))
        out.print(
            f"lowest expected loss at {family.parameter}={payload['selected_complexity']}: "
            f"{best.expected_loss:.4g} = bias {best.bias:.4g} + "
            + (
                f"variance {best.variance:.4g}"
                if loss_name == "mse"
                else f"net variance {best.net_variance:.4g} (variance {best.variance:.4g})"
            ),
            markup=False,
        )
        out.print(f"definition: {best.definition}", markup=False)
    if output is not None:
        console.print(f"report: {output / 'bias_variance.json'}", highlight=False)
