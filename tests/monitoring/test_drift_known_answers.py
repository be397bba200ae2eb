"""Per-detector known answers: hand-computed statistics, pinned detection indices on seeded
streams, two-sided behaviour, agreement with river, and the drift-stream command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.monitoring.drift import ADWIN, CUSUM, DDM, EDDM, SPRT, PageHinkley


# ---- seeded streams (changes at sample 1500) ----------------------------------------------
def mean_shift(seed: int = 42, n: int = 1500, shift: float = 1.0) -> np.ndarray:
    """N(0, 1) for n samples, then N(shift, 1) for n samples."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, 2 * n) + np.r_[np.zeros(n), np.full(n, shift)]


def gradual(seed: int = 43, n: int = 1500, ramp: int = 800, shift: float = 1.5) -> np.ndarray:
    """N(0, 1); from sample n the mean climbs linearly to ``shift`` over ``ramp`` samples."""
    rng = np.random.default_rng(seed)
    level = np.r_[np.zeros(n), np.linspace(0.0, shift, ramp), np.full(1200, shift)]
    return rng.normal(0.0, 1.0, level.size) + level


def error_increase(seed: int = 44, n: int = 1500, p0: float = 0.15, p1: float = 0.45):
    """0/1 errors at rate p0 for n samples, then p1 for n samples."""
    rng = np.random.default_rng(seed)
    p = np.r_[np.full(n, p0), np.full(n, p1)]
    return (rng.random(p.size) < p).astype(np.float64)


def warning_starts(det, xs: np.ndarray) -> list[int]:
    out, before = [], False
    for i, x in enumerate(xs.tolist()):
        det.update(x)
        if det.warning_detected and not before:
            out.append(i)
        before = det.warning_detected
    return out


# ---- pinned detection indices -------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "abrupt", "ramp"),
    [
        (PageHinkley, [1530], [1747, 2159]),
        (CUSUM, [1512], [1760, 2158]),
        (ADWIN, [1543], [1767, 2215]),
    ],
    ids=["page_hinkley", "cusum", "adwin"],
)
def test_pinned_mean_change_indices(make, abrupt: list[int], ramp: list[int]) -> None:
    assert make().update_many(mean_shift()).tolist() == abrupt
    # A ramp keeps moving after the first detection, so a restarted detector fires again.
    assert make().update_many(gradual()).tolist() == ramp


def test_pinned_sprt_indices() -> None:
    # Known sigma (the default) and sigma learned from the first 100 samples.
    assert SPRT().update_many(mean_shift()).tolist()[:5] == [1531, 1545, 1602, 1616, 1634]
    learned = SPRT(sigma=None).update_many(mean_shift())
    assert learned.tolist()[:5] == [1511, 1531, 1541, 1573, 1601]
    assert learned.min() >= 1500  # nothing before the change
    assert SPRT(sigma=None).update_many(gradual()).tolist()[:3] == [1766, 1869, 1904]
    bern = SPRT(mu0=0.15, mu1=0.45, family="bernoulli")
    assert bern.update_many(error_increase()).tolist()[:4] == [1572, 1586, 1648, 1736]


def test_pinned_error_rate_indices() -> None:
    errors = error_increase()
    # DDM: one false alarm early (p_min, s_min set on a lucky start), then the change.
    assert DDM().update_many(errors).tolist() == [255, 1774]
    assert warning_starts(DDM(), errors)[:4] == [76, 81, 100, 108]
    # EDDM at the paper's levels alarms often on the stationary part; lower levels do not.
    assert EDDM().update_many(errors).tolist() == [288, 741, 1061, 1384, 1566, 1792, 2010]
    assert EDDM(alpha=0.8, beta=0.7).update_many(errors).tolist() == [1780]
    assert warning_starts(EDDM(alpha=0.8, beta=0.7), errors)[:3] == [741, 788, 1002]
    # The mean detectors work on error streams too (one-sided, in units of the rate).
    assert PageHinkley(delta=0.1, threshold=6.4, mode="up").update_many(errors).tolist() == [1532]


# ---- two-sided behaviour -------------------------------------------------------------------
@pytest.mark.parametrize(("make", "first"), [(PageHinkley, 1530), (CUSUM, 1512)])
def test_modes_select_the_direction(make, first: int) -> None:
    up, down = mean_shift(), -mean_shift()
    assert make(mode="up").update_many(up).tolist() == [first]
    assert make(mode="up").update_many(down).tolist() == []
    assert make(mode="down").update_many(up).tolist() == []
    assert make(mode="down").update_many(down).tolist() == [first]
    # Two-sided: both directions, at the same index by symmetry of the statistic.
    assert make().update_many(up).tolist() == make().update_many(down).tolist() == [first]


def test_adwin_and_sprt_directions() -> None:
    xs = mean_shift()
    assert ADWIN().update_many(-xs).tolist() == ADWIN().update_many(xs).tolist() == [1543]
    # SPRT is one-sided: it tests mu0 against the mu1 it is given.
    assert SPRT(mu0=0.0, mu1=-1.0).update_many(-xs).tolist()[:3] == [1531, 1545, 1602]
    assert SPRT(mu0=0.0, mu1=-1.0).update_many(xs).tolist() == []


# ---- known answers by hand -----------------------------------------------------------------
CUSUM_X = [0.2, 1.5, 1.2, -0.3, 0.8, 1.6, -2.0, -1.9, -0.4, 2.5]
# k = 0.5, h = 2, baseline (0, 1): C+ climbs to 2.3 > 2 at index 5 and restarts; C- reaches
# 1.5 + 1.9 - 0.5 = 2.9 at index 7; at index 9 C+ = 2.0 is not > h (strict).
CUSUM_PLUS = [0.0, 1.0, 1.7, 0.9, 1.2, 2.3, 0.0, 0.0, 0.0, 2.0]
CUSUM_MINUS = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5, 2.9, 0.0, 0.0]


@pytest.mark.parametrize(("mean", "std"), [(0.0, 1.0), (10.0, 2.0)])
def test_cusum_statistic_by_hand(mean: float, std: float) -> None:
    det = CUSUM(k=0.5, h=2.0, mean=mean, std=std)
    plus, minus, hits = [], [], []
    for i, z in enumerate(CUSUM_X):
        det.update(mean + std * z)  # k and h are in units of std: same answer at any scale
        plus.append(det.c_plus)
        minus.append(det.c_minus)
        if det.drift_detected:
            hits.append(i)
    assert plus == pytest.approx(CUSUM_PLUS)
    assert minus == pytest.approx(CUSUM_MINUS)
    assert hits == [5, 7]
    assert det.baseline == (mean, std)


def test_cusum_learns_its_baseline_then_relearns_after_a_detection() -> None:
    det = CUSUM(warmup=4, h=3.0)
    det.update_many([1.0, 2.0, 3.0, 4.0])
    mu, sd = det.baseline  # type: ignore[misc]
    assert (mu, sd) == pytest.approx((2.5, math.sqrt(5.0 / 3.0)))
    assert det.update_many([20.0]).tolist() == [0]
    assert det.update(2.0).baseline is None  # learning again after the detection


def test_sprt_log_likelihood_ratio_by_hand() -> None:
    det = SPRT(mu0=0.0, mu1=1.0, sigma=1.0, alpha=0.05, beta=0.1)
    b, a = det.bounds
    assert (b, a) == pytest.approx((math.log(0.1 / 0.95), math.log(0.9 / 0.05)))
    # Each Gaussian step is (mu1 - mu0) / sigma^2 * (x - 1/2) = x - 0.5.
    xs = [1.0, 1.5, 0.2, 1.8, 1.2, -1.0, -1.0, 0.5]
    llr = [0.5, 1.5, 1.2, 2.5, 3.2, -1.5, -3.0, 0.0]
    decisions = [None, None, None, None, "h1", None, "h0", None]
    for x, want_llr, want in zip(xs, llr, decisions, strict=True):
        det.update(x)
        assert det.log_likelihood_ratio == pytest.approx(want_llr)
        assert det.decision == want
        assert det.drift_detected == (want == "h1")
    assert det.n_tests == 2


def test_sprt_bernoulli_by_hand() -> None:
    det = SPRT(mu0=0.1, mu1=0.3, family="bernoulli", alpha=0.05, beta=0.1)
    up, down = math.log(3.0), math.log(0.7 / 0.9)  # an error, a success
    seen = [det.update(x).log_likelihood_ratio for x in (1, 1, 0, 1)]
    assert seen == pytest.approx([up, 2 * up, 2 * up + down, 3 * up + down])
    assert det.drift_detected  # 3 log 3 + log(7/9) = 3.04 >= log 18 = 2.89
    with pytest.raises(DataError, match="0/1"):
        det.update(0.5)


def test_page_hinkley_statistic_by_hand() -> None:
    det = PageHinkley(delta=0.5, threshold=5.0, min_samples=1)
    # Running means 1, 1, 1, 2.5, 3.4; increase side m = sum(x - mean - 0.5):
    # -0.5, -1.0, -1.5 (the minimum), -1.5 + 4.5 - 0.5 = 2.5, 2.5 + 3.6 - 0.5 = 5.6,
    # so the statistic m - min(m) is 0, 0, 0, 4.0, then 7.1 > 5.
    stats = [det.update(x).statistic for x in (1.0, 1.0, 1.0, 7.0)]
    assert stats == pytest.approx([0.0, 0.0, 0.0, 4.0])
    assert not det.drift_detected
    assert det.update(7.0).drift_detected
    assert det.statistic == pytest.approx(7.1)


def test_ddm_by_hand() -> None:
    det = DDM()
    det.update_many([0.0] * 30 + [1.0] * 3)
    assert det.error_rate == pytest.approx(3 / 33)
    # The documented weakness: a warm-up with no error sets s_min = 0, and the first error
    # after it is a drift.
    assert DDM().update_many([0.0] * 31 + [1.0]).tolist() == [31]


def test_eddm_mean_distance_by_hand() -> None:
    det = EDDM()
    det.update_many([0, 0, 1, 0, 1, 0, 0, 0, 0, 1])  # errors at samples 3, 5, 10
    assert det.mean_distance == pytest.approx((3 + 2 + 5) / 3)


# ---- ADWIN --------------------------------------------------------------------------------
def test_adwin_window_statistics() -> None:
    det = ADWIN()
    det.update_many([1.0, 2.0, 3.0, 4.0, 5.0])
    assert det.width == 5
    assert det.estimation == pytest.approx(3.0)
    assert det.variance == pytest.approx(2.0)
    det.update_many(np.arange(200.0) % 7)  # buckets merge; statistics stay exact
    xs = np.r_[[1.0, 2.0, 3.0, 4.0, 5.0], np.arange(200.0) % 7]
    assert det.width == xs.size
    assert det.estimation == pytest.approx(xs.mean())
    assert det.variance == pytest.approx(xs.var())


def test_adwin_paper_bound_cuts_no_later_than_moa() -> None:
    # Until the first cut both see the same windows, and the paper's epsilon is smaller.
    for seed in range(5):
        xs = mean_shift(seed=seed, shift=0.7)
        paper = ADWIN(bound="paper").update_many(xs)
        moa = ADWIN(bound="moa").update_many(xs)
        assert paper[0] <= moa[0]


def river_indices(det, xs: list[float]) -> list[int]:
    out = []
    for i, x in enumerate(xs):
        det.update(x)
        if det.drift_detected:
            out.append(i)
    return out


def multi_change_stream(seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return np.r_[
        rng.normal(0.0, 1.0, 1000),
        rng.normal(0.8, 1.0, 1000),
        rng.normal(-0.5, 2.0, 1000),
        rng.random(1000),
    ].tolist()


@pytest.fixture(scope="module")
def river_drift():
    return pytest.importorskip("river.drift")


@pytest.mark.parametrize(
    "params",
    [{}, {"delta": 0.1, "clock": 1}, {"max_buckets": 2, "min_window_length": 1, "clock": 3}],
)
def test_adwin_matches_river_exactly_with_its_bound_and_clock(params: dict, river_drift) -> None:
    for seed in range(3):
        xs = multi_change_stream(seed)
        ours = ADWIN(**{"bound": "moa", "clock": 32, **params}).update_many(xs).tolist()
        theirs = river_indices(river_drift.ADWIN(**params), xs)
        assert ours == theirs
        assert len(ours) >= 3  # several detections, so restarts are compared too


def test_adwin_defaults_differ_from_river_only_by_bound_and_clock(river_drift) -> None:
    xs = mean_shift(seed=7)
    ours = ADWIN().update_many(xs).tolist()
    theirs = river_indices(river_drift.ADWIN(), xs.tolist())
    # Checking every 8 samples instead of 32 finds this abrupt change earlier.
    assert ours[0] < theirs[0] and theirs[0] - ours[0] < 32


def test_ddm_matches_river_exactly(river_drift) -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        p = np.r_[np.full(2000, 0.2), np.full(2000, 0.35), np.full(2000, 0.1)]
        xs = (rng.random(p.size) < p).astype(float).tolist()
        assert DDM().update_many(xs).tolist() == river_indices(river_drift.binary.DDM(), xs)


# ---- the drift-stream command --------------------------------------------------------------
@pytest.fixture
def cli():
    typer = pytest.importorskip("typer")
    from typer.testing import CliRunner

    from recfunnel.cli.drift_stream_cmd import drift_stream

    app = typer.Typer()
    app.command()(drift_stream)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_cli_prints_detections(cli, tmp_path: Path) -> None:
    path = tmp_path / "stream.txt"
    path.write_text("# latency\n" + "\n".join(map(str, mean_shift().tolist())) + "\n\n")
    result = cli("--input", path, "--detector", "ph")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["1530"]
    out = cli("--input", path, "--detector", "page-hinkley", "--param", "mode=down", "--json")
    doc = json.loads(out.stdout)
    assert doc["detections"] == [] and doc["detector"] == "page_hinkley"
    assert doc["params"]["mode"] == "down" and doc["n_samples"] == 3000


def test_cli_reads_a_csv_column_and_reports_warnings(cli, tmp_path: Path) -> None:
    errors = error_increase()
    path = tmp_path / "errors.csv"
    rows = ["ts,error"] + [f"{i},{int(e)}" for i, e in enumerate(errors)]
    path.write_text("\n".join(rows) + "\n")
    result = cli("--input", path, "--column", "error", "--detector", "DDM", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["detections"] == [255, 1774]
    assert doc["warnings"][:4] == [76, 81, 100, 108]
    assert doc["params"] == {"warm_start": 30, "warning_threshold": 2.0, "drift_threshold": 3.0}
    by_position = json.loads(
        cli("--input", path, "--column", "1", "--detector", "ddm", "--json").stdout
    )
    assert by_position["detections"] == doc["detections"]


def test_cli_errors_exit_2(cli, tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text("1\n2\noops\n")
    assert cli("--input", path, "--detector", "ph").exit_code == 2  # DataError, line 3
    path.write_text("1\n2\n3\n")
    assert cli("--input", path, "--detector", "nope").exit_code == 2
    assert cli("--input", path, "--detector", "ph", "--param", "threshold=-1").exit_code == 2
    assert cli("--input", path, "--detector", "ph", "--param", "threshold").exit_code == 2
    assert cli("--input", path, "--detector", "ph", "--column", "x").exit_code == 2
    assert cli("--input", tmp_path / "missing.txt", "--detector", "ph").exit_code == 2


def test_cli_parse_params_and_read_values(tmp_path: Path) -> None:
    from recfunnel.cli.drift_stream_cmd import parse_params, read_values

    assert parse_params(["delta=0.01", "mode=up", "std=null", "mean=None", "clock=4"]) == {
        "delta": 0.01,
        "mode": "up",
        "std": None,
        "mean": None,
        "clock": 4,
    }
    with pytest.raises(ConfigError):
        parse_params(["=3"])
    path = tmp_path / "s.txt"
    path.write_text("1\nnan\n")
    with pytest.raises(DataError, match="line 2"):
        read_values(path)
    path.write_text("0.5,x\n1.5,y\n")  # no header: a numeric first row is data
    assert read_values(path, "0") == [0.5, 1.5]
