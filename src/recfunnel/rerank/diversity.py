"""Maximal Marginal Relevance (Carbonell & Goldstein, SIGIR 1998): relevant *and* varied slates.

Greedy selection of ``k`` items. With ``S`` the items chosen so far, the next item is

    argmax_{i not in S}  lambda_ * rel(i) - (1 - lambda_) * max_{j in S} sim(i, j)

(the penalty is 0 while ``S`` is empty, so the most relevant item comes first). ``rel`` is the
slate's score, min-max scaled to ``[0, 1]`` per request when ``normalize`` (scores and
similarities then share a scale; all-equal scores scale to 0). ``sim`` is

* ``similarity="cosine"``: cosine of the slate's embeddings (rows of zeros have similarity 0);
* ``similarity="jaccard"``: ``|A & B| / |A | B|`` of the category sets in attribute
  ``attribute`` (a set, list or tuple of labels per item, a single label, or ``None``; two
  empty sets have similarity 0).

``lambda_ = 1`` is the relevance order; smaller values trade relevance for variety. Each step
updates a running ``max_{j in S} sim(i, j)`` with one row of similarities, so the cost is
``O(n * k)`` similarity evaluations (``O(n * k * d)`` for ``d``-dimensional embeddings). Ties
go to the earlier item in the input order. The output holds the ``k`` chosen items in selection
order, each scored with its marginal value at selection (non-increasing), so a later
score-sorting step keeps the MMR order.

>>> from recfunnel.core.rerank import RerankContext, Slate
>>> s = Slate.from_lists(["a", "b", "c"], [0.9, 0.8, 0.5],
...                      embeddings=[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
>>> MaximalMarginalRelevance(lambda_=0.5, normalize=False).rerank(s, RerankContext(now=0)).ids()
['a', 'c', 'b']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.rerank import RerankContext, Reranker, Slate


class MaximalMarginalRelevance(Reranker):
    """Greedy MMR re-ranking over embeddings (cosine) or category sets (Jaccard).

    ``k``: items to select (``None``: ``context.n``, or the whole slate when that is ``None``).
    """

    name = "mmr"

    def __init__(
        self,
        lambda_: float = 0.7,
        k: int | None = None,
        similarity: str = "cosine",
        attribute: str = "genres",
        normalize: bool = True,
    ) -> None:
        self.lambda_ = lambda_
        self.k = k
        self.similarity = similarity
        self.attribute = attribute
        self.normalize = normalize

    def _check_params(self) -> None:
        if not 0.0 <= self.lambda_ <= 1.0:
            raise ConfigError(f"lambda_ must be in [0, 1], got {self.lambda_}")
        if self.k is not None and self.k < 0:
            raise ConfigError(f"k must be >= 0, got {self.k}")
        if self.similarity not in ("cosine", "jaccard"):
            raise ConfigError(f"similarity must be 'cosine' or 'jaccard', got {self.similarity!r}")

    def rerank(self, slate: Slate, context: RerankContext) -> Slate:
        self._check_params()
        k = self.k if self.k is not None else context.n if context.n is not None else len(slate)
        k = min(k, len(slate))
        if k == 0:
            return slate.take(np.zeros(0, np.intp))
        rel = slate.scores
        if self.normalize:
            lo, hi = float(rel.min()), float(rel.max())
            rel = (rel - lo) / (hi - lo) if hi > lo else np.zeros_like(rel)
        vectors = self._vectors(slate)
        order, gains = mmr_select(vectors, rel, k, float(self.lambda_), self.similarity)
        return slate.take(order).with_scores(gains)

    def _vectors(self, slate: Slate) -> npt.NDArray[np.float32]:
        """Unit-norm embeddings (cosine) or a multi-hot category matrix (Jaccard)."""
        if self.similarity == "cosine":
            if slate.embeddings is None:
                raise DataError(
                    "MMR with similarity='cosine' needs slate embeddings; pass embeddings= or "
                    "use similarity='jaccard' with a category attribute",
                    source="mmr",
                )
            emb = slate.embeddings
            norms = np.linalg.norm(emb, axis=1, keepdims=True)
            scale = np.where(norms > 0, norms, 1.0).astype(np.float32)
            return (emb / scale).astype(np.float32, copy=False)
        column = slate.attributes.get(self.attribute)
        if column is None:
            raise DataError(
                f"MMR with similarity='jaccard' needs attribute {self.attribute!r}; the slate "
                f"has {sorted(slate.attributes)}",
                source="mmr",
            )
        sets = [_labels(v) for v in column.tolist()]
        vocab = {label: j for j, label in enumerate(sorted({x for s in sets for x in s}, key=str))}
        hot = np.zeros((len(sets), len(vocab)), np.float32)
        for i, labels in enumerate(sets):
            hot[i, [vocab[x] for x in labels]] = 1.0
        return hot


def _labels(value: Any) -> set[Any]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return set()
    if isinstance(value, set | frozenset | list | tuple | np.ndarray):
        return set(np.asarray(value, dtype=object).tolist()) if len(value) else set()
    return {value}


def mmr_select(
    vectors: npt.NDArray[np.float32],
    relevance: npt.NDArray[np.float64],
    k: int,
    lambda_: float,
    similarity: str,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Greedy MMR: indices of the ``k`` chosen rows (in order) and their marginal values.

    ``vectors``: ``n x d`` unit embeddings (``similarity="cosine"``, sim = dot product) or a
    multi-hot ``n x c`` category matrix (``"jaccard"``).
    """
    n = len(relevance)
    sizes = vectors.sum(axis=1, dtype=np.float64) if similarity == "jaccard" else None
    max_sim = np.zeros(n)
    taken = np.zeros(n, bool)
    order = np.empty(k, np.intp)
    gains = np.empty(k)
    base = lambda_ * relevance
    for step in range(k):
        value = base - (1.0 - lambda_) * max_sim if step else base.copy()
        value[taken] = -np.inf
        j = int(np.argmax(value))
        order[step], gains[step] = j, value[j]
        taken[j] = True
        sim = (vectors @ vectors[j]).astype(np.float64)
        if sizes is not None:
            union = sizes + sizes[j] - sim
            sim = np.divide(sim, union, out=np.zeros(n), where=union > 0)
        max_sim = sim if step == 0 else np.maximum(max_sim, sim)
    return order, gains
