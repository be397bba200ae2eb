"""Adversarial validation: can a classifier tell the current data from the reference data?

Label every reference row 0 and every current row 1, fit a classifier with K-fold cross-fitting
and score each row with the model that did not see it. If nothing changed, no model can do
better than chance and the out-of-fold ROC AUC is about 0.5; it is one omnibus test over the
*joint* distribution, so it catches changes that per-feature tests miss (two features whose
marginals stay put while their correlation flips).

Two nulls for the AUC:

* ``"analytic"``: a fixed scorer on fresh data has, under no drift, a Mann–Whitney AUC with
  mean 0.5 and variance ``(n0 + n1 + 1) / (12 n0 n1)``. Cross-fitted scores are not that: the
  model scoring fold k learned from fold l and the one scoring fold l learned from fold k, so the
  fold AUCs share noise and are positively correlated. For any learner linear in its training
  labels (a kernel smoother; boosting and logistic regression to first order) the OOF AUC is
  then a degenerate U-statistic over pairs of rows in different folds whose variance is exactly
  **twice** the fixed-scorer one, whatever K (nonlinear learners land at or below that).
  Measured under no drift with 5 folds: variance ratio 1.7 for logistic regression (80 seeds)
  and 1.7–1.85 for the default LightGBM (n0 = n1 = 1000, 400 and 520 seeds, the generator of
  ``benchmarks/drift_validation.py``); with the textbook variance the test flagged 9–12% of
  drift-free pairs at alpha = 0.05, with the factor 2 3–4.5%. So the variance is multiplied by
  ``variance_inflation`` (default 2; 1 gives the textbook formula) and the p-value is the
  one-sided normal tail. The same arithmetic says cross-fitting buys no null precision over
  one 50/50 holdout split (whose null variance is exactly that of n/2 rows); it does use 80%
  of the rows to train each model, and every row for the importances.
* ``"permutation"``: refit the whole cross-fitting on label-permuted data ``n_permutations``
  times; ``p = (1 + #{AUC_perm >= AUC}) / (1 + n_permutations)``. Valid whatever the model,
  at ``n_permutations`` times the cost.

Only when the AUC is significant are features ranked, by **permutation importance on the
held-out folds** (the AUC lost when one column is shuffled within the fold the model did not
see). Impurity importance would favour continuous and high-cardinality columns whether or not
they moved.

Identifier, timestamp and row-number columns separate old rows from new ones trivially (the
ids and clocks of new data are new); reporting them as drift would be noise, so
:func:`detect_leaky_columns` flags them, and they are dropped from the model and listed in
``leaky_columns_``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from recfunnel.core.errors import ConfigError, DataError, NotFittedError
from recfunnel.core.params import Params
from recfunnel.monitoring.feature_tests import ColumnKind, category_labels, common_columns

#: Column names that say "identifier" or "time": a trailing ``id``/``uuid``/``key``/``ts``/...
#: token (``user_id``, ``userId``, ``event_ts``) or a whole name such as ``index`` or ``row``.
DEFAULT_LEAK_PATTERN = (
    r"(?:^|_)(?:id|ids|uuid|guid|idx|key|timestamp|ts|datetime|date)$"
    r"|^(?:index|level_0|unnamed_0|row|rownum|row_?number|row_?no|time|created(?:_at)?"
    r"|updated(?:_at)?|event_time|modified(?:_at)?)$"
)


def _snake(name: str) -> str:
    # userId -> user_id, "Row Number" -> row_number, so one pattern covers the spellings.
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name))
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def _looks_like_timestamps(series: pd.Series, sample: int = 200) -> bool:
    values = series.dropna()
    if len(values) == 0:
        return False
    head = values.iloc[:sample].astype(str)
    # Digits only would be ints; ISO-like text needs a '-' or ':' to be read as a time.
    if not head.str.contains(r"\d[-/:]\d", regex=True).all():
        return False
    parsed = pd.to_datetime(head, errors="coerce", format="ISO8601", utc=True)
    return bool(parsed.notna().all())


def _monotonic(series: pd.Series) -> bool:
    values = series.dropna()
    if len(values) < 10:
        return False
    mono = values.is_monotonic_increasing or values.is_monotonic_decreasing
    # A sorted column with few values is a sorted categorical-like feature, not a clock.
    return bool(mono and values.nunique() >= 0.5 * len(values))


def detect_leaky_columns(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    name_pattern: str | None = DEFAULT_LEAK_PATTERN,
    unique_ratio: float | None = 0.95,
    monotonic: bool = True,
    drop: Sequence[str] = (),
    keep: Sequence[str] = (),
) -> dict[str, str]:
    """Shared columns that identify rows or times rather than describe them: ``{column: why}``.

    A column is flagged when (first reason found):

    1. it is listed in ``drop``;
    2. it is a datetime column, or text whose values parse as ISO 8601 times;
    3. its name matches ``name_pattern`` (matched on the snake_case form: ``userId`` is
       ``user_id``); ``None`` turns the rule off;
    4. ``monotonic`` and it is numeric and sorted in both frames with mostly distinct values (a
       row number, an auto-increment key, a clock);
    5. it is integer or text and at least ``unique_ratio`` of its values over both frames are
       distinct (``None`` turns the rule off). Float columns are exempt: continuous features
       are near-unique by nature.

    Columns in ``keep`` are never flagged (the way to overrule a false flag).

    >>> ref = pd.DataFrame({"user_id": [1, 2, 1], "price": [1.0, 2.0, 3.0], "cat": ["a", "b", "a"]})
    >>> detect_leaky_columns(ref, ref)
    {'user_id': 'name looks like an identifier or a time'}
    >>> detect_leaky_columns(ref, ref, keep=["user_id"])
    {}
    """
    kinds = common_columns(reference, current)
    keep_set, drop_set = {str(c) for c in keep}, {str(c) for c in drop}
    pattern = re.compile(name_pattern) if name_pattern is not None else None
    out: dict[str, str] = {}
    for col, kind in kinds.items():
        if col in keep_set:
            continue
        ref, cur = reference[col], current[col]
        if col in drop_set:
            out[col] = "listed as a column to drop"
        elif kind == "datetime":
            out[col] = "datetime column"
        elif kind == "categorical" and _looks_like_timestamps(ref) and _looks_like_timestamps(cur):
            out[col] = "text holding timestamps"
        elif pattern is not None and pattern.search(_snake(col)):
            out[col] = "name looks like an identifier or a time"
        elif monotonic and kind == "numeric" and _monotonic(ref) and _monotonic(cur):
            out[col] = "sorted in both frames with mostly distinct values (a row number or clock)"
        elif unique_ratio is not None and not pd.api.types.is_float_dtype(ref.dtype):
            both = pd.concat([category_labels(ref), category_labels(cur)], ignore_index=True)
            ratio = both.nunique() / len(both)
            if len(both) >= 20 and ratio >= unique_ratio:
                out[col] = f"near-unique: {ratio:.0%} of the values are distinct"
    missing = sorted(drop_set - set(kinds))
    if missing:
        raise DataError(
            f"columns to drop are not shared by both frames: {missing}", field=missing[0]
        )
    return out


def encode_frames(
    reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, ColumnKind]
) -> tuple[npt.NDArray[np.float64], list[int]]:
    """Both frames stacked (reference rows first) as one float matrix, and the categorical columns.

    Categorical columns become ordinal codes over the union of both frames' categories (so a
    category new in the current data gets a code of its own), missing values NaN; datetimes
    become epoch seconds. Tree models read the codes as categories (LightGBM) or as split
    points (others), which is all a drift classifier needs.

    >>> X, cats = encode_frames(
    ...     pd.DataFrame({"a": [1.0], "c": ["x"]}), pd.DataFrame({"a": [2.0], "c": ["y"]}),
    ...     {"a": "numeric", "c": "categorical"})
    >>> X.tolist(), cats
    ([[1.0, 0.0], [2.0, 1.0]], [1])
    """
    cols, cats = [], []
    for j, (col, kind) in enumerate(kinds.items()):
        both = pd.concat([reference[col], current[col]], ignore_index=True)
        if kind == "categorical":
            labels = both.astype(object).map(str).where(both.notna(), None)
            codes = pd.Categorical(labels).codes.astype(np.float64)
            codes[codes < 0] = np.nan
            cols.append(codes)
            cats.append(j)
        elif kind == "datetime":
            stamps = pd.to_datetime(both, utc=True)
            secs = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
            cols.append(np.asarray(secs, dtype=np.float64))
        else:
            values = pd.to_numeric(both, errors="coerce").astype("float64")
            cols.append(np.asarray(values, dtype=np.float64))
    return np.column_stack(cols), cats


def auc_null_p_value(auc: float, n0: int, n1: int, *, variance_inflation: float = 1.0) -> float:
    """One-sided p-value of an AUC against 0.5: variance ``c (n0 + n1 + 1) / (12 n0 n1)``.

    ``c = variance_inflation`` is 1 for a fixed scorer on fresh data and 2 for cross-fitted
    out-of-fold scores (see the module docstring).

    >>> round(auc_null_p_value(0.5, 100, 100), 3), auc_null_p_value(0.6, 1000, 1000) < 1e-10
    (0.5, True)
    """
    sd = math.sqrt(variance_inflation * (n0 + n1 + 1) / (12.0 * n0 * n1))
    return float(stats.norm.sf((auc - 0.5) / sd))


def roc_auc(y: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """ROC AUC as the Mann–Whitney statistic (ties count one half); NaN with one class only.

    The same number as ``sklearn.metrics.roc_auc_score``, without its input validation, which
    costs more than the ranking itself in the permutation loops here.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), roc_auc([0, 1], [0.5, 0.5])
    (0.75, 0.5)
    """
    labels = np.asarray(y).astype(bool)
    n1 = int(labels.sum())
    n0 = len(labels) - n1
    if n0 == 0 or n1 == 0:
        return math.nan
    ranks = stats.rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


class AdversarialValidation(Params):
    """Drift test and drift ranking by a classifier that separates current from reference rows.

    Parameters (stored as given, scikit-learn style; checked in :meth:`fit`):

    model: ``"lightgbm"`` (100 depth-3 trees at rate 0.05, at least 50 rows a leaf, ``n_jobs``
        threads, categorical columns as LightGBM categories) or any scikit-learn classifier
        with ``predict_proba`` (cloned per fit; categorical columns reach it as ordinal codes,
        missing values as NaN).
    n_splits: folds of the cross-fitting.
    alpha: significance level of the AUC test; ``drift_`` is ``p_value_ < alpha``.
    null: ``"analytic"`` (normal approximation) or ``"permutation"`` (refits).
    variance_inflation: factor on the Mann–Whitney variance for ``null="analytic"`` (2 for
        cross-fitted scores; see the module docstring).
    n_permutations: label permutations for ``null="permutation"``.
    n_repeats: shuffles per feature and fold for the permutation importance.
    min_importance, min_share: a feature is listed in ``drifted_features_`` when shuffling it
        costs more than ``max(min_importance, min_share * (auc_ - 0.5))`` held-out AUC. The
        share rule is there because a feature the model uses but that did not move still has
        a small positive importance (shuffling it adds noise to the scores): measured on one
        shifted feature among five, the others cost up to about a sixth of the AUC excess.
    max_samples: rows kept per frame (a seeded random sample beyond that), to bound the cost.
    leak_name_pattern, leak_unique_ratio, leak_monotonic, drop_columns, keep_columns: the rules of
        :func:`detect_leaky_columns`.
    n_jobs: LightGBM threads.
    seed: folds, subsampling, permutations and the model's own randomness.

    Learned: ``auc_``, ``p_value_``, ``drift_``, ``fold_aucs_``, ``null_aucs_`` (permutation
    null only), ``feature_names_in_`` (the modelled columns), ``leaky_columns_`` (``{column:
    reason}``, dropped from the model), ``importances_`` (a DataFrame ``feature, importance,
    std`` (mean and spread over folds of the held-out AUC lost when the column is shuffled),
    sorted by importance, or ``None`` when there was no drift: features are ranked only
    after the AUC test says there is something to explain), ``drifted_features_``,
    ``n_reference_``, ``n_current_``.

    >>> rng = np.random.default_rng(0)
    >>> ref = pd.DataFrame({"x": rng.normal(size=400), "y": rng.normal(size=400)})
    >>> cur = pd.DataFrame({"x": rng.normal(1.0, size=400), "y": rng.normal(size=400)})
    >>> av = AdversarialValidation(seed=0).fit(ref, cur)
    >>> bool(av.drift_), av.drifted_features_
    (True, ['x'])
    """

    def __init__(
        self,
        model: str | Any = "lightgbm",
        *,
        n_splits: int = 5,
        alpha: float = 0.05,
        null: Literal["analytic", "permutation"] = "analytic",
        variance_inflation: float = 2.0,
        n_permutations: int = 99,
        n_repeats: int = 5,
        min_importance: float = 0.005,
        min_share: float = 0.25,
        max_samples: int | None = 50_000,
        leak_name_pattern: str | None = DEFAULT_LEAK_PATTERN,
        leak_unique_ratio: float | None = 0.95,
        leak_monotonic: bool = True,
        drop_columns: Sequence[str] = (),
        keep_columns: Sequence[str] = (),
        n_jobs: int = 1,
        seed: int = 0,
    ) -> None:
        self.model = model
        self.n_splits = n_splits
        self.alpha = alpha
        self.null = null
        self.variance_inflation = variance_inflation
        self.n_permutations = n_permutations
        self.n_repeats = n_repeats
        self.min_importance = min_importance
        self.min_share = min_share
        self.max_samples = max_samples
        self.leak_name_pattern = leak_name_pattern
        self.leak_unique_ratio = leak_unique_ratio
        self.leak_monotonic = leak_monotonic
        self.drop_columns = drop_columns
        self.keep_columns = keep_columns
        self.n_jobs = n_jobs
        self.seed = seed

    # -- fitting ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        if not isinstance(self.n_splits, int) or self.n_splits < 2:
            raise ConfigError(f"n_splits must be an int >= 2, got {self.n_splits!r}")
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.null not in ("analytic", "permutation"):
            raise ConfigError(f"null must be 'analytic' or 'permutation', got {self.null!r}")
        if self.null == "permutation" and self.n_permutations < 1:
            raise ConfigError(f"n_permutations must be >= 1, got {self.n_permutations}")
        if self.variance_inflation <= 0:
            raise ConfigError(f"variance_inflation must be > 0, got {self.variance_inflation}")
        if self.n_repeats < 1:
            raise ConfigError(f"n_repeats must be >= 1, got {self.n_repeats}")
        if self.max_samples is not None and self.max_samples < self.n_splits:
            raise ConfigError(f"max_samples must be >= n_splits, got {self.max_samples}")
        if isinstance(self.model, str) and self.model != "lightgbm":
            raise ConfigError(
                f"model must be 'lightgbm' or a scikit-learn classifier, got {self.model!r}"
            )
        if not isinstance(self.model, str) and not hasattr(self.model, "predict_proba"):
            raise ConfigError(f"model {type(self.model).__name__} has no predict_proba")

    def _make_model(self, seed: int) -> Any:
        if isinstance(self.model, str):
            import lightgbm

            # Drift signals are usually weak, and a flexible model spends its variance on noise:
            # on seeded synthetic data, 15-leaf trees at rate 0.1 found a 0.25-sigma mean shift
            # in 44% of runs, these depth-3 trees in 80%, with no more false flags.
            return lightgbm.LGBMClassifier(
                n_estimators=100,
                learning_rate=0.05,
                max_depth=3,
                num_leaves=8,
                min_child_samples=50,
                subsample=0.8,
                subsample_freq=1,
                num_threads=self.n_jobs,
                random_state=seed,
                verbose=-1,
            )
        from sklearn.base import clone

        return clone(self.model)

    def _fit_one(
        self,
        X: npt.NDArray[np.float64],
        y: npt.NDArray[np.integer[Any]],
        cats: list[int],
        seed: int,
    ) -> Any:
        model = self._make_model(seed)
        if isinstance(self.model, str):
            model.fit(X, y, categorical_feature=cats or "auto")
        else:
            model.fit(X, y)
        return model

    def _cross_fit(
        self,
        X: npt.NDArray[np.float64],
        y: npt.NDArray[np.integer[Any]],
        cats: list[int],
        seed: int,
    ) -> tuple[npt.NDArray[np.float64], list[tuple[Any, npt.NDArray[np.intp]]]]:
        from sklearn.model_selection import StratifiedKFold

        folds = StratifiedKFold(self.n_splits, shuffle=True, random_state=seed)
        oof = np.empty(len(y), dtype=np.float64)
        fitted = []
        for k, (train, test) in enumerate(folds.split(X, y)):
            model = self._fit_one(X[train], y[train], cats, seed + k)
            oof[test] = model.predict_proba(X[test])[:, 1]
            fitted.append((model, test))
        return oof, fitted

    def fit(self, reference: pd.DataFrame, current: pd.DataFrame) -> AdversarialValidation:
        """Test whether ``current`` differs from ``reference`` on their shared columns."""
        self._check_params()
        kinds = common_columns(reference, current)
        self.leaky_columns_ = detect_leaky_columns(
            reference,
            current,
            name_pattern=self.leak_name_pattern,
            unique_ratio=self.leak_unique_ratio,
            monotonic=self.leak_monotonic,
            drop=self.drop_columns,
            keep=self.keep_columns,
        )
        features = {c: k for c, k in kinds.items() if c not in self.leaky_columns_}
        if not features:
            raise DataError(
                "every shared column was flagged as an id, timestamp or row number "
                f"({self.leaky_columns_}); pass keep_columns to model some of them anyway"
            )
        rng = np.random.default_rng(self.seed)
        ref, cur = self._sample(reference, rng), self._sample(current, rng)
        for name, frame in (("reference", ref), ("current", cur)):
            if len(frame) < self.n_splits:
                raise DataError(
                    f"{len(frame)} rows: need at least n_splits={self.n_splits} per frame",
                    source=name,
                )
        X, cats = encode_frames(ref, cur, features)
        y = np.r_[np.zeros(len(ref), np.int8), np.ones(len(cur), np.int8)]
        oof, fitted = self._cross_fit(X, y, cats, self.seed)
        self.feature_names_in_ = list(features)
        self.n_reference_, self.n_current_ = len(ref), len(cur)
        self.auc_ = float(roc_auc(y, oof))
        self.fold_aucs_ = [float(roc_auc(y[test], oof[test])) for _, test in fitted]
        self.null_aucs_: npt.NDArray[np.float64] | None = None
        if self.null == "analytic":
            self.p_value_ = auc_null_p_value(
                self.auc_, len(ref), len(cur), variance_inflation=self.variance_inflation
            )
        else:
            null = np.empty(self.n_permutations)
            for b in range(self.n_permutations):
                y_perm = rng.permutation(y)
                oof_b, _ = self._cross_fit(X, y_perm, cats, self.seed + 1000 * (b + 1))
                null[b] = roc_auc(y_perm, oof_b)
            self.null_aucs_ = null
            self.p_value_ = float((1 + np.sum(null >= self.auc_)) / (1 + len(null)))
        self.drift_ = bool(self.p_value_ < self.alpha)
        self.importances_: pd.DataFrame | None = None
        self.drifted_features_: list[str] = []
        if self.drift_:
            self.importances_ = self._permutation_importance(X, y, fitted, rng)
            imp = self.importances_
            floor = max(self.min_importance, self.min_share * (self.auc_ - 0.5))
            self.drifted_features_ = imp.loc[imp["importance"] > floor, "feature"].tolist()
        return self

    def _sample(self, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        if self.max_samples is None or len(frame) <= self.max_samples:
            return frame
        rows = np.sort(rng.choice(len(frame), size=self.max_samples, replace=False))
        return frame.iloc[rows]

    def _permutation_importance(
        self,
        X: npt.NDArray[np.float64],
        y: npt.NDArray[np.integer[Any]],
        fitted: list[tuple[Any, npt.NDArray[np.intp]]],
        rng: np.random.Generator,
    ) -> pd.DataFrame:
        n_features, n_repeats = X.shape[1], self.n_repeats
        drops = np.empty((n_features, len(fitted) * n_repeats))
        for k, (model, test) in enumerate(fitted):
            X_test, y_test = X[test], y[test]
            base = roc_auc(y_test, model.predict_proba(X_test)[:, 1])
            for j in range(n_features):
                # All shuffles of column j in one predict call: per-call overhead dominates.
                stacked = np.tile(X_test, (n_repeats, 1))
                stacked[:, j] = np.concatenate(
                    [rng.permutation(X_test[:, j]) for _ in range(n_repeats)]
                )
                scores = model.predict_proba(stacked)[:, 1].reshape(n_repeats, len(test))
                for r in range(n_repeats):
                    drops[j, k * n_repeats + r] = base - roc_auc(y_test, scores[r])
        # Repeats within a fold share the model and the rows: the folds are the units of spread.
        per_fold = drops.reshape(n_features, len(fitted), self.n_repeats).mean(axis=2)
        out = pd.DataFrame(
            {
                "feature": self.feature_names_in_,
                "importance": per_fold.mean(axis=1),
                "std": per_fold.std(axis=1, ddof=1),
            }
        )
        return out.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)

    def _check_fitted(self) -> None:
        if not hasattr(self, "auc_"):
            raise NotFittedError(
                "AdversarialValidation is not fitted; call fit(reference, current)"
            )

    def summary(self) -> dict[str, Any]:
        """The learned state as plain JSON-ready values."""
        self._check_fitted()
        imps = None
        if self.importances_ is not None:
            imps = self.importances_.to_dict(orient="records")
        return {
            "auc": self.auc_,
            "p_value": self.p_value_,
            "drift": self.drift_,
            "null": self.null,
            "alpha": self.alpha,
            "fold_aucs": self.fold_aucs_,
            "n_reference": self.n_reference_,
            "n_current": self.n_current_,
            "features": self.feature_names_in_,
            "leaky_columns": dict(self.leaky_columns_),
            "importances": imps,
            "drifted_features": list(self.drifted_features_),
        }
