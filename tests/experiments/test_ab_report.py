"""The experiment report: curves over time agree with the final analysis; files are written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recfunnel.experiments.analysis import analyze_experiment
from recfunnel.experiments.report import build_report, lift_over_time


def _experiment(seed: int = 0, n: int = 6000, days: int = 14):
    rng = np.random.default_rng(seed)
    variants = np.where(rng.random(n) < 0.5, "control", "treatment")
    day = rng.integers(0, days, n)
    converted = (rng.random(n) < np.where(variants == "treatment", 0.13, 0.10)).astype(float)
    return variants, day, converted


def test_last_look_equals_the_final_analysis() -> None:
    variants, day, y = _experiment()
    res = analyze_experiment(variants, y, control="control", tau=0.02)
    lot = lift_over_time(
        day, variants, y, control="control", treatment="treatment", tau=0.02, binary=True
    )
    c = res.comparisons[0]
    assert len(lot.looks) == 14
    assert (lot.n_control[-1], lot.n_treatment[-1]) == (c.n_control, c.n_treatment)
    assert lot.lift[-1] == pytest.approx(c.absolute_lift)
    assert (lot.ci_low[-1], lot.ci_high[-1]) == pytest.approx(c.absolute_ci)
    assert lot.p_fixed[-1] == pytest.approx(c.p_value)
    # The running minimum over 14 looks is at most the single-look mSPRT p-value.
    assert lot.p_sequential[-1] <= c.p_value_sequential + 1e-15
    assert np.all(np.diff(lot.p_sequential) <= 0)
    assert np.all(np.diff(lot.cs_low) >= 0) and np.all(np.diff(lot.cs_high) <= 0)
    assert lot.srm_p[-1] == pytest.approx(res.srm.p_value)


def test_looks_are_thinned_to_max_looks_and_keep_the_last() -> None:
    variants, _, y = _experiment(n=3000)
    t = np.arange(3000)  # every row its own time
    lot = lift_over_time(
        t, variants, y, control="control", treatment="treatment", tau=0.02, max_looks=25
    )
    assert len(lot.looks) == 25 and lot.looks[-1] == "2999"
    assert lot.n_control[-1] + lot.n_treatment[-1] == 3000


def test_report_writes_json_and_pngs(tmp_path) -> None:
    variants, day, y = _experiment(seed=1)
    res = analyze_experiment(variants, y, control="control", metric="converted")
    report = build_report(res, times=day, variants=variants, values=y, source="exp.csv")
    paths = report.write(tmp_path / "out")
    assert [p.name for p in paths] == ["report.json", "lift.png", "lift_over_time.png"]
    for p in paths[1:]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths[0].read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON
    doc = json.loads(text)
    assert doc["srm"]["flagged"] is False and doc["source"] == "exp.csv"
    assert doc["reported_p_value"].startswith("absolute lift")
    assert len(doc["over_time"]["treatment"]["p_sequential"]) == 14
    assert "SRM ok" in report.srm_status
    assert "over_time" not in build_report(res).to_dict()  # no time column, no curves


def test_cuped_curves_end_at_the_final_cuped_analysis() -> None:
    rng = np.random.default_rng(4)
    n = 4000
    variants = np.where(rng.random(n) < 0.5, "control", "treatment")
    x = rng.normal(10, 3, n)
    y = x + rng.normal(0, 1, n) + 0.2 * (variants == "treatment")
    day = rng.integers(0, 10, n)
    res = analyze_experiment(variants, y, control="control", covariate=x, tau=0.2)
    c = res.comparisons[0]
    lot = lift_over_time(
        day, variants, y, control="control", treatment="treatment", tau=0.2, covariate=x
    )
    assert lot.lift[-1] == pytest.approx(c.absolute_lift, rel=1e-9)
    assert (lot.ci_high[-1] - lot.lift[-1]) == pytest.approx(
        1.959964 * c.se, rel=1e-6
    )  # normal band with the CUPED standard error
    assert lot.p_sequential[-1] <= c.p_value_sequential * (1 + 1e-9)
    # Early looks use theta fitted on the data so far: the first look equals a CUPED analysis
    # of day 0 alone.
    first = day == 0
    early = analyze_experiment(variants[first], y[first], control="control", covariate=x[first])
    assert lot.lift[0] == pytest.approx(early.comparisons[0].absolute_lift, rel=1e-9)
