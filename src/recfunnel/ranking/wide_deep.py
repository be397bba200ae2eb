"""Wide & Deep (Cheng et al. 2016, "Wide & Deep Learning for Recommender Systems", DLRS '16).

``logit = w_wideᵀ [x, φ(x)] + w_deepᵀ a^(L) + b`` (eq. 3): a linear *wide* part over the raw
features and their cross-product transformations ``φ(x)``, plus a *deep* MLP over embeddings of
the sparse columns and the dense columns, both trained jointly on the log loss.

Crosses are hashed: every sparse column and every crossed pair of columns becomes one id in a
shared space of ``wide_buckets`` weights, so the wide part memorises co-occurrences such as
"user country × item language" without a vocabulary. The paper trains the wide part with
FTRL + L1 and the deep part with AdaGrad; here one Adam optimiser trains both (``weight_decay``
regularises), which keeps the training loop shared with DCN-v2.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from recfunnel.core.errors import ConfigError
from recfunnel.core.ranker import IntArray, RankerFeatures
from recfunnel.ranking.nn.embedding import DenseArch, SparseArch
from recfunnel.ranking.nn.mlp import MLP, OverArch
from recfunnel.ranking.nn.training import NeuralRanker
from recfunnel.ranking.nn.wide import WideArch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: a bijection of 64-bit integers that scatters nearby inputs."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def wide_ids(sparse: IntArray, pairs: IntArray, n_buckets: int) -> IntArray:
    """Hashed ids of the wide part: ``B x (Fs + P)``, each in ``0 .. n_buckets - 1``.

    Column ``j`` of ``sparse`` gives ``h(j, id_j)``; crossed pair ``p = (i, j)`` gives
    ``h(p, id_i, id_j)``, so the same value in two columns, or two pairs, lands apart.

    >>> ids = wide_ids(np.array([[1, 2], [1, 3]]), np.array([[0, 1]]), 1000)
    >>> ids.shape, bool(ids[0, 0] == ids[1, 0]), bool(ids[0, 2] != ids[1, 2])
    ((2, 3), True, True)
    """
    with np.errstate(over="ignore"):
        u = sparse.astype(np.uint64)
        n_cols = sparse.shape[1]
        tags = _mix(np.arange(1, n_cols + len(pairs) + 1, dtype=np.uint64))
        cols = _mix(u ^ tags[:n_cols])
        left, right = pairs[:, 0], pairs[:, 1]
        crossed = _mix(cols[:, left] ^ _mix(u[:, right] ^ tags[n_cols:]))
        h = np.concatenate([cols, crossed], axis=1)
    return (h % np.uint64(n_buckets)).astype(np.int64)


class WideDeepNet(nn.Module):
    """``(dense B x Fd, sparse B x Fs, wide ids B x K) -> B`` logits: wide + deep.

    >>> net = WideDeepNet([4, 6], n_dense=2, wide_buckets=64, embedding_dim=3,
    ...                   hidden_units=[8, 4])
    >>> net(torch.zeros(5, 2), torch.zeros(5, 2, dtype=torch.int64),
    ...     torch.zeros(5, 3, dtype=torch.int64)).shape
    torch.Size([5])
    """

    def __init__(
        self,
        buckets: Sequence[int],
        n_dense: int,
        *,
        wide_buckets: int,
        embedding_dim: int,
        hidden_units: Sequence[int],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.dense_arch = DenseArch(n_dense)
        self.wide = WideArch(wide_buckets, n_dense)
        self.sparse_arch = SparseArch(buckets, embedding_dim)
        self.deep = MLP(len(buckets) * embedding_dim + n_dense, hidden_units, dropout=dropout)
        self.over_arch = OverArch(self.deep.out_dim)

    def forward(
        self, dense: torch.Tensor, sparse: torch.Tensor, wide: torch.Tensor
    ) -> torch.Tensor:
        """``B x Fd`` float, ``B x Fs`` int64, ``B x K`` int64 -> ``B`` logits."""
        x = self.dense_arch(dense)
        deep_in = torch.cat([self.sparse_arch(sparse).flatten(1), x], dim=1)
        return self.wide(wide, x) + self.over_arch(self.deep(deep_in))


class WideDeep(NeuralRanker):
    """Wide & Deep ranker.

    Parameters: ``crosses`` — ``"all_pairs"`` (every pair of sparse columns), ``"none"``, or a
    list of column pairs (indices or sparse column names) crossed in the wide part;
    ``wide_buckets`` weights in the wide part's hash space; ``embedding_dim`` per sparse
    column and ``hidden_units`` of the deep part; ``dropout``; Adam ``lr`` and
    ``weight_decay``; ``batch_size``; at most ``n_epochs`` epochs, ``patience`` epochs without a
    better validation loss before stopping (only with ``valid``); ``seed``; ``n_threads``.
    """

    name: ClassVar[str] = "wide_deep"

    cross_pairs_: IntArray

    def __init__(
        self,
        crosses: str | Sequence[Sequence[int | str]] = "all_pairs",
        wide_buckets: int = 1 << 16,
        embedding_dim: int = 8,
        hidden_units: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        batch_size: int = 256,
        n_epochs: int = 10,
        patience: int = 2,
        seed: int = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.crosses = crosses
        self.wide_buckets = wide_buckets
        self.embedding_dim = embedding_dim
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.patience = patience
        self.seed = seed
        self.n_threads = n_threads

    def _check_params(self) -> None:
        super()._check_params()
        if int(self.wide_buckets) <= 0 or int(self.embedding_dim) <= 0:
            raise ConfigError("wide_buckets and embedding_dim must be positive")
        if isinstance(self.crosses, str) and self.crosses not in ("all_pairs", "none"):
            raise ConfigError(
                f"crosses must be 'all_pairs', 'none' or a list of column pairs, "
                f"got {self.crosses!r}"
            )

    def _prepare(self, features: RankerFeatures) -> None:
        self.cross_pairs_ = self._resolve_crosses(features.n_sparse, features.sparse_names)

    def _resolve_crosses(self, n_sparse: int, names: Sequence[str] | None) -> IntArray:
        if self.crosses == "all_pairs":
            pairs = list(combinations(range(n_sparse), 2))
        elif self.crosses == "none":
            pairs = []
        else:
            lookup = {name: j for j, name in enumerate(names or ())}
            pairs = []
            for pair in self.crosses:
                if len(pair) != 2:
                    raise ConfigError(f"a cross is a pair of sparse columns, got {pair!r}")
                cols = []
                for c in pair:
                    j = lookup.get(c) if isinstance(c, str) else int(c)
                    if j is None or not 0 <= j < n_sparse:
                        raise ConfigError(
                            f"cross {list(pair)}: no sparse column {c!r} "
                            f"(columns: {list(names) if names else n_sparse})"
                        )
                    cols.append(j)
                pairs.append((cols[0], cols[1]))
        return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)

    def _build(self, dense: npt.NDArray[np.float32] | None) -> WideDeepNet:
        net = WideDeepNet(
            self.sparse_buckets_.tolist(),
            self.n_dense_,
            wide_buckets=int(self.wide_buckets),
            embedding_dim=int(self.embedding_dim),
            hidden_units=[int(h) for h in self.hidden_units],
            dropout=float(self.dropout),
        )
        if dense is not None:
            net.dense_arch = DenseArch.fitted(dense)
        return net

    def _tensors(self, features: RankerFeatures) -> tuple[torch.Tensor, ...]:
        wide = wide_ids(features.sparse, self.cross_pairs_, int(self.wide_buckets))
        return (
            torch.from_numpy(features.dense),
            torch.from_numpy(features.sparse),
            torch.from_numpy(wide),
        )

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {**super()._state(), "cross_pairs": self.cross_pairs_}

    def _restore_extra(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.cross_pairs_ = arrays.pop("cross_pairs").astype(np.int64)
