"""Probe ("random bar") feature selection: keep the features that beat the best noise probe.

One noise column appended to the data lets about half of the irrelevant features through, since
each of them beats one noise draw about half the time. So, as in Boruta (Kursa & Rudnicki,
2010), every run appends many probes: a **shadow** of every feature (its values permuted, so
the marginal distribution stays and any link to the target goes) plus ``n_noise`` Gaussian
columns. A tree ensemble is fitted on the widened data and each real feature scores a **hit**
when its importance beats the *best* probe of that run. Shadows are reshuffled and the rows
split afresh every run.

After ``n_runs`` runs an irrelevant feature should have about as many hits as a coin (fewer,
since it must beat the maximum of many probes); a feature the model needs wins every run. The
decision is a two-sided binomial test of ``hits`` against ``n_runs / 2`` per feature, with a
Bonferroni correction over the features tested: ``confirmed`` when significant and above half,
``rejected`` when significant and below, ``tentative`` otherwise.

The best of several hundred probes is a high bar, and a weak but real feature may clear it in
only two runs of three. So, as in Boruta, rejected features leave, and their shadows with them:
while a round rejected something and features are still tentative, another round of
``n_runs`` runs (up to ``max_rounds``) retests the tentative ones against the best of the
remaining probes (the shadows of the confirmed and tentative features, and the noise). Each
round is a fresh binomial test at level ``alpha`` on its own runs; confirmed features stay in
the model. On ``make_classification`` data with 10 informative columns among 200 the weakest
informative column beat the best probe in 13-14 of 20 first-round runs (seeds 0, 1) and in
18-20 of 20 once the rejected columns had left (seeds 0-2; ``benchmarks/probe_selection.py``).

Two importances are measured every run and both are kept:

* ``"gain"``: the total split gain of the feature in the fitted trees (LightGBM) or the mean
  impurity decrease (random forest), on the training part of the rows.
* ``"permutation"``: the held-out loss increase (log loss for classification, squared error
  for regression) when the feature's column is shuffled in the ``test_size`` rows the model
  did not see. A column the trees never split on has exactly zero, so only used columns are
  shuffled.

``importance`` picks the one the hits are counted on; gain is the default (cheaper, and it is
what Boruta uses); permutation importance does not favour high-cardinality columns.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from recfunnel.core.errors import ConfigError, DataError, NotFittedError
from recfunnel.core.params import Params
from recfunnel.selection import _trees

Task = Literal["auto", "classification", "regression"]
FloatArray = npt.NDArray[np.float64]

#: ``task="auto"`` reads a target as classes when it holds integers with at most this many values.
MAX_AUTO_CLASSES = 20


def _encode_features(X: Any) -> tuple[FloatArray, list[str]]:
    """A float matrix and the column names; text/categorical columns become ordinal codes."""
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})[0]
            raise DataError("duplicate column name", field=dup)
        cols = []
        for name, col in zip(names, X.columns, strict=True):
            series = X[col]
            if pd.api.types.is_datetime64_any_dtype(series) or isinstance(
                series.dtype, pd.PeriodDtype
            ):
                raise DataError("datetime column: convert it to a number first", field=name)
            if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
                cols.append(pd.to_numeric(series).astype("float64").to_numpy())
            else:
                # Ordinal codes: a tree splits them as well as it splits one-hot columns, and a
                # shadow of the codes is a shadow of the categories.
                labels = series.astype(object).where(series.notna(), None)
                codes = pd.Categorical(labels.map(lambda v: None if v is None else str(v))).codes
                cols.append(np.where(codes < 0, np.nan, codes).astype(np.float64))
        matrix = np.column_stack(cols) if cols else np.empty((len(X), 0))
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise DataError(f"X must be 2-D (rows x features), got shape {arr.shape}")
        try:
            matrix = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"X holds non-numeric values ({exc}); pass a DataFrame to encode text columns"
            ) from exc
        names = [f"x{j}" for j in range(arr.shape[1])]
    if matrix.shape[1] == 0:
        raise DataError("X has no feature columns")
    bad = np.isinf(matrix).any(axis=0)
    if bad.any():
        raise DataError("infinite values", field=names[int(np.argmax(bad))])
    return np.asarray(matrix, dtype=np.float64), names


def _encode_target(y: Any, task: Task, n_rows: int) -> tuple[FloatArray, str, int]:
    """The target as floats (class indices for classification), the task and the class count."""
    values = y.to_numpy() if isinstance(y, pd.Series | pd.DataFrame) else np.asarray(y)
    values = values.reshape(-1) if values.ndim == 2 and 1 in values.shape else values
    if values.ndim != 1 or len(values) != n_rows:
        raise DataError(f"y must be 1-D with one value per row of X ({n_rows}), got {values.shape}")
    if values.dtype.kind not in "biuf":
        raise DataError(f"y must be numeric, got dtype {values.dtype}; encode the labels first")
    target = values.astype(np.float64)
    missing = ~np.isfinite(target)
    if missing.any():
        raise DataError(
            f"y has {int(missing.sum())} missing or infinite values (first at row "
            f"{int(np.argmax(missing))})"
        )
    integral = bool(np.all(target == np.round(target)))
    classes, codes = np.unique(target, return_inverse=True)
    if task == "auto":
        task = "classification" if integral and len(classes) <= MAX_AUTO_CLASSES else "regression"
    if task == "classification":
        if len(classes) < 2:
            raise DataError("y has a single class; nothing to select features for")
        return codes.astype(np.float64), task, len(classes)
    if np.ptp(target) == 0:
        raise DataError("y is constant; nothing to select features for")
    return target, task, 0


class ProbeSelector(Params):
    """Boruta-style feature selection against shadow and noise probes, with a binomial test.

    Parameters (stored as given, scikit-learn style; checked in :meth:`fit`):

    estimator: ``"lightgbm"`` (gradient-boosted trees) or ``"random_forest"`` (scikit-learn).
    importance: ``"gain"`` or ``"permutation"``: the importance the hits are counted on (both
        are measured and kept; see the module docstring).
    n_runs: runs (fits) per round, each with freshly shuffled shadows and a fresh row split.
    max_rounds: rounds at most; a round follows only one that rejected something.
    n_noise: Gaussian noise probes added next to the shadows each run.
    alpha: family-wise level of the binomial tests.
    correction: ``"bonferroni"`` (over the features) or ``"none"``.
    task: ``"auto"`` (integer targets with at most 20 values are classes), ``"classification"``
        or ``"regression"``.
    n_estimators: trees per fit.
    test_size: share of the rows held out each run for the permutation importance.
    n_jobs: threads of the tree ensemble.
    seed: shadows, noise, splits and the models' own randomness.

    Learned: ``feature_names_in_``, ``n_features_in_``, ``n_rows_``, ``task_``, ``n_classes_``
    (0 for regression), ``n_rounds_``, ``round_of_run_``, ``importances_`` (``{"gain": runs x
    features, "permutation": runs x features}``, NaN where a feature had been rejected),
    ``probe_max_`` (the best probe per run, same keys), and per feature, from the round that
    decided it (the last one for tentative features): ``hits_`` (out of ``n_runs``),
    ``p_values_`` (raw two-sided binomial), ``p_adjusted_``, ``decided_in_round_``;
    ``decision_`` (``"confirmed"``/``"tentative"``/``"rejected"``), ``confirmed_``,
    ``tentative_``, ``rejected_`` (names, in column order), ``support_`` (boolean mask of the
    confirmed).

    Two informative columns among four noise ones:

    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(400, 6)), columns=list("abcdef"))
    >>> y = (X["a"] + X["b"] > 0).astype(int)
    >>> sel = ProbeSelector(n_runs=12, n_estimators=50, seed=0).fit(X, y)
    >>> sel.confirmed_, sel.rejected_, sel.hits_.tolist()
    (['a', 'b'], ['c', 'd', 'e', 'f'], [12, 12, 0, 0, 1, 0])
    >>> list(sel.transform(X).columns)
    ['a', 'b']
    """

    def __init__(
        self,
        estimator: Literal["lightgbm", "random_forest"] = "lightgbm",
        *,
        importance: Literal["gain", "permutation"] = "gain",
        n_runs: int = 20,
        max_rounds: int = 3,
        n_noise: int = 5,
        alpha: float = 0.05,
        correction: Literal["bonferroni", "none"] = "bonferroni",
        task: Task = "auto",
        n_estimators: int = 100,
        test_size: float = 0.25,
        n_jobs: int = 1,
        seed: int = 0,
    ) -> None:
        self.estimator = estimator
        self.importance = importance
        self.n_runs = n_runs
        self.max_rounds = max_rounds
        self.n_noise = n_noise
        self.alpha = alpha
        self.correction = correction
        self.task = task
        self.n_estimators = n_estimators
        self.test_size = test_size
        self.n_jobs = n_jobs
        self.seed = seed

    def _check_params(self) -> None:
        choices: dict[str, tuple[str, ...]] = {
            "estimator": ("lightgbm", "random_forest"),
            "importance": ("gain", "permutation"),
            "correction": ("bonferroni", "none"),
            "task": ("auto", "classification", "regression"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name, low in (
            ("n_runs", 1),
            ("max_rounds", 1),
            ("n_noise", 0),
            ("n_estimators", 1),
            ("n_jobs", 1),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0.0 < self.test_size < 1.0:
            raise ConfigError(f"test_size must be in (0, 1), got {self.test_size}")

    # -- one run ---------------------------------------------------------------------------
    def _make_model(self, seed: int) -> Any:
        classify = self.task_ == "classification"
        if self.estimator == "lightgbm":
            import lightgbm

            cls = lightgbm.LGBMClassifier if classify else lightgbm.LGBMRegressor
            # Column subsampling gives every column, weak ones included, trees of its own, as
            # in a random forest; without it the strongest columns take nearly all the splits.
            return cls(
                n_estimators=self.n_estimators,
                learning_rate=0.1,
                num_leaves=15,
                min_child_samples=20,
                subsample=0.8,
                subsample_freq=1,
                colsample_bytree=0.5,
                max_bin=63,
                num_threads=self.n_jobs,
                deterministic=True,
                force_col_wise=True,
                random_state=seed,
                verbose=-1,
            )
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        forest = RandomForestClassifier if classify else RandomForestRegressor
        return forest(
            n_estimators=self.n_estimators,
            max_features="sqrt",
            min_samples_leaf=3,
            n_jobs=self.n_jobs,
            random_state=seed,
        )

    def _gain(self, model: Any) -> FloatArray:
        if self.estimator == "lightgbm":
            return np.asarray(model.booster_.feature_importance("gain"), dtype=np.float64)
        return np.asarray(model.feature_importances_, dtype=np.float64)

    def _loss(self, pred: FloatArray, y: FloatArray) -> float:
        """Mean log loss (``pred``: class probabilities) or squared error (``pred``: values)."""
        if self.task_ == "classification":
            picked = pred[np.arange(len(y)), y.astype(np.intp)]
            return float(-np.log(np.clip(picked, 1e-15, 1.0)).mean())
        return float(((pred.reshape(len(y), -1)[:, 0] - y) ** 2).mean())

    def _predict(self, model: Any, X: FloatArray) -> FloatArray:
        if self.task_ == "classification":
            return np.asarray(model.predict_proba(X), dtype=np.float64)
        return np.asarray(model.predict(X), dtype=np.float64)

    def _permutation(
        self, model: Any, X: FloatArray, y: FloatArray, used: FloatArray, rng: np.random.Generator
    ) -> FloatArray:
        """Held-out loss increase when each column is shuffled; zero for unused columns."""
        out = np.zeros(X.shape[1])
        cols = np.flatnonzero(used > 0)
        ensemble = _trees.from_model(model, X.shape[1])
        if ensemble is None:
            base = self._loss(self._predict(model, X), y)
            for j in cols:
                shuffled = X.copy()
                shuffled[:, j] = X[rng.permutation(len(X)), j]
                out[j] = self._loss(self._predict(model, shuffled), y) - base
            return out
        if self.estimator == "random_forest":
            X = X.astype(np.float32).astype(np.float64)  # scikit-learn trees split float32
        outputs = ensemble.outputs(X)
        base = self._loss(ensemble.finish(outputs.sum(axis=0)), y)
        for j in cols:
            column = X[rng.permutation(len(X)), j]
            raw = ensemble.permuted_raw(X, outputs, int(j), column)
            out[j] = self._loss(ensemble.finish(raw), y) - base
        return out

    def _split(
        self, y: FloatArray, rng: np.random.Generator
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        n = len(y)
        n_test = min(n - 2, max(2, round(self.test_size * n)))
        if self.task_ == "classification":
            # Stratified: every class in both parts, shares as in y.
            order = rng.permutation(n)
            ranks = np.empty(n, dtype=np.float64)
            for c in np.unique(y):
                members = order[y[order] == c]
                ranks[members] = (np.arange(len(members)) + rng.random()) / len(members)
            test_mask = np.zeros(n, dtype=bool)
            test_mask[np.argsort(ranks, kind="stable")[:n_test]] = True
            return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
        perm = rng.permutation(n)
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])

    def _run(
        self, X: FloatArray, y: FloatArray, active: npt.NDArray[np.intp], rng: np.random.Generator
    ) -> tuple[FloatArray, FloatArray]:
        """Gain and permutation importance of the active columns, then of their probes."""
        n = len(X)
        real = X[:, active]
        shadows = np.empty_like(real)
        for k in range(real.shape[1]):
            shadows[:, k] = real[rng.permutation(n), k]
        noise = rng.standard_normal((n, self.n_noise))
        wide = np.hstack([real, shadows, noise])
        train, test = self._split(y, rng)
        model = self._make_model(int(rng.integers(2**31 - 1)))
        model.fit(wide[train], y[train])
        gain = self._gain(model)
        perm = self._permutation(model, wide[test], y[test], gain, rng)
        return gain, perm

    def _test(self, hits: npt.NDArray[np.int_]) -> tuple[FloatArray, FloatArray]:
        """Two-sided binomial p-values of hit counts against n_runs / 2, raw and corrected."""
        table = {k: stats.binomtest(int(k), self.n_runs, 0.5).pvalue for k in set(hits.tolist())}
        raw = np.array([table[k] for k in hits.tolist()], dtype=np.float64)
        factor = len(hits) if self.correction == "bonferroni" else 1
        return raw, np.minimum(1.0, raw * factor)

    # -- fitting ---------------------------------------------------------------------------
    def fit(
        self, X: Any, y: Any, *, progress: Callable[[int, int], None] | None = None
    ) -> ProbeSelector:
        """Run rounds of ``n_runs`` probe runs and test every undecided feature's hit count.

        ``X``: a DataFrame (names kept; text and categorical columns become ordinal codes;
        missing values allowed) or a numeric 2-D array (features named ``x0``, ``x1``, ...).
        ``y``: numeric, no missing values. ``progress(runs_done, runs_planned)`` is called
        after each run (``runs_planned`` grows when another round starts).
        """
        self._check_params()
        matrix, names = _encode_features(X)
        n_rows = matrix.shape[0]
        if n_rows < 10:
            raise DataError(f"need at least 10 rows, got {n_rows}")
        target, self.task_, self.n_classes_ = _encode_target(y, self.task, n_rows)
        self.feature_names_in_ = names
        self.n_rows_ = n_rows
        self.n_features_in_ = p = len(names)
        factor = p if self.correction == "bonferroni" else 1
        if 2 * factor * 0.5**self.n_runs >= self.alpha:
            need = int(np.floor(np.log2(2 * factor / self.alpha))) + 1
            warnings.warn(
                f"n_runs={self.n_runs} is too few to decide anything about {p} features at "
                f"alpha={self.alpha} (even {self.n_runs} hits of {self.n_runs} is not "
                f"significant); use n_runs >= {need}",
                RuntimeWarning,
                stacklevel=2,
            )
        rng = np.random.default_rng(self.seed)
        decision = np.full(p, "tentative", dtype=object)
        self.hits_ = np.zeros(p, dtype=np.int_)
        self.p_values_ = np.ones(p)
        self.p_adjusted_ = np.ones(p)
        self.decided_in_round_ = np.zeros(p, dtype=np.int_)
        history: dict[str, list[FloatArray]] = {"gain": [], "permutation": []}
        probe_max: dict[str, list[float]] = {"gain": [], "permutation": []}
        rounds: list[int] = []
        for round_ in range(1, self.max_rounds + 1):
            active = np.flatnonzero(decision != "rejected")
            undecided = np.flatnonzero(decision == "tentative")
            hits = np.zeros(p, dtype=np.int_)
            for run in range(self.n_runs):
                measured = self._run(matrix, target, active, rng)
                for key, values in zip(history, measured, strict=True):
                    row = np.full(p, np.nan)
                    row[active] = values[: len(active)]
                    history[key].append(row)
                    probe_max[key].append(float(values[len(active) :].max()))
                rounds.append(round_)
                bar = probe_max[self.importance][-1]
                hits[active] += history[self.importance][-1][active] > bar
                if progress is not None:
                    progress(len(rounds), len(rounds) - run - 1 + self.n_runs)
            raw, adjusted = self._test(hits[undecided])
            significant = adjusted < self.alpha
            confirm = undecided[significant & (hits[undecided] > self.n_runs / 2)]
            reject = undecided[significant & (hits[undecided] < self.n_runs / 2)]
            self.hits_[undecided] = hits[undecided]
            self.p_values_[undecided], self.p_adjusted_[undecided] = raw, adjusted
            self.decided_in_round_[undecided] = round_
            decision[confirm], decision[reject] = "confirmed", "rejected"
            # Another round helps only if the bar dropped: rejected features take their shadows
            # with them, so the best probe of the next round is a maximum over fewer columns.
            if len(reject) == 0 or not (decision == "tentative").any():
                break
        self.n_rounds_ = rounds[-1]
        self.round_of_run_ = np.array(rounds)
        self.importances_ = {key: np.vstack(rows) for key, rows in history.items()}
        self.probe_max_ = {key: np.array(values) for key, values in probe_max.items()}
        self.decision_ = decision.astype(str)
        self.confirmed_ = [n for n, d in zip(names, decision, strict=True) if d == "confirmed"]
        self.tentative_ = [n for n, d in zip(names, decision, strict=True) if d == "tentative"]
        self.rejected_ = [n for n, d in zip(names, decision, strict=True) if d == "rejected"]
        self.support_ = decision == "confirmed"
        return self

    # -- conveniences ----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "support_"):
            raise NotFittedError("ProbeSelector is not fitted yet; call fit(X, y) first")

    def get_support(
        self, indices: bool = False, *, include_tentative: bool = False
    ) -> npt.NDArray[Any]:
        """Mask (or column indices) of the confirmed features, optionally with the tentative."""
        self._check_fitted()
        mask = self.support_ | (include_tentative & (self.decision_ == "tentative"))
        return np.flatnonzero(mask) if indices else mask

    def transform(self, X: Any) -> Any:
        """The confirmed columns of ``X`` (a DataFrame by name, an array by position)."""
        self._check_fitted()
        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.confirmed_ if c not in X.columns.astype(str)]
            if missing:
                raise DataError("column seen in fit is missing", field=missing[0])
            by_name = {str(c): c for c in X.columns}
            return X[[by_name[c] for c in self.confirmed_]]
        arr = np.asarray(X)
        if arr.ndim != 2 or arr.shape[1] != self.n_features_in_:
            raise DataError(
                f"X must have {self.n_features_in_} columns as in fit, got shape {arr.shape}"
            )
        return arr[:, self.support_]
