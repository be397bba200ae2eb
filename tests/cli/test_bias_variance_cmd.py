from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from mlxtend.evaluate import bias_variance_decomp
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeRegressor
from typer.testing import CliRunner

from recfunnel.cli.bias_variance_cmd import bias_variance

app = typer.Typer()
app.command()(bias_variance)
runner = CliRunner()


def _frame(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, size=n)
    z = rng.normal(size=n)
    return pd.DataFrame(
        {
            "x": x,
            "z": z,
            "y": np.sin(2 * x) + 0.3 * rng.normal(size=n),
            "label": np.where(x + 0.5 * rng.normal(size=n) > 0, "pos", "neg"),
        }
    )


def _write(tmp_path, frame: pd.DataFrame, name: str = "data.csv"):
    path = tmp_path / name
    frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    return path


def test_json_regression_matches_mlxtend_on_the_same_split(tmp_path) -> None:
    frame = _frame()
    path = _write(tmp_path, frame.drop(columns=["label"]))
    args = ["--data", str(path), "--target", "y", "--complexity", "1,3,none"]
    out = runner.invoke(app, [*args, "--rounds", "12", "--seed", "5", "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["loss"] == "mse" and payload["parameter"] == "max_depth"
    assert [r["complexity"] for r in payload["complexity_curve"]] == [1, 3, None]
    assert payload["n_train"] == 140 and payload["n_test"] == 60
    losses = [r["expected_loss"] for r in payload["complexity_curve"]]
    assert payload["selected_index"] == int(np.argmin(losses))
    assert payload["expected_loss"] == min(losses)
    assert "SQUARED bias" in payload["definition"]
    # The depth-3 row is mlxtend's decomposition of the same model on the same split.
    X_tr, X_te, y_tr, y_te = train_test_split(
        frame[["x", "z"]].to_numpy(), frame["y"].to_numpy(), test_size=0.3, random_state=5
    )
    theirs = bias_variance_decomp(
        DecisionTreeRegressor(max_depth=3, random_state=5),
        X_tr,
        y_tr,
        X_te,
        y_te,
        loss="mse",
        num_rounds=12,
        random_seed=5,
    )
    row = payload["complexity_curve"][1]
    np.testing.assert_allclose(
        [row["expected_loss"], row["bias"], row["variance"]], theirs, atol=1e-9
    )


def test_string_target_picks_0_1_loss_and_reports_net_variance(tmp_path) -> None:
    path = _write(tmp_path, _frame().drop(columns=["y"]))
    out = runner.invoke(
        app,
        [
            "-d",
            str(path),
            "-t",
            "label",
            "-m",
            "knn",
            "--complexity",
            "30,5",
            "--rounds",
            "8",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["loss"] == "0-1" and payload["parameter"] == "n_neighbors"
    for row in payload["complexity_curve"]:
        assert row["expected_loss"] == pytest.approx(row["bias"] + row["net_variance"])
    assert "NOT bias + variance" in payload["definition"]


def test_parquet_output_directory_and_table(tmp_path) -> None:
    path = _write(tmp_path, _frame(), "data.parquet")
    dest = tmp_path / "report"
    out = runner.invoke(
        app,
        [
            "-d",
            str(path),
            "-t",
            "y",
            "-m",
            "linear",
            "--complexity",
            "1,3",
            "--rounds",
            "6",
            "-o",
            str(dest),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "lowest expected loss at degree=" in out.stdout
    assert {p.name for p in dest.iterdir()} == {"bias_variance.json", "bias_variance.png"}
    saved = json.loads((dest / "bias_variance.json").read_text())
    assert saved["n_features"] == 4  # x, z and the one-hot label columns
    assert (dest / "bias_variance.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["-t", "nope"], "data.csv, field nope: no column 'nope'"),
        (["-t", "label", "--loss", "mse"], "data.csv, field label: --loss mse needs a numeric"),
        (["-t", "y", "--loss", "hinge"], "--loss must be auto, mse or 0-1"),
        (["-t", "y", "--complexity", "1,deep"], "--complexity: 'deep' is not a number"),
        (["-t", "y", "-m", "forest"], "unknown model family 'forest'"),
        (["-t", "y", "--test-size", "1.5"], "--test-size must be in (0, 1)"),
        (["-t", "y", "-m", "knn", "--complexity", "500"], "--model knn with --complexity 500"),
    ],
)
def test_bad_options_exit_2_with_a_located_message(tmp_path, extra, expected) -> None:
    path = _write(tmp_path, _frame())
    out = runner.invoke(app, ["-d", str(path), "--rounds", "2", *extra])
    assert out.exit_code == 2, out.output
    assert expected in out.output


def test_bad_files_name_the_file_and_column(tmp_path) -> None:
    missing = tmp_path / "nope.csv"
    out = runner.invoke(app, ["-d", str(missing), "-t", "y"])
    assert out.exit_code == 2 and f"{missing}: file not found" in out.output
    frame = _frame()
    frame.loc[3, "z"] = np.nan
    path = _write(tmp_path, frame)
    out = runner.invoke(app, ["-d", str(path), "-t", "y", "--rounds", "2"])
    assert out.exit_code == 2
    assert f"{path}, field z: 1 missing value(s)" in out.output
