"""The DriftDetector conformance suite: every registered detector runs all of it."""

from __future__ import annotations

import numpy as np
import pytest

from recfunnel.core.drift import DriftDetector
from recfunnel.core.errors import ConfigError, DataError
from recfunnel.monitoring.drift import REGISTRY, detector_class, make_detector

#: Invalid values per detector; each must pass __init__ and fail at the first update.
BAD_PARAMS: dict[str, list[dict[str, object]]] = {
    "adwin": [
        {"delta": 0.0},
        {"delta": 1.5},
        {"clock": 0},
        {"max_buckets": 0},
        {"min_window_length": 2.5},
        {"grace_period": -1},
        {"bound": "hoeffding"},
    ],
    "cusum": [
        {"k": -0.1},
        {"h": 0.0},
        {"std": 0.0},
        {"std": -1.0},
        {"mean": float("nan")},
        {"warmup": 1},
        {"mode": "sideways"},
    ],
    "ddm": [
        {"warm_start": 0},
        {"warning_threshold": 0.0},
        {"warning_threshold": 3.0, "drift_threshold": 2.0},
    ],
    "eddm": [{"min_errors": 1}, {"alpha": 1.5}, {"beta": 0.0}, {"alpha": 0.8, "beta": 0.9}],
    "page_hinkley": [
        {"delta": -1.0},
        {"threshold": 0.0},
        {"min_samples": 0},
        {"mode": "sideways"},
    ],
    "sprt": [
        {"mu1": 0.0},
        {"alpha": 0.0},
        {"beta": 1.0},
        {"alpha": 0.6, "beta": 0.5},
        {"sigma": 0.0},
        {"sigma": None, "warmup": 1},
        {"family": "poisson"},
        {"family": "bernoulli", "mu0": 0.0, "mu1": 0.5},
        {"family": "bernoulli", "mu0": 0.1, "mu1": 1.2},
    ],
}


@pytest.fixture(params=sorted(REGISTRY))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def is_binary(det: DriftDetector) -> bool:
    return det.binary_input


def in_control_constants(name: str, det: DriftDetector) -> list[float]:
    if is_binary(det):
        return [0.0, 1.0]
    if name == "sprt":
        # SPRT tests fixed hypotheses: a constant away from mu0 is a genuine departure.
        return [0.0]
    return [0.0, 3.7, -125.0]


def change_stream(det: DriftDetector, seed: int = 0, tau: int = 1000) -> np.ndarray:
    """A large abrupt change at ``tau``: N(0, 1) -> N(4, 1), or error rate 0.1 -> 0.7."""
    rng = np.random.default_rng(seed)
    if is_binary(det):
        p = np.r_[np.full(tau, 0.1), np.full(1000, 0.7)]
        return (rng.random(p.size) < p).astype(np.float64)
    return rng.normal(0.0, 1.0, tau + 1000) + np.r_[np.zeros(tau), np.full(1000, 4.0)]


def detections(det: DriftDetector, xs: np.ndarray) -> list[int]:
    return [i for i, x in enumerate(xs.tolist()) if det.update(x).drift_detected]


def test_registry_names_classes(name: str) -> None:
    cls = detector_class(name)
    assert issubclass(cls, DriftDetector)
    assert detector_class(name.upper().replace("_", "-")) is cls
    with pytest.raises(ConfigError, match="unknown drift detector"):
        detector_class("no-such-detector")


def test_params_round_trip_and_repr(name: str) -> None:
    det = make_detector(name)
    clone = type(det)(**det.get_params())
    assert clone.get_params() == det.get_params()
    assert repr(det).startswith(f"{type(det).__name__}(")
    with pytest.raises(ConfigError, match="no parameter"):
        make_detector(name, not_a_parameter=1)


def test_no_detection_on_a_constant_stream(name: str) -> None:
    for value in in_control_constants(name, make_detector(name)):
        det = make_detector(name)
        assert det.update_many(np.full(5000, value)).tolist() == [], value
        assert not det.warning_detected


def test_detects_a_large_abrupt_change_quickly(name: str) -> None:
    det = make_detector(name)
    tau = 1000
    hits = np.asarray(detections(det, change_stream(det, seed=1, tau=tau)))
    after = hits[hits >= tau]
    assert after.size, f"{name} missed a large change"
    assert after[0] - tau < 300, f"{name} took {after[0] - tau} samples"


def test_reset_restores_the_initial_state(name: str) -> None:
    det = make_detector(name)
    xs = change_stream(det, seed=2)
    first = detections(det, xs)
    assert first  # the stream has a change, so the comparison below is not vacuous
    det.reset()
    assert (det.n_seen, det.drift_detected, det.warning_detected) == (0, False, False)
    assert detections(det, xs) == first
    assert detections(make_detector(name), xs) == first


def test_update_many_matches_repeated_update(name: str) -> None:
    a, b = make_detector(name), make_detector(name)
    xs = change_stream(a, seed=3)
    assert a.update_many(xs).tolist() == detections(b, xs)
    assert (a.n_seen, a.drift_detected, a.warning_detected) == (
        b.n_seen,
        b.drift_detected,
        b.warning_detected,
    )
    # Batches continue the stream, and any 1-D iterable works.
    c = make_detector(name)
    head = c.update_many(xs[:700].tolist())
    tail = c.update_many(x for x in xs[700:])
    assert np.r_[head, tail + 700].tolist() == a.reset().update_many(xs).tolist()
    assert c.update_many([]).dtype == np.int64
    with pytest.raises(DataError, match="1-D"):
        c.update_many(np.zeros((2, 3)))


def test_bad_params_raise_config_error_at_first_update(name: str) -> None:
    assert set(BAD_PARAMS) == set(REGISTRY), "add bad-parameter cases for new detectors"
    for params in BAD_PARAMS[name]:
        det = make_detector(name, **params)  # __init__ stores, never validates
        assert det.get_params() | params == det.get_params()
        with pytest.raises(ConfigError):
            det.update(0.0)
        assert det.n_seen == 0


def test_state_properties_are_typed_as_documented(name: str) -> None:
    det = make_detector(name)
    assert (det.drift_detected, det.warning_detected, det.n_seen) == (False, False, 0)
    xs = change_stream(det, seed=4)
    # numpy scalars in, plain Python types out
    for x in xs[:1500]:
        out = det.update(np.float64(x))
        assert out is det
        assert type(det.drift_detected) is bool
        assert type(det.warning_detected) is bool
        assert not (det.drift_detected and det.warning_detected)
    assert type(det.n_seen) is int and det.n_seen == 1500
    assert type(det.update_many(xs[1500:])) is np.ndarray


def test_invalid_samples_raise_data_error(name: str) -> None:
    det = make_detector(name)
    det.update(0.0)
    with pytest.raises(DataError):
        det.update(float("nan"))
    if is_binary(det):
        with pytest.raises(DataError, match="0/1"):
            det.update(0.5)
    assert det.n_seen == 1  # a rejected sample is not counted
