"""LightGCN against dense references: the normalised graph, its propagation, its gradient."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recfunnel.candidates._training import bpr_objective
from recfunnel.candidates.bpr import BPR
from recfunnel.candidates.lightgcn import LightGCN, normalized_adjacency
from recfunnel.core.errors import ConfigError
from recfunnel.core.matrix import InteractionMatrix


def tiny_graph() -> sp.csr_matrix:
    """4 users x 5 items; user 3 and item 4 have no interaction (isolated nodes)."""
    r = np.array(
        [[1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 0, 0, 0, 0]], dtype=np.float32
    )
    return sp.csr_matrix(r)


def dense_propagation(r: np.ndarray, n_layers: int) -> np.ndarray:
    """(1 / (L+1)) Σ_l Â^l written densely from the paper's definition."""
    n_users, n_items = r.shape
    a = np.zeros((n_users + n_items,) * 2)
    a[:n_users, n_users:] = r
    a[n_users:, :n_users] = r.T
    deg = a.sum(axis=1)
    d = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    a_hat = d[:, None] * a * d[None, :]
    return sum(np.linalg.matrix_power(a_hat, k) for k in range(n_layers + 1)) / (n_layers + 1)


def test_normalized_adjacency_matches_dense_definition() -> None:
    r = tiny_graph()
    n = sum(r.shape)
    expected = dense_propagation(r.toarray(), 1) * 2 - np.eye(n)  # (I + Â) / 2 -> Â
    np.testing.assert_allclose(normalized_adjacency(r).toarray(), expected, atol=1e-7)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_propagation_is_the_mean_of_adjacency_powers(n_layers: int) -> None:
    r = tiny_graph()
    e = np.random.default_rng(0).standard_normal((sum(r.shape), 3)).astype(np.float32)
    propagate = LightGCN(n_layers=n_layers)._propagation(r)
    assert propagate is not None
    out = propagate(torch.from_numpy(e.copy())).numpy()
    np.testing.assert_allclose(out, dense_propagation(r.toarray(), n_layers) @ e, atol=1e-6)
    # Isolated nodes keep only their own (layer-0) share.
    np.testing.assert_allclose(out[3], e[3] / (n_layers + 1), atol=1e-7)


def test_objective_gradient_through_propagation_matches_autograd() -> None:
    r = tiny_graph()
    propagate = LightGCN(n_layers=2)._propagation(r)
    assert propagate is not None
    rng = np.random.default_rng(1)
    ego = torch.from_numpy(rng.standard_normal((9, 3)).astype(np.float32))
    users, pos, neg = np.array([0, 1, 2, 2]), np.array([4, 5, 6, 7]), np.array([8, 6, 5, 4])
    loss, grad = bpr_objective(ego, propagate(ego), propagate, users, pos, neg, reg=0.1)

    m = torch.tensor(dense_propagation(r.toarray(), 2), dtype=torch.float32)
    e = ego.clone().requires_grad_(True)
    f = m @ e
    ref = -torch.nn.functional.logsigmoid((f[users] * (f[pos] - f[neg])).sum(1)).mean()
    ref = ref + 0.05 * (e[users].pow(2).sum() + e[pos].pow(2).sum() + e[neg].pow(2).sum()) / 4
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(grad.numpy(), e.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_zero_layers_is_bpr_mf() -> None:
    data = InteractionMatrix.from_arrays(list("aabbbcc"), list("xyxyzwz"))
    shared = ("factors", "lr", "reg", "negatives", "n_candidates", "batch_size", "init_std")
    params = {k: getattr(BPR(), k) for k in shared} | {"factors": 4, "max_epochs": 5, "seed": 2}
    gcn = LightGCN(n_layers=0, **params).fit(data)
    mf = BPR(**params).fit(data)
    np.testing.assert_array_equal(gcn.item_embeddings_, mf.item_embeddings_)


def test_training_is_deterministic_and_learns() -> None:
    data = InteractionMatrix.from_arrays(
        [f"u{u}" for u in range(12) for _ in range(3)],
        [f"i{(u % 3) * 3 + k}" for u in range(12) for k in range(3)],
    )
    a = LightGCN(factors=8, max_epochs=40, seed=5).fit(data)
    b = LightGCN(factors=8, max_epochs=40, seed=5).fit(data)
    np.testing.assert_array_equal(a.user_embeddings_, b.user_embeddings_)
    assert a.history_[-1]["loss"] < 0.5 * a.history_[0]["loss"]
    # Users of a cluster score their own cluster's items above all others.
    scores = a.score_users(np.arange(12))
    own = np.array([[(i // 3) == (u % 3) for i in range(9)] for u in range(12)])
    assert (np.where(own, scores, np.inf).min(1) > np.where(own, -np.inf, scores).max(1)).all()


def test_batches_per_epoch_are_bounded_by_growing_the_batch() -> None:
    data = InteractionMatrix.from_arrays(
        [f"u{u}" for u in range(12) for _ in range(3)],
        [f"i{(u % 3) * 3 + k}" for u in range(12) for k in range(3)],
    )
    steps: list[int] = []

    class Counting(LightGCN):
        def _step(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            steps.append(len(args[4]))
            return super()._step(*args, **kwargs)

    model = Counting(factors=4, batch_size=4, max_batches=3, max_epochs=2).fit(data)
    assert model.batch_size_ == 12  # ceil(36 pairs / 3 batches)
    assert steps == [12, 12, 12] * 2
    steps.clear()
    model = Counting(factors=4, batch_size=4, max_batches=None, max_epochs=1).fit(data)
    assert model.batch_size_ == 4 and steps == [4] * 9
    assert LightGCN(batch_size=8192)._epoch_batch_size(800_000) == 8192
    assert LightGCN(batch_size=8192, max_batches=100)._epoch_batch_size(50_000_000) == 500_000


@pytest.mark.parametrize("max_batches", [0, -2, 2.5])
def test_bad_max_batches_are_refused(max_batches: object) -> None:
    data = InteractionMatrix.from_arrays(list("aab"), list("xyx"))
    with pytest.raises(ConfigError, match="max_batches"):
        LightGCN(max_batches=max_batches).fit(data)  # type: ignore[arg-type]


@pytest.mark.parametrize("n_layers", [-1, 1.5])
def test_bad_layer_counts_are_refused(n_layers: object) -> None:
    data = InteractionMatrix.from_arrays(list("ab"), list("xy"))
    with pytest.raises(ConfigError, match="n_layers"):
        LightGCN(n_layers=n_layers).fit(data)  # type: ignore[arg-type]
