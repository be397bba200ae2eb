from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.tree import DecisionTreeClassifier

from recfunnel.core.errors import ConfigError, DataError, NotFittedError
from recfunnel.monitoring.adversarial import (
    AdversarialValidation,
    auc_null_p_value,
    detect_leaky_columns,
    encode_frames,
    roc_auc,
)
from recfunnel.monitoring.feature_tests import feature_tests

N = 600


def _frame(n: int, rng: np.random.Generator, *, rho: float = 0.7, shift: float = 0.0):
    # a and b are N(0, 1) whatever rho is; c carries the optional mean shift.
    z1, z2 = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame(
        {
            "a": z1,
            "b": rho * z1 + math.sqrt(1 - rho**2) * z2,
            "c": rng.normal(shift, size=n),
            "d": rng.normal(size=n),
            "cat": rng.choice(list("pqrs"), size=n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )


def test_shifted_feature_is_ranked_first() -> None:
    rng = np.random.default_rng(0)
    av = AdversarialValidation(seed=0, n_repeats=2).fit(_frame(N, rng), _frame(N, rng, shift=0.5))
    assert av.drift_ and av.auc_ > 0.55 and av.p_value_ < 1e-4
    assert av.importances_ is not None
    assert av.importances_.loc[0, "feature"] == "c"
    assert av.drifted_features_ == ["c"]


def test_correlation_only_change_is_caught_here_and_not_by_feature_tests() -> None:
    rng = np.random.default_rng(1)
    ref, cur = _frame(N, rng, rho=0.7), _frame(N, rng, rho=-0.7)
    av = AdversarialValidation(seed=0, n_repeats=2).fit(ref, cur)
    assert av.drift_ and av.auc_ > 0.65
    assert av.importances_ is not None
    assert set(av.importances_["feature"].head(2)) == {"a", "b"}
    assert set(av.drifted_features_) == {"a", "b"}
    assert not feature_tests(ref, cur)["drifted"].any()


def test_no_drift_is_not_flagged_and_nothing_is_ranked() -> None:
    # One seeded draw; the false-flag *rate* over many seeds is benchmarks/drift_validation.py.
    rng = np.random.default_rng(12)
    av = AdversarialValidation(seed=0).fit(_frame(N, rng), _frame(N, rng))
    assert not av.drift_
    assert abs(av.auc_ - 0.5) < 0.05 and av.p_value_ > 0.05
    assert av.importances_ is None and av.drifted_features_ == []


def test_id_and_timestamp_columns_are_leaky_not_drift() -> None:
    rng = np.random.default_rng(3)
    ref, cur = _frame(N, rng), _frame(N, rng)
    ref["id"], cur["id"] = np.arange(N), np.arange(N, 2 * N)
    ref["timestamp"] = pd.date_range("2024-01-01", periods=N, freq="min")
    cur["timestamp"] = pd.date_range("2024-03-01", periods=N, freq="min")
    av = AdversarialValidation(seed=0).fit(ref, cur)
    assert set(av.leaky_columns_) == {"id", "timestamp"}
    assert av.leaky_columns_["timestamp"] == "datetime column"
    assert "id" not in av.feature_names_in_ and "timestamp" not in av.feature_names_in_
    assert not av.drift_
    # Why they must go: kept in, the id alone separates old rows from new ones perfectly.
    kept = AdversarialValidation(seed=0, keep_columns=["id"], n_repeats=1).fit(ref, cur)
    assert kept.auc_ > 0.99 and kept.drifted_features_[0] == "id"


def test_leak_rules() -> None:
    n = 50
    rng = np.random.default_rng(4)
    ref = pd.DataFrame(
        {
            "userId": rng.integers(0, 5, n),  # camelCase name
            "row": np.arange(n) * 1.0,  # name
            "seq": np.arange(n) + 0.5,  # sorted, distinct: a row number by behaviour
            "token": [f"t{i}" for i in range(n)],  # near-unique text
            "when": [f"2024-01-{1 + i % 28:02d}T10:00:00" for i in range(n)],  # ISO text
            "price": rng.normal(size=n),  # continuous float: unique but a feature
            "paid": rng.integers(0, 2, n),  # contains "id" but is not an id
            "cat": rng.choice(list("ab"), n),
        }
    )
    cur = ref.copy()
    cur["seq"] += n
    cur["token"] = [f"u{i}" for i in range(n)]
    leaky = detect_leaky_columns(ref, cur)
    assert set(leaky) == {"userId", "row", "seq", "token", "when"}
    assert leaky["seq"].startswith("sorted")
    assert leaky["token"].startswith("near-unique")
    assert leaky["when"] == "text holding timestamps"
    off = detect_leaky_columns(
        ref, cur, name_pattern=None, unique_ratio=None, monotonic=False, drop=["price"]
    )
    assert set(off) == {"price", "when"}
    with pytest.raises(DataError, match="not shared"):
        detect_leaky_columns(ref, cur, drop=["nope"])


def test_new_category_is_detected_through_the_union_encoding() -> None:
    rng = np.random.default_rng(5)
    ref, cur = _frame(N, rng), _frame(N, rng)
    cur.loc[: N // 5, "cat"] = "new"
    av = AdversarialValidation(seed=0, n_repeats=2).fit(ref, cur)
    assert av.drift_ and av.drifted_features_[0] == "cat"
    X, cats = encode_frames(ref, cur, {"cat": "categorical"})
    assert cats == [0] and np.nanmax(X) == 4  # p q r s + new


def test_permutation_null_with_a_cheap_model() -> None:
    rng = np.random.default_rng(6)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0)
    ref, cur = _frame(300, rng), _frame(300, rng, shift=1.0)
    kw = {"null": "permutation", "n_permutations": 39, "n_splits": 3, "seed": 0}
    av = AdversarialValidation(tree, **kw).fit(ref, cur)
    # No permuted AUC reaches the real one: the smallest p-value 39 permutations can give.
    assert av.p_value_ == pytest.approx(1 / 40) and av.drift_
    assert av.null_aucs_ is not None and len(av.null_aucs_) == 39
    assert np.all(np.abs(av.null_aucs_ - 0.5) < 0.1)
    same = AdversarialValidation(tree, **kw).fit(ref, _frame(300, rng))
    assert same.p_value_ > 0.05 and not same.drift_


def test_analytic_p_value_matches_the_formula() -> None:
    n0, n1, auc = 400, 300, 0.53
    sd = math.sqrt((n0 + n1 + 1) / (12 * n0 * n1))
    z = (auc - 0.5) / sd
    assert auc_null_p_value(auc, n0, n1) == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))
    z2 = z / math.sqrt(2)  # cross-fitted scores: twice the variance
    got = auc_null_p_value(auc, n0, n1, variance_inflation=2.0)
    assert got == pytest.approx(0.5 * math.erfc(z2 / math.sqrt(2)))


def test_params_clone_and_errors() -> None:
    av = AdversarialValidation(n_splits=3, seed=7)
    assert clone(av).get_params() == av.get_params()
    with pytest.raises(NotFittedError):
        av.summary()
    ref = pd.DataFrame({"x": np.arange(10.0) % 3})
    with pytest.raises(DataError, match="need at least n_splits"):
        AdversarialValidation(n_splits=5).fit(ref, ref.iloc[:3])
    with pytest.raises(ConfigError, match="model"):
        AdversarialValidation("xgboost").fit(ref, ref)
    with pytest.raises(ConfigError, match="null"):
        AdversarialValidation(null="bootstrap").fit(ref, ref)  # type: ignore[arg-type]
    only_ids = pd.DataFrame({"user_id": [1, 2, 3, 4, 5]})
    with pytest.raises(DataError, match="flagged"):
        AdversarialValidation().fit(only_ids, only_ids)
    with pytest.raises(DataError, match="no rows"):
        AdversarialValidation().fit(ref, ref.iloc[:0])


def test_roc_auc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    scores = rng.integers(0, 10, 300).astype(float)  # many ties
    assert roc_auc(y, scores) == pytest.approx(roc_auc_score(y, scores))
    assert math.isnan(roc_auc(np.zeros(5), np.arange(5.0)))
