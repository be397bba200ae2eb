"""Gradient-boosted trees with LightGBM: the light ranking stage.

Two objectives: ``"binary"`` (pointwise log loss; scores are click probabilities, which
calibration after negative downsampling needs) and ``"lambdarank"`` (LambdaMART, Burges 2010:
listwise NDCG-driven gradients within each group; needs group sizes and integer relevance
grades; scores are only comparable within a group).

Dense columns enter as numbers; sparse bucket ids as LightGBM categorical features
(``categorical=True``; a bucket never seen in training goes down the "other" branch of every
categorical split) or as plain numbers (``categorical=False``). The model persists in
LightGBM's own text format (``lightgbm_model.txt``, listed and checksummed in the manifest),
never as a pickle.

Scoring (``predictor="compiled"``, the default) goes through
:class:`~recfunnel.ranking._tree_predict.TreeEnsemble`, flat arrays derived from the booster
after ``fit`` and after ``load`` (never saved) and a numba kernel that returns LightGBM's
scores to the last bit, about 5x faster on the default model (benchmarks/RANKING.md).
``predictor="lightgbm"`` scores with ``Booster.predict``; so does a model the compiled scorer
does not replay (e.g. ``params={"linear_tree": True}``), with a warning.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError
from recfunnel.core.ranker import FloatArray, IntArray, LabelledFeatures, Ranker, RankerFeatures

if TYPE_CHECKING:  # imported when first needed: it imports numba
    from recfunnel.ranking._tree_predict import TreeEnsemble

OBJECTIVES = ("binary", "lambdarank")
PREDICTORS = ("compiled", "lightgbm")
MODEL_FILE = "lightgbm_model.txt"
#: LightGBM's lambdarank refuses larger queries.
MAX_GROUP_SIZE = 10_000
#: LightGBM casts categorical values to int32.
MAX_CATEGORY = 2**31 - 1


class LightGBMRanker(Ranker):
    """LightGBM LambdaMART or binary classifier over dense and hashed sparse columns.

    Parameters: ``objective`` ``"binary" | "lambdarank"``; ``n_estimators`` boosting rounds;
    ``learning_rate``; ``num_leaves``; ``min_child_samples`` rows per leaf; ``reg_lambda`` (L2
    on leaf values); ``categorical`` (sparse columns as LightGBM categories); with ``valid``,
    stop after ``early_stopping_rounds`` rounds without improvement (``None``: never);
    ``seed``; ``n_threads`` for training and for LightGBM's predictor; ``params``: further
    LightGBM parameters (they override the above); ``predictor``: ``"compiled"`` (our numba
    scorer, on the calling thread) or ``"lightgbm"`` (``Booster.predict``), same scores.
    """

    name: ClassVar[str] = "lightgbm"

    booster_: lgb.Booster
    feature_importance_: npt.NDArray[np.float64]
    #: The compiled scorer's arrays; ``None`` when the model is one it does not replay.
    compiled_: TreeEnsemble | None

    def __init__(
        self,
        objective: str = "binary",
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        reg_lambda: float = 0.0,
        categorical: bool = True,
        early_stopping_rounds: int | None = None,
        seed: int = 0,
        n_threads: int = 1,
        params: dict[str, Any] | None = None,
        predictor: str = "compiled",
    ) -> None:
        self.objective = objective
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.categorical = categorical
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.n_threads = n_threads
        self.params = params
        self.predictor = predictor

    @property
    def predicts_probability(self) -> bool:
        return bool(self.objective == "binary")

    def _check_params(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if int(self.n_estimators) <= 0:
            raise ConfigError(f"n_estimators must be positive, got {self.n_estimators}")
        self._check_predictor()

    def _check_predictor(self) -> None:
        if self.predictor not in PREDICTORS:
            raise ConfigError(f"predictor must be one of {PREDICTORS}, got {self.predictor!r}")

    def _lgb_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "objective": self.objective,
            "learning_rate": float(self.learning_rate),
            "num_leaves": int(self.num_leaves),
            "min_child_samples": int(self.min_child_samples),
            "reg_lambda": float(self.reg_lambda),
            "seed": int(self.seed),
            "num_threads": int(self.n_threads),
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if self.objective == "lambdarank":
            params["metric"] = "ndcg"
            params["eval_at"] = [10]
        else:
            params["metric"] = "binary_logloss"
        params.update(self.params or {})
        return params

    def _matrix(self, features: RankerFeatures) -> npt.NDArray[np.floating[Any]]:
        if features.n_sparse == 0:
            return features.dense  # float32 goes to LightGBM without a copy
        # float64 holds bucket ids exactly (float32 only up to 2**24).
        out = np.empty((len(features), features.n_dense + features.n_sparse), np.float64)
        out[:, : features.n_dense] = features.dense
        out[:, features.n_dense :] = features.sparse
        return out

    def _check_labels(
        self, labels: npt.NDArray[np.float64], groups: IntArray | None, what: str
    ) -> None:
        if self.objective == "lambdarank":
            if groups is None:
                raise ConfigError(
                    f"objective 'lambdarank' needs group sizes for the {what} rows "
                    "(groups=[rows of query 1, rows of query 2, ...])"
                )
            if int(groups.max()) > MAX_GROUP_SIZE:
                raise ConfigError(f"{what}: LightGBM's lambdarank takes groups of at most 10000")
            if (labels < 0).any() or (labels != np.round(labels)).any():
                raise ConfigError(f"{what}: lambdarank labels are relevance grades 0, 1, 2, ...")
        elif not np.isin(labels, (0.0, 1.0)).all():
            raise ConfigError(f"{what}: objective 'binary' takes labels 0 and 1")

    def _fit(
        self,
        features: RankerFeatures,
        labels: npt.NDArray[np.float64],
        groups: IntArray | None,
        valid: LabelledFeatures | None,
        sample_weight: npt.NDArray[np.float64] | None,
    ) -> None:
        self._check_labels(labels, groups, "training")
        if (
            self.categorical
            and len(self.sparse_buckets_)
            and self.sparse_buckets_.max() > (MAX_CATEGORY)
        ):
            raise ConfigError("LightGBM categories must be < 2**31; hash into fewer buckets")
        names = [f"dense_{j}" for j in range(features.n_dense)]
        names += [f"sparse_{j}" for j in range(features.n_sparse)]
        categorical = list(range(features.n_dense, len(names))) if self.categorical else []
        dataset_params = {"verbosity": -1, "max_bin": 255}
        train = lgb.Dataset(
            self._matrix(features),
            label=labels,
            group=groups,
            weight=sample_weight,
            feature_name=names,
            categorical_feature=categorical,
            params=dataset_params,
            free_raw_data=True,
        )
        valid_sets, callbacks = [], []
        if valid is not None:
            self._check_labels(valid.labels, valid.groups, "valid")
            valid_sets.append(
                lgb.Dataset(
                    self._matrix(valid.features),
                    label=valid.labels,
                    group=valid.groups,
                    reference=train,
                    params=dataset_params,
                )
            )
            if self.early_stopping_rounds is not None:
                callbacks.append(lgb.early_stopping(int(self.early_stopping_rounds), verbose=False))
        self.booster_ = lgb.train(
            self._lgb_params(),
            train,
            num_boost_round=int(self.n_estimators),
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        self.feature_importance_ = self.booster_.feature_importance("gain").astype(np.float64)
        self._compile()

    def _compile(self) -> None:
        """Derive the compiled scorer from ``booster_`` (after fit and load) and compile its
        kernel, so that the first request is not slow; nothing with ``predictor="lightgbm"``
        (it is derived on the first compiled request if the predictor changes later).

        Built into a local and assigned once: a request in another thread reads either the
        old or the new scorer, never a missing one."""
        if self.predictor != "compiled":
            self.__dict__.pop("compiled_", None)
            return
        from recfunnel.ranking._tree_predict import TreeEnsemble

        try:
            compiled: TreeEnsemble | None = TreeEnsemble.from_booster(self.booster_)
        except ConfigError as err:
            warnings.warn(
                f"{type(self).__name__}: {err}; scoring with LightGBM's own predictor",
                RuntimeWarning,
                stacklevel=3,
            )
            compiled = None
        if compiled is not None:
            compiled.warm_up()
        self.compiled_ = compiled

    @property
    def best_iteration_(self) -> int:
        """Boosting rounds in use (the best one when early stopping ran)."""
        return int(self.booster_.best_iteration or self.booster_.current_iteration())

    def _predict(self, features: RankerFeatures) -> FloatArray:
        self._check_predictor()
        if self.predictor == "compiled":
            if "compiled_" not in self.__dict__:
                self._compile()
            compiled = self.compiled_  # read once
            if compiled is not None:
                return compiled.predict(self._matrix(features)).astype(np.float32)
        scores = self.booster_.predict(self._matrix(features), num_threads=int(self.n_threads))
        return np.asarray(scores, dtype=np.float32)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"feature_importance": self.feature_importance_}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.feature_importance_ = arrays["feature_importance"]

    def _texts(self) -> dict[str, str]:
        return {MODEL_FILE: self.booster_.model_to_string()}

    def _set_texts(self, texts: dict[str, str]) -> None:
        self.booster_ = lgb.Booster(model_str=texts[MODEL_FILE])
        self._compile()
