"""Evaluation reports: a JSON document (stable keys), a printed table and a metric@k plot."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recfunnel.core.ids import write_json_atomic
from recfunnel.evaluation.bootstrap import paired_test
from recfunnel.evaluation.harness import EvaluationResult


@dataclass
class ModelEntry:
    result: EvaluationResult
    fit_seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] | None = None


@dataclass
class EvaluationReport:
    """Everything ``recfunnel evaluate`` reports. ``to_dict`` has the stable JSON layout:
    ``{"dataset", "split", "seed", "models": {name: {"metrics", "ci95", "fit_seconds",
    "eval_seconds", ...}}, ...}``."""

    dataset: str
    split: str
    seed: int
    protocol: dict[str, Any]
    data: dict[str, Any]
    models: dict[str, ModelEntry] = field(default_factory=dict)
    n_bootstrap: int = 1000
    primary_metric: str = "ndcg@10"

    def comparisons(self) -> list[dict[str, Any]]:
        """Paired tests on the primary metric for every pair of models (same users)."""
        names = list(self.models)
        out = []
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                ra, rb = self.models[a].result, self.models[b].result
                if self.primary_metric not in ra.per_user or self.primary_metric not in rb.per_user:
                    continue
                cmp = paired_test(
                    ra.per_user[self.primary_metric],
                    rb.per_user[self.primary_metric],
                    metric=self.primary_metric,
                    n_resamples=self.n_bootstrap,
                    seed=self.seed,
                )
                out.append({"a": a, "b": b, **cmp.to_dict()})
        return out

    def to_dict(self) -> dict[str, Any]:
        models = {}
        for name, entry in self.models.items():
            r = entry.result
            models[name] = {
                "metrics": r.mean(),
                "ci95": {
                    k: list(v)
                    for k, v in r.ci95(n_resamples=self.n_bootstrap, seed=self.seed).items()
                },
                "coverage": r.coverage,
                "fit_seconds": entry.fit_seconds,
                "eval_seconds": r.seconds,
                "n_users": len(r.users),
                "params": entry.params,
            }
            if entry.tuning is not None:
                models[name]["tuning"] = entry.tuning
        return {
            "dataset": self.dataset,
            "split": self.split,
            "seed": self.seed,
            "protocol": self.protocol,
            "data": self.data,
            "models": models,
            "comparisons": self.comparisons(),
        }

    def write_json(
        self, path: str | os.PathLike[str], payload: dict[str, Any] | None = None
    ) -> None:
        write_json_atomic(Path(path), payload if payload is not None else self.to_dict())

    def render_table(self, payload: dict[str, Any] | None = None) -> Any:
        """A rich ``Table``: one row per model, one column per metric at the smallest cut-off
        (mean [95% CI]), then coverage and seconds; every cut-off is in the JSON report. Rows
        per model keep the table readable however many models a run compares."""
        from rich.table import Table

        doc = payload if payload is not None else self.to_dict()
        table = Table(title=f"{doc['dataset']} · split {doc['split']} · seed {doc['seed']}")
        models = doc["models"]
        first = next(iter(models.values())) if models else {"metrics": {}, "coverage": {}}
        names = list(first["metrics"])
        ks = sorted({int(n.split("@")[1]) for n in names if "@" in n})
        shown = [n for n in names if "@" not in n or int(n.split("@")[1]) == ks[0]] if ks else names
        covered = [n for n in first.get("coverage", {}) if not ks or n.endswith(f"@{ks[0]}")]
        table.add_column("model")
        for n in shown:
            table.add_column(f"{n}\nmean [95% CI]", justify="right")
        for n in covered:
            table.add_column(n, justify="right")
        table.add_column("fit s", justify="right")
        table.add_column("eval s", justify="right")
        for model, entry in models.items():
            cells = []
            for n in shown:
                lo, hi = entry["ci95"][n]
                cells.append(f"{entry['metrics'][n]:.4f} [{lo:.4f}, {hi:.4f}]")
            cells += [f"{entry['coverage'][n]:.4f}" for n in covered]
            cells += [f"{entry['fit_seconds']:.2f}", f"{entry['eval_seconds']:.2f}"]
            table.add_row(model, *cells)
        return table

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """metric@k curves (k = 1..K) for each model, one panel per metric, as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        metrics = ("ndcg", "recall", "precision", "hit")
        fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4))
        for ax, metric in zip(axes, metrics, strict=True):
            for name, entry in self.models.items():
                curve = entry.result.curves.get(metric)
                if curve is not None and len(curve):
                    ax.plot(range(1, len(curve) + 1), curve, marker=".", label=name)
            ax.set_title(f"{metric}@k")
            ax.set_xlabel("k")
            ax.grid(alpha=0.3)
        axes[0].legend()
        fig.suptitle(f"{self.dataset}, split {self.split}, seed {self.seed} (full ranking)")
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp.png")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        os.replace(tmp, out)
        return out
