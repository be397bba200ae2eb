"""An offline experiment: filter, split, fit each model on train, evaluate on test with the
RecBole protocol (train and valid items masked), and report with uncertainty."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from recfunnel.candidates import generator_class, make_generator
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.data.splits import make_split
from recfunnel.evaluation.harness import DEFAULT_METRICS, TieRule, evaluate
from recfunnel.evaluation.metrics import MetricOptions
from recfunnel.evaluation.report import EvaluationReport, ModelEntry
from recfunnel.pipeline.tuning import tune


def run_experiment(
    interactions: InteractionMatrix,
    *,
    dataset: str,
    models: Sequence[str],
    split: str = "ro:0.8,0.1,0.1",
    seed: int = 2020,
    ks: Sequence[int] = (10, 20),
    metrics: Sequence[str] = DEFAULT_METRICS,
    options: MetricOptions | None = None,
    ties: TieRule = "index",
    n_bootstrap: int = 1000,
    model_params: Mapping[str, Mapping[str, Any]] | None = None,
    user_features: pd.DataFrame | None = None,
    item_features: pd.DataFrame | None = None,
    tune_trials: int = 0,
    progress: bool = False,
) -> EvaluationReport:
    """Fit and evaluate ``models`` (registry names) on one split of ``interactions``.

    Models see the train part, the validation part (for early stopping and, with
    ``tune_trials`` > 0, Bayesian hyper-parameter search) and the side tables; the test part is
    used for nothing but the final evaluation."""
    opts = options or MetricOptions()
    parts = make_split(interactions, split, seed=seed)
    params = {m: dict((model_params or {}).get(m, {})) for m in models}
    tuning: dict[str, Any] = {}
    if tune_trials > 0:
        primary = f"{metrics[0]}@{ks[0]}" if "@" not in metrics[0] else metrics[0]
        for m in models:
            if not generator_class(m).search_space:
                continue
            result = tune(
                m,
                parts,
                n_trials=tune_trials,
                metric=primary,
                seed=seed,
                fixed_params=params[m],
                user_features=user_features,
                item_features=item_features,
                progress=progress,
            )
            params[m] = result.best_params
            tuning[m] = result.to_dict()
    generators = [make_generator(m, **params[m]) for m in models]
    report = EvaluationReport(
        dataset=dataset,
        split=split,
        seed=seed,
        protocol={
            "mode": "full ranking over all items",
            "masked_at_test": ["train", "valid"],
            "users": "users with at least one test item; plain mean over users",
            "relevance": "binary (every test interaction is relevant)",
            "ties": ties,
            "gain": opts.gain,
            "map_denominator": opts.map_denominator,
            "precision_denominator": opts.precision_denominator,
            "ci": f"percentile bootstrap over users, {n_bootstrap} resamples",
        },
        data={
            "users": interactions.n_users,
            "items": interactions.n_items,
            "interactions": len(interactions),
            **parts.describe(),
        },
        n_bootstrap=n_bootstrap,
        primary_metric=f"{metrics[0]}@{ks[0]}" if "@" not in metrics[0] else metrics[0],
    )
    for name, generator in zip(models, generators, strict=True):
        started = time.perf_counter()
        generator.fit(
            parts.train,
            valid=parts.valid if len(parts.valid) else None,
            user_features=user_features,
            item_features=item_features,
        )
        fit_seconds = time.perf_counter() - started
        result = evaluate(
            generator,
            test=parts.test,
            train=parts.train,
            exclude=[parts.valid],
            ks=ks,
            metrics=metrics,
            options=opts,
            ties=ties,
            curves_to=max(max(ks), 20),
            progress=progress,
        )
        report.models[name] = ModelEntry(
            result, fit_seconds, generator.get_params(), tuning=tuning.get(name)
        )
    return report
