"""What the generators trained with the BPR loss share: negative sampling, hand-written BPR
gradients and Adam, early stopping on validation NDCG@10, and embedding-based scoring.

Rendle et al. 2009, "BPR: Bayesian Personalized Ranking from Implicit Feedback" (UAI '09). The
models differ only in how ego embeddings ``E`` (users stacked over items) become the final
vectors ``F = P(E)``: BPR-MF uses ``P = identity``, LightGCN a fixed linear propagation over the
interaction graph. ``P`` is linear and symmetric in both, so the gradient of the loss with
respect to ``E`` is ``P(∂loss/∂F)``: gradients are written by hand, which skips autograd's
bookkeeping and the one-second import of ``torch._dynamo`` that ``torch.optim`` triggers.

Cost per batch. With ``P = identity`` a batch's gradient lives on the rows of its users,
positives and negatives only: the gradient, the regularisation and the Adam step (row-sparse,
"lazy" Adam: :meth:`Adam.step_rows`) touch those rows and nothing else, so a batch costs
O(batch x d) whatever the size of the table and an epoch O(interactions x d). With a
propagation the gradient ``P(∂loss/∂F)`` is dense: a batch costs O(nnz + (users + items) x d),
and models bound the number of batches per epoch (LightGCN's ``max_batches``) to keep an epoch
linear in the interactions.

torch is imported inside functions only: importing this module (or the models) stays cheap.
"""

from __future__ import annotations

import contextlib
import time
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recfunnel.core.errors import ConfigError
from recfunnel.core.generator import CandidateGenerator, SideInfo, pair_dot
from recfunnel.core.matrix import InteractionMatrix

if TYPE_CHECKING:
    import torch

#: Users x items cells up to which positives are looked up in a dense boolean table (64 MB);
#: above it, binary search over sorted (user, item) keys.
DENSE_POSITIVES_LIMIT = 1 << 26

#: Hard-negative scoring: a GEMM over (batch users x all items) beats gathering the B x C
#: candidate vectors while it has at most this many times more cells than there are
#: candidates (crossover measured at ~25 on one CPU thread, ml-100k and ml-1m shapes).
GEMM_OVER_GATHER = 25

#: Hard-negative scoring gathers candidate vectors in chunks of about this many floats (64 MB).
GATHER_CHUNK = 1 << 24

Propagation = Callable[["torch.Tensor"], "torch.Tensor"]
#: (users B, candidate items B x C) -> scores B x C of the current model.
CandidateScorer = Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], npt.NDArray[np.float32]]


class Positives:
    """Batch membership test "is item i a training positive of user u".

    >>> seen = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]], np.float32))
    >>> Positives(seen).contains(np.array([0, 0, 1]), np.array([2, 1, 1])).tolist()
    [True, False, True]
    """

    def __init__(self, seen: sp.csr_matrix) -> None:
        self.n_users, self.n_items = seen.shape
        seen = seen.tocsr()
        seen.sort_indices()
        rows = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(seen.indptr))
        # Row-major keys of a CSR with sorted indices are already sorted.
        keys = rows * self.n_items + seen.indices.astype(np.int64)
        self._dense: npt.NDArray[np.bool_] | None = None
        self._keys = keys
        if self.n_users * self.n_items <= DENSE_POSITIVES_LIMIT:
            self._dense = np.zeros(self.n_users * self.n_items, dtype=bool)
            self._dense[keys] = True

    def contains(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.bool_]:
        """Elementwise over broadcast ``users`` and ``items``."""
        q = users * self.n_items + items
        found: npt.NDArray[np.bool_]
        if self._dense is not None:
            found = self._dense[q]
        elif len(self._keys):
            pos = np.minimum(np.searchsorted(self._keys, q), len(self._keys) - 1)
            found = self._keys[pos] == q
        else:
            found = np.zeros(q.shape, dtype=bool)
        return found


def sample_negatives(
    positives: Positives,
    users: npt.NDArray[np.int64],
    rng: np.random.Generator,
    *,
    n_candidates: int = 1,
    score: CandidateScorer | None = None,
) -> npt.NDArray[np.int64]:
    """One negative item per user: an item that is not one of the user's positives.

    Uniform (``score`` None): uniform over the user's non-positives, by rejection.
    Hard (``score`` given): draw ``n_candidates`` items uniformly, drop the positives, keep
    the one the current model scores highest - dynamic negative sampling (Zhang et al. 2013,
    "Optimizing Top-N Collaborative Filtering via Dynamic Negative Item Sampling"); a row
    whose draws are all positives falls back to a uniform non-positive. Every user must have
    at least one non-positive.

    >>> seen = sp.csr_matrix(np.array([[1, 1, 0, 0]], np.float32))
    >>> rng = np.random.default_rng(0)
    >>> neg = sample_negatives(Positives(seen), np.zeros(50, np.int64), rng)
    >>> sorted(set(neg.tolist()))
    [2, 3]
    """
    n_items = positives.n_items
    items: npt.NDArray[np.int64]
    if score is None or n_candidates <= 1:
        items = rng.integers(0, n_items, size=len(users))
        bad = np.flatnonzero(positives.contains(users, items))
        while len(bad):
            items[bad] = rng.integers(0, n_items, size=len(bad))
            bad = bad[positives.contains(users[bad], items[bad])]
        return items
    cand = rng.integers(0, n_items, size=(len(users), n_candidates))
    is_pos = positives.contains(users[:, None], cand)
    scores = np.asarray(score(users, cand), dtype=np.float32).copy()
    scores[is_pos] = -np.inf
    items = cand[np.arange(len(users)), np.argmax(scores, axis=1)]
    stuck = np.flatnonzero(is_pos.all(axis=1))
    if len(stuck):
        items[stuck] = sample_negatives(positives, users[stuck], rng)
    return items


def bpr_loss_and_grads(
    u: torch.Tensor, i: torch.Tensor, j: torch.Tensor
) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean BPR loss -log σ(u·i − u·j) over a batch (B x d each) and its gradients
    with respect to ``u``, ``i`` and ``j``."""
    import torch

    diff = i - j
    x = (u * diff).sum(dim=1)
    loss = float(torch.nn.functional.softplus(-x).mean())  # softplus(-x) = -log σ(x)
    g = (torch.sigmoid(-x) * (-1.0 / len(x))).unsqueeze(1)  # ∂loss/∂x
    gi = g * u
    return loss, g * diff, gi, -gi


def score_candidates(
    user_vecs: torch.Tensor,
    item_vecs: torch.Tensor,
    users: npt.NDArray[np.int64],
    cand: npt.NDArray[np.int64],
) -> npt.NDArray[np.float32]:
    """Scores (B x C) of candidate items ``cand`` for ``users`` under final vectors."""
    import torch

    gemm_cells = min(len(users), user_vecs.shape[0]) * item_vecs.shape[0]
    if gemm_cells <= GEMM_OVER_GATHER * cand.size:
        # Scoring every item for the batch's distinct users is one GEMM, far cheaper per
        # multiply-add than gathering B x C candidate vectors (wins on small catalogues).
        distinct, inverse = np.unique(users, return_inverse=True)
        full = (user_vecs.index_select(0, torch.from_numpy(distinct)) @ item_vecs.T).numpy()
        scores: npt.NDArray[np.float32] = full.reshape(-1)[inverse[:, None] * full.shape[1] + cand]
        return scores
    # Gathered in chunks of about GATHER_CHUNK floats: a large batch (LightGCN's grows with
    # the data) would otherwise materialise B x C x d candidate vectors at once.
    rows = max(1, GATHER_CHUNK // max(cand.shape[1] * item_vecs.shape[1], 1))
    scores = np.empty(cand.shape, dtype=np.float32)
    for start in range(0, len(users), rows):
        c = cand[start : start + rows]
        vecs = item_vecs.index_select(0, torch.from_numpy(c.reshape(-1))).view(*c.shape, -1)
        u = user_vecs.index_select(0, torch.from_numpy(users[start : start + rows])).unsqueeze(2)
        scores[start : start + rows] = torch.bmm(vecs, u).squeeze(2).numpy()
    return scores


def bpr_objective(
    ego: torch.Tensor,
    final: torch.Tensor,
    propagate: Propagation,
    users: npt.NDArray[np.int64],
    pos_rows: npt.NDArray[np.int64],
    neg_rows: npt.NDArray[np.int64],
    reg: float,
) -> tuple[float, torch.Tensor]:
    """Batch loss and its gradient with respect to the ego embeddings ``E`` (n x d).

    loss = mean over the batch of −log σ(f_u · f_i − f_u · f_j) + reg/2 (‖e_u‖² + ‖e_i‖² +
    ‖e_j‖²), with ``final = P(E)`` and ``f``, ``e`` rows of ``final`` and ``E``. Rows index
    the stacked matrix: users first, then items (``pos_rows``, ``neg_rows`` already offset).
    """
    import torch

    u_rows, i_rows, j_rows = (torch.from_numpy(r) for r in (users, pos_rows, neg_rows))
    # index_select, not final[rows]: advanced indexing costs several times more on CPU.
    loss, gu, gi, gj = bpr_loss_and_grads(
        final.index_select(0, u_rows), final.index_select(0, i_rows), final.index_select(0, j_rows)
    )
    grad = torch.zeros_like(ego)
    grad.index_add_(0, u_rows, gu)
    grad.index_add_(0, i_rows, gi)
    grad.index_add_(0, j_rows, gj)
    grad = propagate(grad)  # P is linear and symmetric: ∂loss/∂E = P(∂loss/∂F)
    if reg:
        # Only the batch's rows, counted per occurrence: O(batch x d), not O(table).
        rows = torch.cat([u_rows, i_rows, j_rows])
        e = ego.index_select(0, rows)
        scale = reg / len(users)
        loss += 0.5 * scale * float((e * e).sum())
        grad.index_add_(0, rows, e, alpha=scale)
    return loss, grad


def bpr_objective_rows(
    ego: torch.Tensor,
    users: npt.NDArray[np.int64],
    pos_rows: npt.NDArray[np.int64],
    neg_rows: npt.NDArray[np.int64],
    reg: float,
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """:func:`bpr_objective` for ``P = identity``, row-sparse: the batch loss, the distinct
    rows the batch touches (sorted) and the gradient on those rows only (rows x d). Every
    other row of ``E`` has a zero gradient; nothing here is proportional to the table.

    >>> import torch
    >>> ego = torch.ones(6, 2)
    >>> loss, rows, grad = bpr_objective_rows(
    ...     ego, np.array([0, 0]), np.array([3, 4]), np.array([5, 5]), 0.0)
    >>> rows.tolist(), tuple(grad.shape)
    ([0, 3, 4, 5], (4, 2))
    """
    import torch

    b = len(users)
    distinct, inverse = np.unique(np.concatenate([users, pos_rows, neg_rows]), return_inverse=True)
    rows = torch.from_numpy(distinct)
    inv = torch.from_numpy(inverse.reshape(-1))
    u_at, i_at, j_at = inv[:b], inv[b : 2 * b], inv[2 * b :]
    sub = ego.index_select(0, rows)
    loss, gu, gi, gj = bpr_loss_and_grads(
        sub.index_select(0, u_at), sub.index_select(0, i_at), sub.index_select(0, j_at)
    )
    grad = torch.zeros_like(sub)
    grad.index_add_(0, u_at, gu)
    grad.index_add_(0, i_at, gi)
    grad.index_add_(0, j_at, gj)
    if reg:
        # Counted per occurrence in the batch, as in bpr_objective.
        counts = torch.bincount(inv, minlength=len(distinct)).to(ego.dtype).unsqueeze(1)
        scale = reg / b
        loss += 0.5 * scale * float((counts * sub * sub).sum())
        grad.addcmul_(counts, sub, value=scale)
    return loss, rows, grad


class Adam:
    """Adam (Kingma & Ba 2015), the same update as ``torch.optim.Adam`` without weight decay;
    written out to avoid ``torch.optim``'s import cost.

    :meth:`step` updates every row from a dense gradient. :meth:`step_rows` is the row-sparse
    ("lazy") variant of TensorFlow's ``LazyAdamOptimizer`` and ``torch.optim.SparseAdam``: only
    the given rows' moments and parameters move; rows outside the batch keep their values and
    moments exactly (a dense step would keep moving them on their momentum). Bias correction
    uses the global step count ``t``, shared by both kinds of step.
    """

    def __init__(
        self, param: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999)
    ) -> None:
        import torch

        self.param, self.lr, self.betas, self.eps = param, lr, betas, 1e-8
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = 0

    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v.sqrt() / (1 - b2**self.t) ** 0.5).add_(self.eps)
        self.param.addcdiv_(self.m, denom, value=-self.lr / (1 - b1**self.t))

    def step_rows(self, rows: torch.Tensor, grad: torch.Tensor) -> None:
        """Lazy step: ``grad`` (len(rows) x d) is the gradient on the distinct ``rows``; the
        other rows have none and are left alone. O(len(rows) x d)."""
        b1, b2 = self.betas
        self.t += 1
        m = self.m.index_select(0, rows).mul_(b1).add_(grad, alpha=1 - b1)
        v = self.v.index_select(0, rows).mul_(b2).addcmul_(grad, grad, value=1 - b2)
        self.m.index_copy_(0, rows, m)
        self.v.index_copy_(0, rows, v)
        denom = (v.sqrt_() / (1 - b2**self.t) ** 0.5).add_(self.eps)
        self.param.index_add_(0, rows, m.div_(denom), alpha=-self.lr / (1 - b1**self.t))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, then restore the process-wide setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def validation_ndcg(
    train: InteractionMatrix, valid: InteractionMatrix, k: int = 10
) -> Callable[[npt.NDArray[np.float32], npt.NDArray[np.float32]], float]:
    """NDCG@k on ``valid`` of the scores ``U Iᵀ``, training items masked: the harness's
    full-ranking protocol, so early stopping optimises exactly what is reported."""
    import torch

    from recfunnel.evaluation.harness import evaluate

    def ndcg(user_vecs: npt.NDArray[np.float32], item_vecs: npt.NDArray[np.float32]) -> float:
        users_t, items_t = torch.from_numpy(user_vecs), torch.from_numpy(item_vecs)
        result = evaluate(
            # torch's GEMM keeps to the thread budget of fit; numpy's BLAS may not.
            lambda u: (users_t.index_select(0, torch.from_numpy(u)) @ items_t.T).numpy(),
            test=valid,
            train=train,
            ks=[k],
            metrics=["ndcg"],
        )
        return result.mean()[f"ndcg@{k}"]

    return ndcg


@dataclass
class TrainingOutcome:
    """Final vectors (those of ``best_epoch``) and the per-epoch history."""

    user_vectors: npt.NDArray[np.float32]
    item_vectors: npt.NDArray[np.float32]
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


class BPRTrainedEmbeddings(CandidateGenerator):
    """Base of generators whose vectors are trained with the BPR loss; score = U Iᵀ.

    Subclasses store their hyper-parameters in ``__init__`` (including those listed in
    :meth:`_check_params`) and provide the propagation ``P`` from ego to final embeddings.
    Learned: ``user_embeddings_`` / ``item_embeddings_`` (final vectors, float32),
    ``history_`` (per epoch: ``epoch``, ``loss``, ``valid_ndcg`` - None when not evaluated -
    and ``seconds`` of training so far, evaluations included),
    ``best_epoch_`` (the epoch whose vectors were kept), ``batch_size_`` (the batch size
    training used: ``batch_size`` unless :meth:`_epoch_batch_size` grows it with the data) and
    ``fit_seconds_``.
    """

    metric: ClassVar[str] = "dot"

    factors: int
    lr: float
    reg: float
    negatives: str
    n_candidates: int
    batch_size: int
    max_epochs: int
    eval_every: int
    patience: int
    init_std: float
    seed: int
    threads: int
    progress: bool

    user_embeddings_: npt.NDArray[np.float32]
    item_embeddings_: npt.NDArray[np.float32]
    history_: list[dict[str, Any]]
    best_epoch_: int
    batch_size_: int
    fit_seconds_: float

    @abstractmethod
    def _propagation(self, seen: sp.csr_matrix) -> Propagation | None:
        """The linear, symmetric map ``P`` from ego embeddings (users over items, n x d) to
        final ones; None for the identity."""

    def _epoch_batch_size(self, n_pairs: int) -> int:
        """The batch size for an epoch over ``n_pairs`` training pairs: ``batch_size``."""
        return int(self.batch_size)

    def _check_params(self) -> None:
        cls = type(self).__name__
        positive = ("factors", "lr", "batch_size", "max_epochs", "eval_every", "patience")
        for name in (*positive, "threads", "n_candidates"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{cls}.{name} must be positive, got {getattr(self, name)!r}")
        for name in ("reg", "init_std"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{cls}.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.negatives not in ("uniform", "hard"):
            raise ConfigError(
                f"{cls}.negatives must be 'uniform' or 'hard', got {self.negatives!r}"
            )

    def _fit(self, interactions: InteractionMatrix, side: SideInfo) -> None:
        self._check_params()
        started = time.perf_counter()
        valid = side.valid if side.valid is not None and len(side.valid) else None
        validate = validation_ndcg(interactions, valid) if valid is not None else None
        with torch_threads(self.threads):
            outcome = self._train(self.seen_, validate)
        self.user_embeddings_ = outcome.user_vectors
        self.item_embeddings_ = outcome.item_vectors
        self.history_ = outcome.history
        self.best_epoch_ = outcome.best_epoch
        self.fit_seconds_ = time.perf_counter() - started

    def _train(
        self,
        seen: sp.csr_matrix,
        validate: Callable[[npt.NDArray[np.float32], npt.NDArray[np.float32]], float] | None,
    ) -> TrainingOutcome:
        import torch

        n_users, n_items = seen.shape
        positives = Positives(seen)
        # Users who have every item have no negative to rank below: they cannot be trained.
        full = np.diff(seen.indptr) >= n_items
        coo = seen.tocoo()
        keep = ~full[coo.row]
        pair_users = coo.row[keep].astype(np.int64)
        pair_items = coo.col[keep].astype(np.int64)
        if not len(pair_users):
            raise ConfigError(
                f"{type(self).__name__}: every user has interacted with every item; "
                "there is nothing to rank"
            )
        rng = np.random.default_rng(self.seed)
        ego = torch.from_numpy(
            (rng.standard_normal((n_users + n_items, self.factors)) * self.init_std).astype(
                np.float32
            )
        )
        propagate = self._propagation(seen)
        adam = Adam(ego, self.lr)
        hard = self.negatives == "hard"
        batch_size = self.batch_size_ = self._epoch_batch_size(len(pair_users))

        def run_epoch() -> float:
            order = rng.permutation(len(pair_users))
            total = 0.0
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                total += self._step(
                    ego, propagate, adam, positives, pair_users[batch], pair_items[batch], rng, hard
                ) * len(batch)
            return total / len(order)

        def vectors() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
            final = (ego if propagate is None else propagate(ego)).numpy()
            return final[:n_users].copy(), final[n_users:].copy()

        return self._early_stopping(run_epoch, vectors, validate)

    def _step(
        self,
        ego: torch.Tensor,
        propagate: Propagation | None,
        adam: Adam,
        positives: Positives,
        users: npt.NDArray[np.int64],
        items: npt.NDArray[np.int64],
        rng: np.random.Generator,
        hard: bool,
    ) -> float:
        """One Adam step on a batch of (user, positive item) pairs; returns the batch loss.

        ``propagate`` None (the identity): a row-sparse step, touching only the rows of the
        batch's users, positives and negatives. Otherwise the propagated gradient is dense and
        so is the step."""
        n_users = positives.n_users
        final = ego if propagate is None else propagate(ego)
        negs = sample_negatives(
            positives,
            users,
            rng,
            n_candidates=self.n_candidates if hard else 1,
            score=partial(score_candidates, final[:n_users], final[n_users:]) if hard else None,
        )
        if propagate is None:
            loss, rows, grad_rows = bpr_objective_rows(
                ego, users, items + n_users, negs + n_users, self.reg
            )
            adam.step_rows(rows, grad_rows)
            return loss
        loss, grad = bpr_objective(
            ego, final, propagate, users, items + n_users, negs + n_users, self.reg
        )
        adam.step(grad)
        return loss

    def _early_stopping(
        self,
        run_epoch: Callable[[], float],
        vectors: Callable[[], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]],
        validate: Callable[[npt.NDArray[np.float32], npt.NDArray[np.float32]], float] | None,
    ) -> TrainingOutcome:
        """Train up to ``max_epochs``; with validation, evaluate every ``eval_every`` epochs,
        stop after ``patience`` evaluations without improvement and keep the best vectors."""
        started = time.perf_counter()
        history: list[dict[str, Any]] = []
        best: tuple[float, int, Any] | None = None
        stale = 0
        epochs: Any = range(1, self.max_epochs + 1)
        if self.progress:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc=type(self).__name__, unit="epoch")
        for epoch in epochs:
            loss = run_epoch()
            ndcg = None
            if validate is not None and (epoch % self.eval_every == 0 or epoch == self.max_epochs):
                vecs = vectors()
                ndcg = validate(*vecs)
                if best is None or ndcg > best[0]:
                    best, stale = (ndcg, epoch, vecs), 0
                else:
                    stale += 1
            seconds = time.perf_counter() - started
            history.append({"epoch": epoch, "loss": loss, "valid_ndcg": ndcg, "seconds": seconds})
            if self.progress:
                shown = {"loss": f"{loss:.4f}"}
                if best is not None:
                    shown["valid_ndcg@10"] = f"{best[0]:.4f}"
                epochs.set_postfix(shown)
            if stale >= self.patience:
                break
        if self.progress:
            epochs.close()
        if best is None:
            user_vecs, item_vecs = vectors()
            return TrainingOutcome(user_vecs, item_vecs, history[-1]["epoch"], history)
        (user_vecs, item_vecs), best_epoch = best[2], best[1]
        return TrainingOutcome(user_vecs, item_vecs, best_epoch, history)

    # ---- scoring and persistence ---------------------------------------------------------
    def user_vectors(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        self._check_fitted()
        return self.user_embeddings_[np.asarray(users, dtype=np.int64)]

    def item_vectors(self) -> npt.NDArray[np.float32]:
        self._check_fitted()
        return self.item_embeddings_

    def _score_users(self, users: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        return _dot(self.user_embeddings_[users], self.item_embeddings_)

    def _score_pairs(
        self, users: npt.NDArray[np.int64], items: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        return pair_dot(self.user_embeddings_, self.item_embeddings_, users, items)

    def _score_similar(self, items: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        # Cosine, not the dot product: raw norms grow with popularity and would rank the
        # most popular items as "similar" to everything.
        vecs = self.item_embeddings_
        unit = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return _dot(unit[items], unit)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"user_embeddings": self.user_embeddings_, "item_embeddings": self.item_embeddings_}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.user_embeddings_ = np.asarray(arrays["user_embeddings"], dtype=np.float32)
        self.item_embeddings_ = np.asarray(arrays["item_embeddings"], dtype=np.float32)


def _dot(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``a bᵀ`` rounded to float32 from a float64 product: BLAS sums in a different order for
    one row than for many, and float32 would let a user's scores depend on the batch."""
    return (a.astype(np.float64) @ b.T.astype(np.float64)).astype(np.float32)
