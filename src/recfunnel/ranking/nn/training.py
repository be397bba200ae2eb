"""What the neural rankers share: a pointwise log-loss training loop, scoring and persistence.

Training is minibatch Adam on binary cross-entropy (``BCEWithLogits``, optional row weights),
deterministic for a seed: the network is initialised and dropout drawn under a forked torch RNG
seeded with ``seed``, batches are shuffled by a numpy generator of the same seed, and torch runs
on ``n_threads`` threads for the duration of ``fit``. With validation data, training stops after
``patience`` epochs without a lower validation loss and keeps the best epoch's weights.

Group sizes are accepted and ignored (the loss is pointwise). Scoring runs under
``torch.inference_mode`` and leaves the thread count alone (a server sets it once).
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from recfunnel.core.errors import ConfigError
from recfunnel.core.ranker import FloatArray, IntArray, LabelledFeatures, Ranker, RankerFeatures


class Adam:
    """Adam (Kingma & Ba 2015) as ``torch.optim.Adam`` computes it, with L2 ``weight_decay``
    added to the gradient as there.

    Written out because creating the first ``torch.optim`` optimiser imports ``torch._dynamo``
    (about 2.7 s on this project's machines), which would dominate fitting a small ranker.

    >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
    >>> opt = Adam([w], lr=0.1)
    >>> (w ** 2).sum().backward(); opt.step()
    >>> [round(x, 6) for x in w.detach().tolist()]  # step one moves each weight by lr
    [0.9, -0.9]
    """

    def __init__(
        self,
        params: list[nn.Parameter],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = params
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1**self.t)
        root_bias = (1 - b2**self.t) ** 0.5
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v, strict=True):
                if p.grad is None:
                    continue
                g = p.grad if self.weight_decay == 0 else p.grad + self.weight_decay * p
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                p.addcdiv_(m, (v.sqrt() / root_bias).add_(self.eps), value=-step_size)


class NeuralRanker(Ranker):
    """Base of the torch rankers: subclasses build the network and its input tensors.

    Expected hyper-parameters (subclass ``__init__`` arguments): ``lr``, ``weight_decay``,
    ``batch_size``, ``n_epochs``, ``patience``, ``seed``, ``n_threads``.
    """

    lr: float
    weight_decay: float
    batch_size: int
    n_epochs: int
    patience: int
    seed: int
    n_threads: int | None

    net_: nn.Module
    #: Mean training loss per epoch, and validation loss per epoch when ``valid`` was given.
    train_loss_: list[float]
    valid_loss_: list[float]
    best_epoch_: int

    @abstractmethod
    def _build(self, dense: npt.NDArray[np.float32] | None) -> nn.Module:
        """A fresh network for the fitted shapes (``n_dense_``, ``sparse_buckets_``);
        ``dense`` is the training block to take normalisation statistics from (``None`` when
        loading)."""

    @abstractmethod
    def _tensors(self, features: RankerFeatures) -> tuple[torch.Tensor, ...]:
        """The network's positional inputs for a batch of rows."""

    def _prepare(self, features: RankerFeatures) -> None:
        """Learn input transformations that precede the network (called first in ``fit``)."""

    def _check_params(self) -> None:
        for name in ("batch_size", "n_epochs"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")

    # ---- training -----------------------------------------------------------------------
    def _fit(
        self,
        features: RankerFeatures,
        labels: npt.NDArray[np.float64],
        groups: IntArray | None,
        valid: LabelledFeatures | None,
        sample_weight: npt.NDArray[np.float64] | None,
    ) -> None:
        del groups  # pointwise loss
        for y, what in ((labels, "labels"), (None if valid is None else valid.labels, "valid")):
            if y is not None and ((y < 0) | (y > 1)).any():
                raise ConfigError(f"{type(self).__name__}: {what} must lie in [0, 1] (log loss)")
        previous_threads = torch.get_num_threads()
        if self.n_threads is not None:
            torch.set_num_threads(int(self.n_threads))
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.seed))
                self._prepare(features)
                self._train(features, labels, valid, sample_weight)
        finally:
            torch.set_num_threads(previous_threads)

    def _train(
        self,
        features: RankerFeatures,
        labels: npt.NDArray[np.float64],
        valid: LabelledFeatures | None,
        sample_weight: npt.NDArray[np.float64] | None,
    ) -> None:
        net = self._build(features.dense)
        optimiser = Adam(
            list(net.parameters()), lr=float(self.lr), weight_decay=float(self.weight_decay)
        )
        rng = np.random.default_rng(int(self.seed))
        inputs = self._tensors(features)
        y = torch.from_numpy(labels.astype(np.float32))
        w = None if sample_weight is None else torch.from_numpy(sample_weight.astype(np.float32))
        v_inputs = v_y = None
        if valid is not None:
            v_inputs = self._tensors(valid.features)
            v_y = torch.from_numpy(valid.labels.astype(np.float32))
        n, size = len(labels), int(self.batch_size)
        self.train_loss_, self.valid_loss_ = [], []
        best: tuple[float, dict[str, Any]] | None = None
        self.best_epoch_ = int(self.n_epochs) - 1
        for epoch in range(int(self.n_epochs)):
            net.train()
            order = torch.from_numpy(rng.permutation(n))
            total = 0.0
            for start in range(0, n, size):
                idx = order[start : start + size]
                logits = net(*(t[idx] for t in inputs))
                loss = nn.functional.binary_cross_entropy_with_logits(
                    logits, y[idx], weight=None if w is None else w[idx], reduction="sum"
                ) / len(idx)
                net.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
            self.train_loss_.append(total / n)
            if v_inputs is None or v_y is None:
                continue
            net.eval()
            with torch.inference_mode():
                v_loss = float(nn.functional.binary_cross_entropy_with_logits(net(*v_inputs), v_y))
            self.valid_loss_.append(v_loss)
            if best is None or v_loss < best[0]:
                best = (v_loss, copy.deepcopy(net.state_dict()))
                self.best_epoch_ = epoch
            elif epoch - self.best_epoch_ >= int(self.patience):
                break
        if best is not None:
            net.load_state_dict(best[1])
        self.net_ = net.eval()

    # ---- scoring --------------------------------------------------------------------------
    def _predict(self, features: RankerFeatures) -> FloatArray:
        with torch.inference_mode():
            out = torch.sigmoid(self.net_(*self._tensors(features)))
        return out.numpy().astype(np.float32, copy=False)

    def decision_function(self, features: RankerFeatures) -> FloatArray:
        """Logits (before the sigmoid) of a batch of rows."""
        self._check_fitted()
        with torch.inference_mode():
            out = self.net_(*self._tensors(self._in_range(features)))
        return out.numpy().astype(np.float32, copy=False)

    # ---- persistence ----------------------------------------------------------------------
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        arrays = {f"net.{k}": v.detach().numpy().copy() for k, v in self.net_.state_dict().items()}
        arrays["train_loss"] = np.asarray(self.train_loss_, np.float64)
        arrays["valid_loss"] = np.asarray(self.valid_loss_, np.float64)
        arrays["best_epoch"] = np.asarray(self.best_epoch_, np.int64)
        return arrays

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.train_loss_ = arrays.pop("train_loss").tolist()
        self.valid_loss_ = arrays.pop("valid_loss").tolist()
        self.best_epoch_ = int(arrays.pop("best_epoch"))
        self._restore_extra(arrays)
        with torch.random.fork_rng(devices=[]):  # initial values are overwritten anyway
            net = self._build(None)
        state = {k[4:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("net.")}
        net.load_state_dict(state)
        self.net_ = net.eval()

    def _restore_extra(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        """Restore arrays a subclass added to :meth:`_state` (pop them from ``arrays``)."""
