"""Validation-driven hyper-parameter tuning by Bayesian optimisation (Optuna's TPE).

TPE is a surrogate model (two Parzen densities over good and bad trials) with expected
improvement as the acquisition function (Bergstra et al. 2011). Every trial fits on the train
part and is scored on the validation part only, with the train items masked; the test part is
never seen here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from recfunnel.candidates import generator_class, make_generator
from recfunnel.core.errors import ConfigError
from recfunnel.core.generator import SearchSpace
from recfunnel.data.splits import Split
from recfunnel.evaluation.harness import FullRanking


@dataclass
class TuningResult:
    model: str
    metric: str
    best_params: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "objective": f"{self.metric} on the validation split (train items masked)",
            "sampler": "optuna TPE (Bayesian optimisation, expected improvement)",
            "best_params": self.best_params,
            "best_value": self.best_value,
            "n_trials": len(self.trials),
            "seconds": self.seconds,
            "trials": self.trials,
        }


def _suggest(trial: Any, name: str, spec: tuple[Any, ...]) -> Any:
    kind = spec[0]
    if kind == "categorical":
        return trial.suggest_categorical(name, list(spec[1]))
    if kind not in ("int", "float") or len(spec) != 4:
        raise ConfigError(f"bad search space entry {name}={spec!r}")
    low, high, scale = spec[1], spec[2], spec[3]
    log = scale == "log"
    if kind == "int":
        return trial.suggest_int(name, int(low), int(high), log=log)
    return trial.suggest_float(name, float(low), float(high), log=log)


def tune(
    model: str,
    split: Split,
    *,
    n_trials: int = 20,
    metric: str = "ndcg@10",
    seed: int = 0,
    fixed_params: Mapping[str, Any] | None = None,
    search_space: SearchSpace | None = None,
    user_features: pd.DataFrame | None = None,
    item_features: pd.DataFrame | None = None,
    progress: bool = False,
) -> TuningResult:
    """Search ``model``'s hyper-parameters (its ``search_space`` unless given) on ``split.valid``.

    Models that early-stop receive the validation part as well, as RecBole does.
    """
    import optuna

    if len(split.valid) == 0:
        raise ConfigError("tuning needs a validation part: use a 3-way split, e.g. ro:0.8,0.1,0.1")
    space = dict(search_space if search_space is not None else generator_class(model).search_space)
    fixed = dict(fixed_params or {})
    for name in fixed:
        space.pop(name, None)
    if not space:
        raise ConfigError(f"model {model!r} declares no hyper-parameters to tune")
    protocol = FullRanking(split.valid, train=split.train)
    trials: list[dict[str, Any]] = []
    started = time.perf_counter()

    def objective(trial: Any) -> float:
        params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
        t0 = time.perf_counter()
        generator = make_generator(model, **fixed, **params).fit(
            split.train,
            valid=split.valid,
            user_features=user_features,
            item_features=item_features,
        )
        value = protocol.evaluate(generator, ks=(int(metric.split("@")[1]),), metrics=[metric])
        score = value.mean()[metric]
        trials.append({"params": params, "value": score, "seconds": time.perf_counter() - t0})
        return score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials, show_progress_bar=progress)
    return TuningResult(
        model=model,
        metric=metric,
        best_params={**fixed, **study.best_params},
        best_value=float(study.best_value),
        trials=trials,
        seconds=time.perf_counter() - started,
    )
