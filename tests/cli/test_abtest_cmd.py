"""``recfunnel abtest``: plan, analyze, interleave through a local Typer app."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from recfunnel.cli.abtest_cmd import abtest_app

app = typer.Typer()
app.add_typer(abtest_app, name="abtest")
runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["abtest", *args])


def _write_csv(path, n: int = 4000, seed: int = 0, lift: float = 0.03, split: float = 0.5):
    rng = np.random.default_rng(seed)
    variant = np.where(rng.random(n) < split, "control", "treatment")
    pre = rng.normal(10, 3, n)
    conv = (rng.random(n) < 0.10 + lift * (variant == "treatment")).astype(int)
    revenue = pre + rng.normal(0, 1, n) + 0.3 * (variant == "treatment")
    day = rng.integers(1, 15, n)
    lines = ["user,variant,converted,revenue,pre,day"]
    lines += [
        f"u{i},{variant[i]},{conv[i]},{revenue[i]:.4f},{pre[i]:.4f},2024-05-{day[i]:02d}"
        for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plan_json_is_the_issue_example() -> None:
    out = _run(
        "plan", "--baseline", "0.10", "--mde", "0.01", "--alpha", "0.05", "--power", "0.8", "--json"
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert (doc["n_per_arm"], doc["total"], doc["method"], doc["weeks"]) == (
        14744,
        29488,
        "cohen-h",
        None,
    )
    assert doc["target"] == pytest.approx(0.11)


def test_plan_pooled_relative_with_duration() -> None:
    out = _run(
        "plan",
        "--baseline",
        "0.10",
        "--mde",
        "0.1",
        "--relative",
        "--method",
        "pooled",
        "--daily-traffic",
        "2000",
        "--arms",
        "2",
        "--json",
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert (doc["n_per_arm"], doc["method"], doc["weeks"]) == (14751, "pooled", 3)
    human = _run("plan", "--baseline", "0.10", "--mde", "0.01", "--daily-traffic", "500")
    assert human.exit_code == 0 and "14,744 per arm" in human.stdout and "9 week" in human.stdout


def test_plan_means_and_bad_method() -> None:
    out = _run("plan", "--baseline", "50", "--mde", "1", "--sd", "10", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["method"] == "t-test"
    bad = _run("plan", "--baseline", "0.1", "--mde", "0.01", "--method", "exact")
    assert bad.exit_code == 2 and "method" in bad.output


def test_analyze_json_binary(tmp_path) -> None:
    csv = _write_csv(tmp_path / "exp.csv")
    out = _run("analyze", "--data", str(csv), "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    c = doc["comparisons"][0]
    assert c["test"] == "two-proportion z-test" and c["treatment"] == "treatment"
    for key in (
        "absolute_lift",
        "absolute_ci",
        "relative_lift",
        "relative_ci",
        "p_value",
        "p_value_relative",
        "p_value_sequential",
    ):
        assert c[key] is not None
    assert doc["srm"]["flagged"] is False
    # Same numbers as the library on the same rows.
    from recfunnel.experiments.analysis import proportions_ztest

    rows = [r.split(",") for r in csv.read_text().splitlines()[1:]]
    conv = {v: [int(r[2]) for r in rows if r[1] == v] for v in ("control", "treatment")}
    ref = proportions_ztest(
        sum(conv["control"]), len(conv["control"]), sum(conv["treatment"]), len(conv["treatment"])
    )
    assert c["p_value"] == pytest.approx(ref.p_value)


def test_analyze_cuped_with_report(tmp_path) -> None:
    csv = _write_csv(tmp_path / "exp.csv")
    out = _run(
        "analyze",
        "--data",
        str(csv),
        "--metric",
        "revenue",
        "--covariate",
        "pre",
        "--time-col",
        "day",
        "--output",
        str(tmp_path / "rep"),
        "--json",
    )
    assert out.exit_code == 0, out.output
    c = json.loads(out.stdout)["comparisons"][0]
    assert c["test"] == "Welch t-test (CUPED)" and c["variance_reduction"] > 0.5
    assert c["p_value_sequential_running"] <= c["p_value_sequential"] + 1e-12
    for name in ("report.json", "lift.png", "lift_over_time.png"):
        assert (tmp_path / "rep" / name).is_file()
    assert len(json.loads((tmp_path / "rep" / "report.json").read_text())["over_time"]) == 1


def test_analyze_flags_srm_and_strict_refuses(tmp_path) -> None:
    csv = _write_csv(tmp_path / "srm.csv", n=6000, split=0.56)
    out = _run("analyze", "--data", str(csv), "--json")
    assert out.exit_code == 0
    assert json.loads(out.stdout)["srm"]["flagged"] is True
    assert "sample-ratio mismatch" in out.stderr
    strict = _run("analyze", "--data", str(csv), "--strict-srm")
    assert strict.exit_code == 2 and "sample-ratio mismatch" in strict.output
    # The designed allocation is 56/44: no mismatch.
    ok = _run("analyze", "--data", str(csv), "--weights", "control=56,treatment=44", "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["srm"]["flagged"] is False


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (
            "variant,converted\ncontrol,1\n",
            ["--metric", "clicks"],
            "line 1, field clicks: no column 'clicks'",
        ),
        (
            "variant,converted\ncontrol,1\ntreatment,yes\n",
            [],
            "line 3, field converted: not a number: 'yes'",
        ),
        (
            "variant,converted\nA,1\nB,0\n",
            [],
            "field variant: control variant 'control' not found; the column has ['A', 'B']",
        ),
        ("variant,converted\ncontrol,1,2\n", [], "line 2: 3 fields, the header has 2"),
        (
            "variant,converted,day\ncontrol,1,2024-01-01\ntreatment,0,soon\n",
            ["--time-col", "day"],
            "line 3, field day: not a number or an ISO-8601 date: 'soon'",
        ),
        ("", [], "empty file"),
    ],
)
def test_analyze_bad_input_names_file_line_and_column(tmp_path, content, args, message) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    out = _run("analyze", "--data", str(csv), *args)
    assert out.exit_code == 2
    flat = " ".join(out.output.split())  # rich wraps long lines
    assert "bad.csv" in flat and message in flat


def test_analyze_missing_file(tmp_path) -> None:
    out = _run("analyze", "--data", str(tmp_path / "nope.csv"))
    assert out.exit_code == 2 and "nope.csv" in out.output


def test_interleave_json() -> None:
    out = _run("interleave", "--a", "a,b,c", "--b", "b,c,d", "--seed", "1", "--json")
    assert out.exit_code == 0, out.output
    from recfunnel.experiments.interleaving import team_draft

    il = team_draft(["a", "b", "c"], ["b", "c", "d"], rng=1)
    assert json.loads(out.stdout) == {"items": il.items, "teams": il.teams}
    human = _run("interleave", "--a", "a,b,c", "--b", "b,c,d", "--seed", "1")
    assert human.exit_code == 0 and human.stdout.splitlines()[0].startswith("  1. ")
