"""The wide part of Wide & Deep (Cheng et al. 2016, §3.1): a linear model over raw and
cross-product features, ``y = wᵀ[x, φ(x)] + b``.

Here ``φ(x)`` are hashed ids (each sparse column and each crossed pair of columns hashed into
one space of ``n_buckets``), so the linear term over their one-hot encoding is a sum of one
learned weight per id, and dense columns enter linearly.
"""

from __future__ import annotations

import torch
from torch import nn


class WideArch(nn.Module):
    """Linear model: ``B x K`` hashed ids and ``B x Fd`` dense -> ``B`` logits.

    >>> wide = WideArch(n_buckets=10, n_dense=1)
    >>> with torch.no_grad():
    ...     wide.weights.weight[2] = 0.5
    ...     wide.weights.weight[7] = -2.0
    ...     _ = wide.dense_weight.fill_(3.0)
    >>> wide(torch.tensor([[2, 7]]), torch.tensor([[1.0]])).tolist()
    [1.5]

    (``0.5 - 2.0 + 3.0 * 1.0``, bias 0.)
    """

    def __init__(self, n_buckets: int, n_dense: int) -> None:
        super().__init__()
        self.weights = nn.Embedding(int(n_buckets), 1)
        nn.init.zeros_(self.weights.weight)
        self.dense_weight = nn.Parameter(torch.zeros(int(n_dense)))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """``B x K`` int64 ids and ``B x Fd`` -> ``B`` logits."""
        out: torch.Tensor = self.weights(ids).sum(dim=(1, 2)) + dense @ self.dense_weight
        return out + self.bias
