"""Inputs of the neural rankers: embedded sparse columns and normalised dense columns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn


class SparseArch(nn.Module):
    """One embedding row per hashed bucket of every sparse column.

    Input ``B x Fs`` bucket ids (column ``j`` in ``0 .. buckets[j] - 1``), output ``B x Fs x D``.
    The columns share one table with per-column row offsets (as torchrec's
    ``EmbeddingBagCollection`` packs tables), so a forward pass is one lookup.

    >>> arch = SparseArch([3, 5], dim=4)
    >>> arch(torch.tensor([[2, 4], [0, 0]])).shape
    torch.Size([2, 2, 4])
    """

    def __init__(self, buckets: Sequence[int], dim: int, *, init_std: float = 0.01) -> None:
        super().__init__()
        sizes = [int(b) for b in buckets]
        self.n_features = len(sizes)
        self.dim = int(dim)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if sizes else np.zeros(0)
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.int64))
        self.table = nn.Embedding(max(sum(sizes), 1), self.dim)
        nn.init.normal_(self.table.weight, std=init_std)

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        """``B x Fs`` int64 -> ``B x Fs x D``."""
        out: torch.Tensor = self.table(sparse + self.offsets)
        return out


class DenseArch(nn.Module):
    """Standardises dense columns with the training mean and spread: ``B x Fd -> B x Fd``.

    The statistics are buffers, so they travel with the module's ``state_dict``.

    >>> arch = DenseArch.fitted(np.array([[1.0, 5.0], [3.0, 5.0]], np.float32))
    >>> arch(torch.tensor([[3.0, 5.0]])).tolist()
    [[1.0, 0.0]]
    """

    def __init__(self, n_dense: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_dense))
        self.register_buffer("scale", torch.ones(n_dense))

    @classmethod
    def fitted(cls, dense: npt.NDArray[np.float32]) -> DenseArch:
        arch = cls(dense.shape[1])
        if dense.shape[1]:
            std = dense.std(axis=0, dtype=np.float64)
            arch.mean.copy_(torch.from_numpy(dense.mean(axis=0, dtype=np.float64)))
            # A constant column carries no signal: leave it centred, unscaled.
            arch.scale.copy_(torch.from_numpy(1.0 / np.where(std > 1e-12, std, 1.0)))
        return arch

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        """``B x Fd`` -> ``B x Fd``."""
        return (dense - self.mean) * self.scale
