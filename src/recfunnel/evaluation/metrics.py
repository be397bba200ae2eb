"""Top-k ranking metrics, vectorised over users.

Definitions (L = ranked list cut at k, R = the user's relevant items, r_i = relevance grade of
the item at rank i, 0 if not relevant; an item is relevant when its grade is > 0):

============  ==========================================================================
precision@k   hits / k  (``precision_denominator="returned"``: hits / len(L))
recall@k      hits / |R|
map@k         sum_{i<=k} [r_i > 0] * P@i / D, D = min(k, |R|) (RecBole, Microsoft
              Recommenders; default) or |R| (``map_denominator="relevant"``: trec_eval
              ``map_cut``, ranx)
ndcg@k        DCG / IDCG, DCG = sum_{i<=k} g(r_i) / log2(i + 1), IDCG over the best k grades
              of R. g = 1[r > 0] (``gain="binary"``, RecBole, default), r (``"linear"``:
              trec_eval ``ndcg_cut``, ranx ``ndcg``) or 2^r - 1 (``"exp"``: Burges)
mrr@k         1 / rank of the first hit within k, else 0
hit@k         1 if any hit within k (trec_eval ``success``)
============  ==========================================================================

Ties in scores are resolved before these functions see a list (see
:mod:`recfunnel.evaluation.ranking`). Users with no relevant item are not scored here; the
harness skips them, as RecBole and trec_eval do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError

METRICS = ("precision", "recall", "map", "ndcg", "mrr", "hit")

Gain = Literal["binary", "linear", "exp"]
MapDenominator = Literal["min", "relevant"]
PrecisionDenominator = Literal["k", "returned"]


@dataclass(frozen=True)
class MetricOptions:
    """The variants of :mod:`definitions <recfunnel.evaluation.metrics>`; defaults match
    RecBole 1.2.1. ``trec()`` gives trec_eval's choices."""

    gain: Gain = "binary"
    map_denominator: MapDenominator = "min"
    precision_denominator: PrecisionDenominator = "k"

    def __post_init__(self) -> None:
        if self.gain not in ("binary", "linear", "exp"):
            raise ConfigError(f"gain must be binary, linear or exp, got {self.gain!r}")
        if self.map_denominator not in ("min", "relevant"):
            raise ConfigError(
                f"map_denominator must be min or relevant, not {self.map_denominator!r}"
            )
        if self.precision_denominator not in ("k", "returned"):
            raise ConfigError(
                f"precision_denominator must be k or returned, not {self.precision_denominator!r}"
            )

    @classmethod
    def trec(cls) -> MetricOptions:
        """trec_eval's definitions: linear gain, MAP over |R|, precision over k."""
        return cls(gain="linear", map_denominator="relevant", precision_denominator="k")


def parse_metric(name: str) -> tuple[str, int]:
    """Split ``"ndcg@10"`` into ``("ndcg", 10)`` with a clear error for bad names.

    >>> parse_metric("NDCG@10")
    ('ndcg', 10)
    >>> parse_metric("ndcg@0")
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.ConfigError: metric 'ndcg@0': k must be a positive integer
    """
    base, sep, k = name.strip().lower().partition("@")
    if base not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; known: {', '.join(METRICS)} (as name@k)")
    if not sep:
        raise ConfigError(f"metric {name!r}: give a cutoff, e.g. {base}@10")
    try:
        kk = int(k)
    except ValueError:
        kk = 0
    if kk <= 0:
        raise ConfigError(f"metric {name!r}: k must be a positive integer")
    return base, kk


def _gain(rel: npt.NDArray[np.float64], gain: Gain) -> npt.NDArray[np.float64]:
    if gain == "binary":
        return (rel > 0).astype(np.float64)
    if gain == "linear":
        return np.maximum(rel, 0.0)
    return np.exp2(np.maximum(rel, 0.0)) - 1.0


def ranking_metrics(
    ranked_rel: npt.ArrayLike,
    n_relevant: npt.ArrayLike,
    metrics: list[str] | tuple[str, ...],
    *,
    ideal_rel: npt.ArrayLike | None = None,
    n_returned: npt.ArrayLike | None = None,
    options: MetricOptions | None = None,
) -> dict[str, npt.NDArray[np.float64]]:
    """Per-user values of ``metrics`` (names like ``"ndcg@10"``).

    ``ranked_rel`` (U x K): relevance grade of the item at each rank (0 = not relevant), for the
    first K >= max k ranks. ``n_relevant`` (U,): |R|, which must be >= 1. ``ideal_rel``
    (U x K'): each user's relevant grades sorted descending (needed for graded NDCG; for binary
    relevance it is derived from ``n_relevant``). ``n_returned`` (U,): length of each list
    (default K).

    >>> out = ranking_metrics([[0, 1, 1]], [4], ["ndcg@3", "map@3", "mrr@3", "recall@3"])
    >>> {k: round(float(v[0]), 4) for k, v in out.items()}
    {'ndcg@3': 0.5307, 'map@3': 0.3889, 'mrr@3': 0.5, 'recall@3': 0.5}
    """
    opts = options or MetricOptions()
    rel = np.atleast_2d(np.asarray(ranked_rel, dtype=np.float64))
    n_rel = np.asarray(n_relevant, dtype=np.float64).reshape(-1)
    u, width = rel.shape
    if len(n_rel) != u:
        raise ConfigError(f"n_relevant has {len(n_rel)} users, ranked_rel has {u}")
    if u and n_rel.min() < 1:
        raise ConfigError("every user scored needs at least one relevant item (|R| >= 1)")
    parsed = [parse_metric(m) for m in metrics]
    kmax = max((k for _, k in parsed), default=0)
    if kmax > width:
        # Positions past the list are simply empty.
        rel = np.pad(rel, ((0, 0), (0, kmax - width)))
        width = kmax
    returned = (
        np.full(u, width, np.float64)
        if n_returned is None
        else np.asarray(n_returned, dtype=np.float64)
    )
    hit = rel > 0
    cum_hits = np.cumsum(hit, axis=1)
    ranks = np.arange(1, width + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    dcg_cum = np.cumsum(_gain(rel, opts.gain) * discount, axis=1)
    if ideal_rel is None:
        # Binary relevance: the ideal list is |R| ones.
        ideal = (ranks[None, :] <= n_rel[:, None]).astype(np.float64)
    else:
        ideal = np.atleast_2d(np.asarray(ideal_rel, dtype=np.float64))
        ideal = -np.sort(-ideal, axis=1)
        if ideal.shape[1] < width:
            ideal = np.pad(ideal, ((0, 0), (0, width - ideal.shape[1])))
        ideal = ideal[:, :width]
    idcg_cum = np.cumsum(_gain(ideal, opts.gain) * discount, axis=1)
    prec_at_i = cum_hits / ranks
    ap_cum = np.cumsum(prec_at_i * hit, axis=1)
    first_hit = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)

    out: dict[str, npt.NDArray[np.float64]] = {}
    for (base, k), name in zip(parsed, metrics, strict=True):
        hits_k = cum_hits[:, k - 1].astype(np.float64)
        if base == "precision":
            denom = (
                np.full(u, float(k))
                if opts.precision_denominator == "k"
                else np.maximum(np.minimum(returned, k), 1.0)
            )
            val = hits_k / denom
        elif base == "recall":
            val = hits_k / n_rel
        elif base == "hit":
            val = (hits_k > 0).astype(np.float64)
        elif base == "mrr":
            val = np.where((first_hit > 0) & (first_hit <= k), 1.0 / np.maximum(first_hit, 1), 0.0)
        elif base == "map":
            denom = np.minimum(n_rel, k) if opts.map_denominator == "min" else n_rel
            val = ap_cum[:, k - 1] / denom
        else:  # ndcg
            idcg = idcg_cum[:, k - 1]
            val = np.divide(dcg_cum[:, k - 1], idcg, out=np.zeros(u), where=idcg > 0)
        out[name.strip().lower()] = val
    return out
