"""Feed-forward towers: the deep part of Wide & Deep and DCN-v2, and the final logit."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """``Linear -> ReLU (-> Dropout)`` per hidden width: ``B x in_dim -> B x out_dim``.

    ``out_dim`` is the last hidden width (``in_dim`` when there are no hidden layers).

    >>> mlp = MLP(8, [16, 4])
    >>> mlp(torch.zeros(3, 8)).shape, mlp.out_dim
    (torch.Size([3, 4]), 4)
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], *, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = int(in_dim)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        self.layers = nn.Sequential(*layers)
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x in_dim`` -> ``B x out_dim``."""
        out: torch.Tensor = self.layers(x)
        return out


class OverArch(nn.Module):
    """The final linear layer to one logit per row: ``B x in_dim -> B``.

    >>> OverArch(5)(torch.zeros(2, 5)).shape
    torch.Size([2])
    """

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(int(in_dim), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x in_dim`` -> ``B`` logits."""
        out: torch.Tensor = self.linear(x).squeeze(-1)
        return out
