"""DCN-v2 (Wang et al. 2021, "DCN V2: Improved Deep & Cross Network and Practical Lessons for
Web-scale Learning to Rank Systems", WWW '21).

The input ``x_0`` is the concatenation of one embedding per sparse column and the standardised
dense columns (``d = Fs * D + Fd``). A cross network of ``L`` layers
``x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l`` (full-rank ``W_l``, or ``U_l V_lᵀ`` with
``low_rank=r``) learns explicit bounded-degree crosses; a deep MLP learns implicit ones. The
paper's two structures (§3, Figure 1):

* ``"stacked"``: ``logit = w ᵀ deep(cross(x_0))``;
* ``"parallel"``: ``logit = w ᵀ [cross(x_0); deep(x_0)]``.

Trained pointwise with the log loss, so scores are click probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from recfunnel.core.errors import ConfigError
from recfunnel.core.ranker import RankerFeatures
from recfunnel.ranking.nn.cross import CrossNet
from recfunnel.ranking.nn.embedding import DenseArch, SparseArch
from recfunnel.ranking.nn.mlp import MLP, OverArch
from recfunnel.ranking.nn.training import NeuralRanker

STRUCTURES = ("stacked", "parallel")


class DCNv2Net(nn.Module):
    """The DCN-v2 network: ``(dense B x Fd, sparse B x Fs) -> B`` logits.

    >>> net = DCNv2Net([10, 20], n_dense=3, embedding_dim=4, n_cross_layers=2,
    ...                hidden_units=[8], structure="parallel")
    >>> net(torch.zeros(5, 3), torch.zeros(5, 2, dtype=torch.int64)).shape
    torch.Size([5])
    """

    def __init__(
        self,
        buckets: Sequence[int],
        n_dense: int,
        *,
        embedding_dim: int,
        n_cross_layers: int,
        hidden_units: Sequence[int],
        structure: str = "stacked",
        low_rank: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.structure = structure
        self.sparse_arch = SparseArch(buckets, embedding_dim)
        self.dense_arch = DenseArch(n_dense)
        dim = len(buckets) * embedding_dim + n_dense
        self.cross_net = CrossNet(dim, n_cross_layers, low_rank)
        self.deep = MLP(dim, hidden_units, dropout=dropout)
        over_in = self.deep.out_dim if structure == "stacked" else dim + self.deep.out_dim
        self.over_arch = OverArch(over_in)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """``B x Fd`` float, ``B x Fs`` int64 -> ``B`` logits."""
        x0 = torch.cat([self.sparse_arch(sparse).flatten(1), self.dense_arch(dense)], dim=1)
        if self.structure == "stacked":
            return self.over_arch(self.deep(self.cross_net(x0)))
        return self.over_arch(torch.cat([self.cross_net(x0), self.deep(x0)], dim=1))


class DCNv2(NeuralRanker):
    """Deep & Cross Network v2 ranker.

    Parameters: ``structure`` ``"stacked" | "parallel"``; ``n_cross_layers`` cross layers;
    ``low_rank`` (``None`` for full ``d x d`` matrices, else the rank ``r`` of ``U Vᵀ``);
    ``embedding_dim`` per sparse column; ``hidden_units`` of the deep MLP; ``dropout`` after
    each hidden layer; Adam ``lr`` and ``weight_decay``; ``batch_size``; at most ``n_epochs``
    epochs, ``patience`` epochs without a better validation loss before stopping (only with
    ``valid``); ``seed``; ``n_threads`` for training (``None`` leaves torch's setting).
    """

    name: ClassVar[str] = "dcn"

    def __init__(
        self,
        structure: str = "stacked",
        n_cross_layers: int = 3,
        low_rank: int | None = None,
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
        self.structure = structure
        self.n_cross_layers = n_cross_layers
        self.low_rank = low_rank
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
        if self.structure not in STRUCTURES:
            raise ConfigError(f"structure must be one of {STRUCTURES}, got {self.structure!r}")
        if self.low_rank is not None and int(self.low_rank) <= 0:
            raise ConfigError(f"low_rank must be positive or None, got {self.low_rank}")
        if int(self.n_cross_layers) < 0 or int(self.embedding_dim) <= 0:
            raise ConfigError("n_cross_layers must be >= 0 and embedding_dim positive")

    def _build(self, dense: npt.NDArray[np.float32] | None) -> DCNv2Net:
        net = DCNv2Net(
            self.sparse_buckets_.tolist(),
            self.n_dense_,
            embedding_dim=int(self.embedding_dim),
            n_cross_layers=int(self.n_cross_layers),
            hidden_units=[int(h) for h in self.hidden_units],
            structure=self.structure,
            low_rank=None if self.low_rank is None else int(self.low_rank),
            dropout=float(self.dropout),
        )
        if dense is not None:
            net.dense_arch = DenseArch.fitted(dense)
        return net

    def _tensors(self, features: RankerFeatures) -> tuple[torch.Tensor, ...]:
        return torch.from_numpy(features.dense), torch.from_numpy(features.sparse)
