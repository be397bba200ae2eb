from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.monitoring import report as report_mod
from recfunnel.monitoring.adversarial import AdversarialValidation
from recfunnel.monitoring.report import drift_report

N = 500


def _frames(seed: int, *, shift: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def one(n: int, shift: float, start: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "id": np.arange(start, start + n),
                "x": rng.normal(shift, size=n),
                "y": rng.normal(size=n),
                "cat": rng.choice(list("abc"), n),
            }
        )

    return one(N, 0.0, 0), one(N, shift, N)


@pytest.fixture(scope="module")
def drifted():
    ref, cur = _frames(0, shift=0.6)
    return drift_report(ref, cur, adversarial=AdversarialValidation(n_repeats=2))


def test_to_dict_layout_and_verdict(drifted) -> None:
    d = drifted.to_dict()
    for key in (
        "drift", "auc", "p_value", "drifted_features", "leaky_columns", "feature_tests",
        "alerts", "correlation_changes",
    ):  # fmt: skip
        assert key in d
    json.dumps(d, allow_nan=False)  # plain JSON, NaN already turned into null
    assert d["drift"] is True and d["adversarial_drift"] is True
    assert d["drifted_features"][0] == "x"
    assert d["leaky_columns"] == ["id"]
    assert "id" not in [row["feature"] for row in d["feature_tests"]]
    assert d["feature_tests"][0]["feature"] == "x"
    assert ("x", "mean_shift") in [(a["feature"], a["kind"]) for a in d["alerts"]]
    # Each family ran at alpha / 2 so the combined verdict keeps the overall rate at alpha.
    assert d["adversarial"]["alpha"] == pytest.approx(0.025)
    assert drifted.auc == d["auc"] and drifted.leaky_columns == {"id": d["leaky_reasons"]["id"]}


def test_no_drift_report() -> None:
    ref, cur = _frames(1)
    d = drift_report(ref, cur).to_dict()
    assert d["drift"] is False and d["drifted_features"] == [] and d["importances"] is None


def test_write_lays_out_json_html_and_plots(drifted, tmp_path) -> None:
    out = drifted.write(tmp_path / "rep")
    assert json.loads((out / "report.json").read_text()) == drifted.to_dict()
    page = (out / "index.html").read_text()
    assert "<script" not in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert "plots/correlation_change.png" in images
    assert len(images) == 1 + 3  # x, y, cat (id is leaky: not plotted)
    for src in images:
        assert (out / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second write replaces the previous report.
    drifted.write(out, max_plots=0)
    assert [p.name for p in (out / "plots").iterdir()] == ["correlation_change.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_failed_write_leaves_nothing(drifted, tmp_path, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_mod, "_plot_correlation_change", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        drifted.write(tmp_path / "rep")
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_a_directory_that_is_not_a_report(drifted, tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a drift report"):
        drifted.write(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_jsonable() -> None:
    assert report_mod.jsonable({"a": math.inf, "b": pd.Timestamp("2024-01-01")}) == {
        "a": None,
        "b": "2024-01-01T00:00:00",
    }


def test_bad_inputs() -> None:
    ref, cur = _frames(2)
    with pytest.raises(DataError, match="no column in common"):
        drift_report(ref, cur.rename(columns=str.upper))
    with pytest.raises(DataError, match="no rows"):
        drift_report(ref, cur.iloc[:0])
    with pytest.raises(ConfigError):
        drift_report(ref, cur, alpha=0)
