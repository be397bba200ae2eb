"""Item PageRank on the item co-engagement graph: a global importance feature.

Two items are joined by an undirected edge weighted by the number of users who engaged with
both, ``C = XᵀX - diag(XᵀX)`` for the binary users × items matrix ``X``. PageRank (Page et al.
1999) with damping ``d`` is the stationary distribution of a walk that follows an edge with
probability proportional to its weight, and with probability ``1 - d`` (or always, from an item
with no edge) jumps to a uniformly drawn item; this is ``networkx.pagerank(G, alpha=d,
weight="weight")`` on that graph.

``C`` is never built: ``C v = Xᵀ(X v) - diag(XᵀX) v``, so each power iteration costs two sparse
products over the interactions (``O(nnz(X))``), however dense the co-engagement graph is.
The feature is ``n_items × PageRank`` (1 is an average item). An item absent from the log is
an isolated node and gets the isolated nodes' value. Fit on training events only: the score
summarises the whole log it is given.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.features.base import (
    FeatureBlock,
    FeatureStep,
    Frame,
    column,
    lookup_codes,
    require_columns,
)


def item_pagerank(
    user_items: sp.spmatrix | sp.sparray,
    damping: float = 0.85,
    tol: float = 1e-12,
    max_iter: int = 1000,
) -> npt.NDArray[np.float64]:
    """PageRank (sums to 1) of each item on the co-engagement graph of ``user_items``.

    Power iteration until the L1 change is below ``tol``; any non-zero entry is an engagement.

    >>> X = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [0, 0, 0]]))
    >>> item_pagerank(X).round(6).tolist()
    [0.486486, 0.256757, 0.256757]
    """
    if not 0.0 <= damping < 1.0:
        raise ConfigError(f"damping must be in [0, 1), got {damping}")
    x = sp.csr_matrix(user_items, dtype=np.float64, copy=True)
    x.sum_duplicates()
    x.data[:] = 1.0
    x.eliminate_zeros()
    n = x.shape[1]
    if n == 0:
        return np.zeros(0)
    xt, counts, degree = _co_degree(x)
    linked = degree > 0
    inv_degree = np.where(linked, 1.0 / np.where(linked, degree, 1.0), 0.0)
    r = np.full(n, 1.0 / n)
    for _ in range(max_iter):
        v = r * inv_degree
        spread = xt @ (x @ v) - counts * v
        dangling = r[~linked].sum()
        r_next = damping * spread + (damping * dangling + 1.0 - damping) / n
        if np.abs(r_next - r).sum() < tol:
            return np.asarray(r_next, dtype=np.float64)
        r = r_next
    raise DataError(f"item PageRank did not converge to {tol} in {max_iter} iterations")


class ItemPageRank(FeatureStep):
    """``n_items × PageRank`` of each row's item, learned from the event log (``events``).

    >>> events = pd.DataFrame({"user_id": ["u", "u", "v", "v"], "item_id": ["a", "b", "a", "c"]})
    >>> step = ItemPageRank().fit(events, events)
    >>> values = step.transform(pd.DataFrame({"item_id": ["a", "b", "new"]})).dense.ravel()
    >>> [round(float(v), 4) for v in values]
    [1.4595, 0.7703, 0.15]
    """

    name: ClassVar[str] = "item_pagerank"
    reads_columns: ClassVar[bool] = True
    needs_events: ClassVar[bool] = True

    def __init__(
        self,
        damping: float = 0.85,
        tol: float = 1e-12,
        max_iter: int = 1000,
        item_column: str = "item_id",
        user_column: str = "user_id",
    ) -> None:
        self.damping = damping
        self.tol = tol
        self.max_iter = max_iter
        self.item_column = item_column
        self.user_column = user_column

    def fit(self, frame: pd.DataFrame, events: pd.DataFrame | None = None) -> Self:
        if events is None:
            raise ConfigError("ItemPageRank needs the event log: fit(frame, events=...)")
        require_columns(events, [self.user_column, self.item_column], "event log")
        m = InteractionMatrix.from_arrays(
            events[self.user_column].to_numpy(), events[self.item_column].to_numpy()
        )
        x = m.to_csr()
        rank = item_pagerank(x, float(self.damping), float(self.tol), int(self.max_iter))
        d = float(self.damping)
        self.items_ = np.asarray(m.items.ids, dtype=str)
        self.scores_ = rank * len(rank)
        # An isolated node is reached only by jumps: n * ((1 - d) + d * dangling mass) / n.
        _, _, degree = _co_degree(x)
        self.isolated_ = np.asarray((1.0 - d) + d * float(rank[degree <= 0].sum()))
        return self

    def transform(self, frame: Frame) -> FeatureBlock:
        self._check_fitted("scores_")
        require_columns(frame, [self.item_column], type(self).__name__)
        pos = lookup_codes(self, "items_", column(frame, self.item_column))
        values = np.where(pos >= 0, self.scores_[np.maximum(pos, 0)], float(self.isolated_))
        return FeatureBlock(
            values.astype(np.float32)[:, None],
            np.zeros((len(frame), 0), np.int64),
            ("pagerank",),
            (),
            (),
        )

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        self._check_fitted("scores_")
        return {"items": self.items_, "scores": self.scores_, "isolated": self.isolated_}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.items_ = np.asarray(arrays["items"], dtype=str)
        self.scores_ = np.asarray(arrays["scores"], np.float64)
        self.isolated_ = np.asarray(arrays["isolated"], np.float64)


def _co_degree(
    x: sp.csr_matrix,
) -> tuple[sp.csr_matrix, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``Xᵀ``, the diagonal of ``XᵀX`` and each item's weighted degree in ``C``."""
    xt = x.T.tocsr()
    counts = np.asarray(xt.sum(axis=1)).ravel()
    degree = xt @ (x @ np.ones(x.shape[1])) - counts
    return xt, counts, degree
