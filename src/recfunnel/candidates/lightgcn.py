"""LightGCN: user and item embeddings smoothed over the interaction graph, trained with BPR.

He et al. 2020, "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation" (SIGIR '20). No feature transforms, no non-linearities: the final vectors are
the mean of the ego embeddings propagated 0..L times over the normalised bipartite graph. That
map is linear and symmetric, so training (shared with BPR-MF in :mod:`._training`) back-
propagates by applying it once more; after training only the final vectors are kept.
"""

from __future__ import annotations

import math
import warnings
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from recfunnel.candidates._training import BPRTrainedEmbeddings, Propagation
from recfunnel.core.errors import ConfigError
from recfunnel.core.generator import SearchSpace


def normalized_adjacency(seen: sp.csr_matrix) -> sp.csr_matrix:
    """Â = D^-1/2 A D^-1/2 for the bipartite graph A = [[0, R], [Rᵀ, 0]] of the users x items
    matrix R, nodes ordered users first; a node without edges gets a zero row and column.

    >>> a = normalized_adjacency(sp.csr_matrix(np.array([[1.0, 1.0], [0.0, 1.0]])))
    >>> np.round(a.toarray()[0].astype(float), 3).tolist()
    [0.0, 0.0, 0.707, 0.5]
    """
    r = sp.csr_matrix(seen, dtype=np.float64)
    r.data[:] = 1.0
    deg_u = np.asarray(r.sum(axis=1)).ravel()
    deg_i = np.asarray(r.sum(axis=0)).ravel()
    inv_u = np.divide(1.0, np.sqrt(deg_u), out=np.zeros_like(deg_u), where=deg_u > 0)
    inv_i = np.divide(1.0, np.sqrt(deg_i), out=np.zeros_like(deg_i), where=deg_i > 0)
    r_hat = sp.diags(inv_u) @ r @ sp.diags(inv_i)
    adj = sp.bmat([[None, r_hat], [r_hat.T, None]], format="csr", dtype=np.float32)
    adj.sort_indices()
    return adj


class LightGCN(BPRTrainedEmbeddings):
    """score(u, i) = f_u · f_i with [f_users; f_items] = (1 / (L+1)) Σ_{l=0..L} Â^l E.

    ``E`` (users over items, ``factors`` wide) are the trained ego embeddings, ``Â`` the
    normalised adjacency (:func:`normalized_adjacency`) and L = ``n_layers``. The loss is BPR
    on the final vectors with L2 (``reg``/2) on the ego embeddings of each triple, averaged over
    the batch, optimised with Adam (``lr``); each step propagates over the whole graph.

    Batches. A step costs O(nnz + (users + items) x ``factors``) however small its batch (the
    propagation, its backward pass and a dense Adam step: the propagated gradient reaches
    every node within ``n_layers`` hops). With a fixed batch size an epoch would have
    interactions / ``batch_size`` such steps and cost O(interactions²). So an epoch has at
    most ``max_batches`` batches: the batch size is max(``batch_size``, ⌈pairs /
    ``max_batches``⌉) (``batch_size_`` after fit), and an epoch costs O(``max_batches`` x
    (nnz + (users + items) x ``factors``)), linear in the interactions. The default 100
    leaves the batch at ``batch_size`` up to ~820k training pairs (ml-100k and ml-1m train
    as with a fixed batch), and above it keeps 100 Adam steps per epoch with batches that
    grow with the data. The learning rate is not rescaled: Adam's step is invariant to the
    gradient's scale, a larger batch only averages more triples per step, and users grow
    with the batch, so each row sees about as many triples per step as at 800k pairs (on
    ml-1m, ``max_batches=10`` at the same ``lr`` did not lose accuracy; ``lr`` x √10 did).
    ``max_batches=None`` keeps ``batch_size`` at every size.

    ``negatives``, ``n_candidates``, early stopping on validation NDCG@10 (``eval_every``,
    ``patience``, ``max_epochs``), ``seed``, ``threads`` and ``progress`` work as in
    :class:`~recfunnel.candidates.bpr.BPR`. ``n_layers=0`` is BPR-MF. The defaults were tuned
    on the validation part of ml-100k (per-user random 80/10/10 split) for accuracy per second.

    >>> from recfunnel.core.matrix import InteractionMatrix
    >>> m = InteractionMatrix.from_arrays(list("aabbbc"), list("xyxyzw"))
    >>> LightGCN(factors=8, max_epochs=50).fit(m).recommend(["a"], n=1)[0].ids
    ('z',)
    """

    name: ClassVar[str] = "lightgcn"
    search_space: ClassVar[SearchSpace] = {
        "lr": ("float", 1e-3, 1e-1, "log"),
        "reg": ("float", 1e-6, 1e-1, "log"),
        "n_layers": ("int", 1, 4, "linear"),
    }

    def __init__(
        self,
        factors: int = 64,
        n_layers: int = 2,
        lr: float = 0.02,
        reg: float = 3e-3,
        negatives: str = "hard",
        n_candidates: int = 16,
        batch_size: int = 8192,
        max_batches: int | None = 100,
        max_epochs: int = 200,
        eval_every: int = 2,
        patience: int = 2,
        init_std: float = 0.01,
        seed: int = 0,
        threads: int = 1,
        progress: bool = False,
    ) -> None:
        self.factors = factors
        self.n_layers = n_layers
        self.lr = lr
        self.reg = reg
        self.negatives = negatives
        self.n_candidates = n_candidates
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.max_epochs = max_epochs
        self.eval_every = eval_every
        self.patience = patience
        self.init_std = init_std
        self.seed = seed
        self.threads = threads
        self.progress = progress

    def _check_params(self) -> None:
        super()._check_params()
        if not (isinstance(self.n_layers, int | np.integer) and self.n_layers >= 0):
            raise ConfigError(f"LightGCN.n_layers must be an integer >= 0, got {self.n_layers!r}")
        mb = self.max_batches
        if mb is not None and not (isinstance(mb, int | np.integer) and mb > 0):
            raise ConfigError(
                f"LightGCN.max_batches must be a positive integer or None, got {mb!r}"
            )

    def _epoch_batch_size(self, n_pairs: int) -> int:
        """max(``batch_size``, ⌈``n_pairs`` / ``max_batches``⌉): at most ``max_batches``
        full-graph steps per epoch.

        >>> LightGCN()._epoch_batch_size(800_000), LightGCN()._epoch_batch_size(10_000_000)
        (8192, 100000)
        """
        if self.max_batches is None:
            return int(self.batch_size)
        return max(int(self.batch_size), math.ceil(n_pairs / self.max_batches))

    def _propagation(self, seen: sp.csr_matrix) -> Propagation | None:
        import torch

        if self.n_layers == 0:
            return None
        adj = normalized_adjacency(seen)
        with warnings.catch_warnings():
            # torch flags sparse CSR as beta; matrix products with it are what we need.
            warnings.simplefilter("ignore", UserWarning)
            a = torch.sparse_csr_tensor(
                torch.from_numpy(adj.indptr.astype(np.int64)),
                torch.from_numpy(adj.indices.astype(np.int64)),
                torch.from_numpy(adj.data),
                size=adj.shape,
                check_invariants=False,
            )
        n_layers = self.n_layers

        def propagate(e: torch.Tensor) -> torch.Tensor:
            layer, total = e, e.clone()
            for _ in range(n_layers):
                layer = a @ layer
                total += layer
            return total.mul_(1.0 / (n_layers + 1))

        return propagate
