"""Online experiments: plan, assign, analyse and interleave.

One module per responsibility, imported in the order an experiment lives:

* :mod:`~recfunnel.experiments.planning`: sample size, power, MDE, duration in whole weeks;
* :mod:`~recfunnel.experiments.assignment`: deterministic hashing of users to variants;
* :mod:`~recfunnel.experiments.analysis`: SRM check, z-test / Welch, lifts and CIs, CUPED;
* :mod:`~recfunnel.experiments.sequential`: mSPRT always-valid p-values, O'Brien–Fleming;
* :mod:`~recfunnel.experiments.interleaving`: team-draft interleaving of two rankers;
* :mod:`~recfunnel.experiments.report`: JSON report and plots over time.

Depends only on ``recfunnel.core`` (and numpy / scipy; matplotlib lazily, in the report).

>>> from recfunnel.experiments import plan_proportions
>>> plan_proportions(0.10, 0.01).n_per_arm
14744
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recfunnel.experiments.analysis import (
        CUPED,
        ExperimentAnalysis,
        LiftResult,
        SRMResult,
        analyze_experiment,
        cuped_ttest,
        proportions_ztest,
        srm_check,
        welch_ttest,
    )
    from recfunnel.experiments.assignment import Assigner, hash_buckets
    from recfunnel.experiments.interleaving import (
        Interleaving,
        PreferenceResult,
        preference_test,
        team_draft,
    )
    from recfunnel.experiments.planning import (
        SamplePlan,
        cohens_h,
        detectable_effect,
        duration_weeks,
        plan_means,
        plan_proportions,
        power,
        proportions_mde,
        sample_size,
    )
    from recfunnel.experiments.report import ExperimentReport, LiftOverTime, build_report
    from recfunnel.experiments.sequential import (
        MixtureSPRT,
        confidence_sequence,
        msprt_p_values,
        msprt_proportions,
        obrien_fleming_bounds,
        obrien_fleming_spending,
    )

# Lazy: ``import recfunnel.experiments.assignment`` (e.g. in a request handler) must not pay
# for scipy.stats and the rest; names load on first access (PEP 562).
_EXPORTS: dict[str, str] = {
    "Assigner": "assignment",
    "CUPED": "analysis",
    "ExperimentAnalysis": "analysis",
    "ExperimentReport": "report",
    "Interleaving": "interleaving",
    "LiftOverTime": "report",
    "LiftResult": "analysis",
    "MixtureSPRT": "sequential",
    "PreferenceResult": "interleaving",
    "SRMResult": "analysis",
    "SamplePlan": "planning",
    "analyze_experiment": "analysis",
    "build_report": "report",
    "cohens_h": "planning",
    "confidence_sequence": "sequential",
    "cuped_ttest": "analysis",
    "detectable_effect": "planning",
    "duration_weeks": "planning",
    "hash_buckets": "assignment",
    "msprt_p_values": "sequential",
    "msprt_proportions": "sequential",
    "obrien_fleming_bounds": "sequential",
    "obrien_fleming_spending": "sequential",
    "plan_means": "planning",
    "plan_proportions": "planning",
    "power": "planning",
    "preference_test": "interleaving",
    "proportions_mde": "planning",
    "proportions_ztest": "analysis",
    "sample_size": "planning",
    "srm_check": "analysis",
    "team_draft": "interleaving",
    "welch_ttest": "analysis",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'recfunnel.experiments' has no attribute {name!r}")
    return getattr(importlib.import_module(f"recfunnel.experiments.{module}"), name)


def __dir__() -> list[str]:
    return sorted(_EXPORTS)


__all__ = [
    "CUPED",
    "Assigner",
    "ExperimentAnalysis",
    "ExperimentReport",
    "Interleaving",
    "LiftOverTime",
    "LiftResult",
    "MixtureSPRT",
    "PreferenceResult",
    "SRMResult",
    "SamplePlan",
    "analyze_experiment",
    "build_report",
    "cohens_h",
    "confidence_sequence",
    "cuped_ttest",
    "detectable_effect",
    "duration_weeks",
    "hash_buckets",
    "msprt_p_values",
    "msprt_proportions",
    "obrien_fleming_bounds",
    "obrien_fleming_spending",
    "plan_means",
    "plan_proportions",
    "power",
    "preference_test",
    "proportions_mde",
    "proportions_ztest",
    "sample_size",
    "srm_check",
    "team_draft",
    "welch_ttest",
]
