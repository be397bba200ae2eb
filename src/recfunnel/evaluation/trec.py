"""Score external TREC-style runs, like trec_eval or ranx.

qrels lines: ``query 0 doc relevance``; run lines: ``query Q0 doc rank score tag``
(whitespace separated). As trec_eval does, the rank column is ignored: documents are ordered by
score descending, then document id descending. Queries absent from the qrels are ignored;
queries with no relevant document are skipped; queries with relevant documents but absent from
the run are skipped (``missing="skip"``, trec_eval's default) or scored 0 (``missing="zero"``,
trec_eval ``-c``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.evaluation.metrics import MetricOptions, parse_metric, ranking_metrics


def _read_columns(
    path: str | os.PathLike[str], names: tuple[str, ...], numeric: tuple[str, ...]
) -> pd.DataFrame:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("file not found", source=str(p)) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason})", source=str(p)) from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split()
        if len(fields) != len(names):
            raise DataError(
                f"expected {len(names)} fields ({' '.join(names)}), found {len(fields)}",
                source=str(p),
                line=lineno,
            )
        for name in numeric:
            value = fields[names.index(name)]
            try:
                float(value)
            except ValueError:
                raise DataError(
                    f"{value!r} is not a number", source=str(p), line=lineno, field=name
                ) from None
        rows.append(fields)
    if not rows:
        raise DataError("file has no data lines", source=str(p))
    frame = pd.DataFrame(rows, columns=list(names))
    for name in numeric:
        frame[name] = frame[name].astype(np.float64)
    return frame


def read_qrels(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Columns ``query``, ``doc``, ``relevance`` (a later duplicate judgement wins)."""
    df = _read_columns(path, ("query", "iteration", "doc", "relevance"), ("relevance",))
    return df.drop_duplicates(["query", "doc"], keep="last")[["query", "doc", "relevance"]]


def read_run(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Columns ``query``, ``doc``, ``score`` (a duplicate document keeps its first line)."""
    df = _read_columns(path, ("query", "q0", "doc", "rank", "score", "tag"), ("rank", "score"))
    return df.drop_duplicates(["query", "doc"], keep="first")[["query", "doc", "score"]]


@dataclass(frozen=True)
class RunEvaluation:
    queries: list[str]
    per_query: dict[str, npt.NDArray[np.float64]]

    def mean(self) -> dict[str, float]:
        return {k: float(v.mean()) if len(v) else float("nan") for k, v in self.per_query.items()}


def evaluate_run(
    qrels: pd.DataFrame,
    run: pd.DataFrame,
    metrics: list[str],
    *,
    options: MetricOptions | None = None,
    missing: str = "skip",
) -> RunEvaluation:
    """Per-query metric values of ``run`` against ``qrels`` (frames from the readers above).

    >>> q = pd.DataFrame({"query": ["1", "1"], "doc": ["a", "b"], "relevance": [1.0, 0.0]})
    >>> r = pd.DataFrame({"query": ["1", "1"], "doc": ["a", "b"], "score": [1.0, 1.0]})
    >>> evaluate_run(q, r, ["mrr@10"]).mean()  # tie: doc id descending puts b first
    {'mrr@10': 0.5}
    """
    if missing not in ("skip", "zero"):
        raise ConfigError(f"missing must be 'skip' or 'zero', got {missing!r}")
    opts = options or MetricOptions.trec()
    kmax = max(parse_metric(m)[1] for m in metrics)
    relevant = qrels[qrels["relevance"] > 0]
    judged = sorted(relevant["query"].unique().tolist())
    in_run = set(run["query"].unique().tolist())
    queries = [q for q in judged if q in in_run or missing == "zero"]
    qpos = {q: i for i, q in enumerate(queries)}

    ranked = run[run["query"].isin(qpos)].sort_values(
        ["query", "score", "doc"], ascending=[True, False, False], kind="mergesort"
    )
    ranked = ranked.assign(rank=ranked.groupby("query").cumcount())
    ranked = ranked[ranked["rank"] < kmax]
    ranked = ranked.merge(qrels, on=["query", "doc"], how="left")
    rel = np.zeros((len(queries), kmax))
    rows = ranked["query"].map(qpos).to_numpy()
    rel[rows, ranked["rank"].to_numpy()] = ranked["relevance"].fillna(0.0).to_numpy()
    n_returned = np.bincount(rows, minlength=len(queries))

    rel_sorted = relevant[relevant["query"].isin(qpos)].sort_values(
        ["query", "relevance"], ascending=[True, False]
    )
    rel_sorted = rel_sorted.assign(rank=rel_sorted.groupby("query").cumcount())
    n_rel = np.bincount(rel_sorted["query"].map(qpos).to_numpy(), minlength=len(queries))
    top = rel_sorted[rel_sorted["rank"] < kmax]
    ideal = np.zeros((len(queries), kmax))
    ideal[top["query"].map(qpos).to_numpy(), top["rank"].to_numpy()] = top["relevance"].to_numpy()
    values = ranking_metrics(
        rel, n_rel, metrics, ideal_rel=ideal, n_returned=n_returned, options=opts
    )
    return RunEvaluation(queries=queries, per_query=values)
