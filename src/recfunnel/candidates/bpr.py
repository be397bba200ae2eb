"""BPR-MF: matrix factorisation trained with the Bayesian Personalized Ranking loss.

Rendle et al. 2009, "BPR: Bayesian Personalized Ranking from Implicit Feedback" (UAI '09).
Training, negative sampling and early stopping live in :mod:`._training`, shared with LightGCN.
"""

from __future__ import annotations

from typing import ClassVar

import scipy.sparse as sp

from recfunnel.candidates._training import BPRTrainedEmbeddings, Propagation
from recfunnel.core.generator import SearchSpace


class BPR(BPRTrainedEmbeddings):
    """score(u, i) = p_u · q_i, with ``factors``-dimensional user and item vectors learned by
    minimising −log σ(p_u · q_i − p_u · q_j) + ``reg``/2 (‖p_u‖² + ‖q_i‖² + ‖q_j‖²), averaged
    over (user, positive i, negative j) triples, with Adam (learning rate ``lr``). The Adam
    step is row-sparse ("lazy"): a batch updates only its users', positives' and negatives'
    vectors and moments, so a batch costs the same whatever the number of users and items,
    and an epoch is linear in the interactions.

    Each epoch visits every training pair once, in shuffled batches of ``batch_size``, with one
    negative j per pair: ``negatives="uniform"`` draws it uniformly among the user's
    non-positives; ``negatives="hard"`` draws ``n_candidates`` items uniformly and keeps the
    non-positive the current model scores highest (dynamic negative sampling, Zhang et al.
    2013; a uniform non-positive if all draws are positives): more informative pairs, so
    fewer epochs, for ``n_candidates`` more dot products per pair.

    With ``fit(..., valid=...)`` the validation NDCG@10 (training items masked) is computed
    every ``eval_every`` epochs; training stops after ``patience`` evaluations without
    improvement and the vectors of the best evaluation are kept (``best_epoch_``). Without
    validation data it trains ``max_epochs`` epochs. ``seed`` fixes initialisation
    (normal, std ``init_std``) and sampling: same data and seed give the same model. ``threads``
    bounds torch's intra-op threads during fit; ``progress`` shows a bar over epochs.
    ``similar_items`` ranks by the cosine of item vectors. The defaults were tuned on the
    validation part of ml-100k (per-user random 80/10/10 split) for accuracy per second.

    >>> from recfunnel.core.matrix import InteractionMatrix
    >>> m = InteractionMatrix.from_arrays(list("aabbbc"), list("xyxyzw"))
    >>> BPR(factors=8, max_epochs=50).fit(m).recommend(["a"], n=1)[0].ids
    ('z',)
    """

    name: ClassVar[str] = "bpr"
    search_space: ClassVar[SearchSpace] = {
        "lr": ("float", 1e-3, 1e-1, "log"),
        "reg": ("float", 1e-6, 1e-1, "log"),
        "factors": ("int", 16, 256, "log"),
    }

    def __init__(
        self,
        factors: int = 64,
        lr: float = 0.01,
        reg: float = 0.01,
        negatives: str = "hard",
        n_candidates: int = 6,
        batch_size: int = 8192,
        max_epochs: int = 200,
        eval_every: int = 2,
        patience: int = 2,
        init_std: float = 0.01,
        seed: int = 0,
        threads: int = 1,
        progress: bool = False,
    ) -> None:
        self.factors = factors
        self.lr = lr
        self.reg = reg
        self.negatives = negatives
        self.n_candidates = n_candidates
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.eval_every = eval_every
        self.patience = patience
        self.init_std = init_std
        self.seed = seed
        self.threads = threads
        self.progress = progress

    def _propagation(self, seen: sp.csr_matrix) -> Propagation | None:
        return None  # plain matrix factorisation: the ego embeddings are the final vectors
