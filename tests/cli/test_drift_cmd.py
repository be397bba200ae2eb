from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from recfunnel.cli.drift_cmd import drift

app = typer.Typer()
app.command()(drift)
runner = CliRunner()


def _write(tmp_path, *, shift: float = 0.0, fmt: str = "csv"):
    rng = np.random.default_rng(0)
    n = 400

    def frame(shift: float, start: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "event_id": np.arange(start, start + n),
                "x": rng.normal(shift, size=n),
                "y": rng.normal(size=n),
                "cat": rng.choice(list("abc"), n),
            }
        )

    ref, cur = tmp_path / f"ref.{fmt}", tmp_path / f"cur.{fmt}"
    for path, df in ((ref, frame(0.0, 0)), (cur, frame(shift, n))):
        df.to_parquet(path) if fmt == "parquet" else df.to_csv(path, index=False)
    return ref, cur


def test_json_output_on_drifted_csv(tmp_path) -> None:
    ref, cur = _write(tmp_path, shift=0.8)
    out = runner.invoke(app, ["--reference", str(ref), "--current", str(cur), "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["drift"] is True
    assert payload["drifted_features"][0] == "x"
    assert payload["leaky_columns"] == ["event_id"]
    assert 0.5 < payload["auc"] <= 1.0


def test_parquet_report_directory_and_fail_on_drift(tmp_path) -> None:
    ref, cur = _write(tmp_path, shift=0.8, fmt="parquet")
    dest = tmp_path / "report"
    args = ["-r", str(ref), "-c", str(cur), "-o", str(dest), "--fail-on-drift"]
    out = runner.invoke(app, args)
    assert out.exit_code == 1, out.output
    assert "DRIFT" in out.stdout
    assert {p.name for p in dest.iterdir()} == {"report.json", "index.html", "plots"}
    assert json.loads((dest / "report.json").read_text())["drift"] is True


def test_missing_file_names_it(tmp_path) -> None:
    ref, _ = _write(tmp_path)
    missing = tmp_path / "nope.csv"
    out = runner.invoke(app, ["-r", str(ref), "-c", str(missing), "--json"])
    assert out.exit_code == 2
    assert f"{missing}: file not found" in out.output


@pytest.mark.parametrize(
    ("current_csv", "expected"),
    [
        ("x,y\nfoo,1\nbar,2\n", "cur.csv, field x: column 'x' is numeric in the reference"),
        ("a,b\n1,2\n", "cur.csv: no column in common"),
        ("x,y\n", "cur.csv: no data rows"),
        ("", "cur.csv: empty file"),
    ],
)
def test_bad_current_file_names_file_and_column(tmp_path, current_csv, expected) -> None:
    ref, _ = _write(tmp_path)
    cur = tmp_path / "cur.csv"
    cur.write_text(current_csv)
    out = runner.invoke(app, ["-r", str(ref), "-c", str(cur)])
    assert out.exit_code == 2
    assert expected in out.output


def test_bad_options(tmp_path) -> None:
    ref, cur = _write(tmp_path)
    out = runner.invoke(app, ["-r", str(ref), "-c", str(cur), "--correction", "holm"])
    assert out.exit_code == 2 and "--correction" in out.output
    other = tmp_path / "data.json"
    other.write_text("{}")
    out = runner.invoke(app, ["-r", str(ref), "-c", str(other)])
    assert out.exit_code == 2 and "suffix '.json'" in out.output
