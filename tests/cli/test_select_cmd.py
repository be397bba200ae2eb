from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from sklearn.datasets import make_classification
from typer.testing import CliRunner

from recfunnel.cli.select_cmd import select_features

app = typer.Typer()
app.command("select-features")(select_features)


@app.command()
def version() -> None:
    """A second command, so that Typer keeps the ``select-features`` subcommand name."""


runner = CliRunner()
FAST = ["--runs", "14", "--seed", "0"]


def _write(tmp_path, fmt: str = "csv"):
    X, y = make_classification(
        n_samples=400, n_features=10, n_informative=3, n_redundant=0, shuffle=False, random_state=0
    )
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(10)])
    frame["event_id"] = np.arange(len(frame))
    frame["label"] = y
    path = tmp_path / f"data.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if fmt == "tsv" else ",")
    return path


def _run(*args: str):
    return runner.invoke(app, ["select-features", *args])


def test_json_output_names_the_informative_columns(tmp_path) -> None:
    data = _write(tmp_path)
    out = _run("--data", str(data), "--target", "label", "--drop", "event_id", "--json", *FAST)
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["confirmed"] == ["f0", "f1", "f2"]
    assert set(payload["rejected"]) | set(payload["tentative"]) == {f"f{j}" for j in range(3, 10)}
    assert payload["task"] == "classification"
    assert payload["target"] == "label"
    assert [f["feature"] for f in payload["features"]] == [f"f{j}" for j in range(10)]


def test_parquet_table_and_output_directory(tmp_path) -> None:
    data = _write(tmp_path, fmt="parquet")
    dest = tmp_path / "sel"
    out = _run("-d", str(data), "-y", "label", "--drop", "event_id", "-o", str(dest), *FAST)
    assert out.exit_code == 0, out.output
    assert "confirmed 3" in out.stdout
    assert "f0" in out.stdout and "confirmed" in out.stdout
    assert {p.name for p in dest.iterdir()} == {"selection.json", "selection.png"}
    assert json.loads((dest / "selection.json").read_text())["confirmed"] == ["f0", "f1", "f2"]


def test_random_forest_on_tsv_with_options(tmp_path) -> None:
    data = _write(tmp_path, fmt="tsv")
    args = ["--estimator", "random_forest", "--importance", "permutation", "--rounds", "1"]
    out = _run("-d", str(data), "-y", "label", "--drop", "event_id", "--json", *args, *FAST)
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["estimator"] == "random_forest" and payload["rounds"] == 1
    assert set(payload["confirmed"]) <= {"f0", "f1", "f2"}


@pytest.mark.parametrize(
    ("content", "target", "expected"),
    [
        ("a,b\n1,2\n3,4\n", "y", "data.csv, field y: no target column 'y'; columns: a, b"),
        (
            "a,y\n1,x\n2,z\n",
            "y",
            "data.csv, field y: target must be numeric, got 'x' (data row 1)",
        ),
        ("a,y\n1,1\n2,\n3,0\n", "y", "data.csv, field y: target has 1 missing or infinite values"),
        ("y\n1\n0\n", "y", "data.csv: no feature columns besides the target"),
        ("a,y\n", "y", "data.csv: no data rows"),
        ("a,y\n1,0\n2,1\n", "y", "data.csv: need at least 10 rows, got 2"),
    ],
)
def test_bad_data_names_file_and_column(tmp_path, content, target, expected) -> None:
    data = tmp_path / "data.csv"
    data.write_text(content)
    out = _run("--data", str(data), "--target", target, "--json")
    assert out.exit_code == 2
    assert expected in " ".join(out.output.split())
    assert out.stdout.strip() == "" or not out.stdout.lstrip().startswith("{")


def test_missing_file_and_bad_options(tmp_path) -> None:
    missing = tmp_path / "nope.csv"
    out = _run("--data", str(missing), "--target", "y")
    assert out.exit_code == 2
    assert f"{missing}: file not found" in " ".join(out.output.split())
    data = _write(tmp_path)
    out = _run("--data", str(data), "--target", "label", "--task", "ranking")
    assert out.exit_code == 2
    assert "--task must be auto, classification or regression, got 'ranking'" in out.output
    out = _run("--data", str(data), "--target", "label", "--drop", "nothere")
    assert out.exit_code == 2
    assert "column to drop not found: 'nothere'" in out.output
