"""DCN-v2 cross layers (Wang et al. 2021, "DCN V2: Improved Deep & Cross Network", eq. 1).

A cross layer maps ``x_l`` to ``x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l``, with a full
``d x d`` matrix ``W_l``, or, in the paper's low-rank variant (§5.1), ``W_l = U_l V_lᵀ`` with
``U_l, V_l`` of shape ``d x r``. ``L`` layers give explicit feature crosses up to degree
``L + 1``; the residual term keeps lower degrees.
"""

from __future__ import annotations

import torch
from torch import nn


class CrossLayer(nn.Module):
    """One cross layer: ``(x_0, x_l)``, both ``B x d`` -> ``x_{l+1}``, ``B x d``.

    >>> layer = CrossLayer(2)
    >>> with torch.no_grad():
    ...     _ = layer.weight.copy_(torch.tensor([[1.0, 0.0], [2.0, 1.0]]))
    ...     _ = layer.bias.copy_(torch.tensor([0.5, -1.0]))
    >>> x0 = torch.tensor([[1.0, 2.0]])
    >>> layer(x0, x0).tolist()  # [1*(1+0.5)+1, 2*(2*1+2-1)+2]
    [[2.5, 8.0]]
    """

    def __init__(self, dim: int, low_rank: int | None = None) -> None:
        super().__init__()
        self.dim = int(dim)
        self.low_rank = low_rank
        bound = 1.0 / max(self.dim, 1) ** 0.5
        if low_rank is None:
            self.weight = nn.Parameter(torch.empty(self.dim, self.dim).uniform_(-bound, bound))
        else:
            r = int(low_rank)
            self.u = nn.Parameter(torch.empty(self.dim, r).uniform_(-bound, bound))
            self.v = nn.Parameter(torch.empty(self.dim, r).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(self.dim))

    def forward(self, x0: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        """``x_0 ⊙ (W x_l + b) + x_l`` for ``B x d`` inputs (row vectors: ``x_l Wᵀ``)."""
        if self.low_rank is None:
            wx = xl @ self.weight.T
        else:
            wx = (xl @ self.v) @ self.u.T
        return x0 * (wx + self.bias) + xl


class CrossNet(nn.Module):
    """``n_layers`` cross layers applied in turn to ``x_0``: ``B x d -> B x d``.

    >>> CrossNet(6, 3, low_rank=2)(torch.zeros(4, 6)).shape
    torch.Size([4, 6])
    """

    def __init__(self, dim: int, n_layers: int, low_rank: int | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CrossLayer(dim, low_rank) for _ in range(int(n_layers)))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """``B x d`` -> ``B x d``."""
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x
