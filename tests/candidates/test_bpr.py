"""BPR-MF and the shared BPR training machinery: sampling, gradients, Adam, early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recfunnel.candidates import _training
from recfunnel.candidates._training import (
    Adam,
    Positives,
    bpr_objective,
    bpr_objective_rows,
    sample_negatives,
    validation_ndcg,
)
from recfunnel.candidates.bpr import BPR
from recfunnel.core.errors import ConfigError
from recfunnel.core.generator import EmbeddingModel
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.data.splits import random_split

FAST = {"factors": 8, "batch_size": 256, "max_epochs": 30}


def clustered_log(seed: int = 0, n_users: int = 60, n_items: int = 40, per_user: int = 12):
    """Users prefer the items of their own of 4 clusters (80% of their picks)."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        own = np.arange(n_items)[np.arange(n_items) % 4 == u % 4]
        k_own = int(per_user * 0.8)
        picks = set(rng.choice(own, k_own, replace=False).tolist())
        while len(picks) < per_user:
            picks.add(int(rng.integers(n_items)))
        users += [f"u{u}"] * len(picks)
        items += [f"i{i}" for i in sorted(picks)]
    return InteractionMatrix.from_arrays(users, items)


def test_seed_makes_training_deterministic() -> None:
    data = clustered_log()
    a = BPR(**FAST, seed=3).fit(data)
    b = BPR(**FAST, seed=3).fit(data)
    c = BPR(**FAST, seed=4).fit(data)
    np.testing.assert_array_equal(a.user_embeddings_, b.user_embeddings_)
    np.testing.assert_array_equal(a.item_embeddings_, b.item_embeddings_)
    assert not np.array_equal(a.item_embeddings_, c.item_embeddings_)


@pytest.mark.parametrize("dense", [True, False])
def test_hard_and_uniform_negatives_are_never_positives(dense: bool, monkeypatch) -> None:
    if not dense:  # the binary-search path used for large users x items tables
        monkeypatch.setattr(_training, "DENSE_POSITIVES_LIMIT", 0)
    rng = np.random.default_rng(0)
    x = (rng.random((30, 12)) < 0.6).astype(np.float32)
    x[0, :-1] = 1.0  # a user with a single non-positive: hard draws are nearly all positives
    x[0, -1] = 0.0
    seen = sp.csr_matrix(x)
    positives = Positives(seen)
    users = rng.integers(0, 30, 5000)

    def adversarial(u: np.ndarray, cand: np.ndarray) -> np.ndarray:
        return x[u[:, None], cand] * 10.0  # positives score highest: they must still be skipped

    for score, n_cand in ((None, 1), (adversarial, 6)):
        neg = sample_negatives(positives, users, rng, n_candidates=n_cand, score=score)
        assert not x[users, neg].any()
        assert (neg[users == 0] == 11).all()
    assert positives.contains(users, neg).sum() == 0


def test_hard_negatives_pick_the_best_scored_candidate() -> None:
    seen = sp.csr_matrix(np.eye(4, 50, dtype=np.float32))
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(4), 200)
    neg = sample_negatives(
        Positives(seen), users, rng, n_candidates=8, score=lambda u, c: c.astype(np.float32)
    )
    uniform = sample_negatives(Positives(seen), users, rng)
    # The max of 8 uniform draws over 50 items sits far above the uniform mean of ~25.
    assert neg.mean() > 40 > 30 > uniform.mean()


def test_objective_gradient_matches_autograd() -> None:
    rng = np.random.default_rng(0)
    ego = torch.from_numpy(rng.standard_normal((9, 4)).astype(np.float32))
    users = np.array([0, 1, 1, 3])
    pos, neg = np.array([5, 6, 8, 5]), np.array([7, 7, 4, 6])
    loss, grad = bpr_objective(ego, ego, lambda e: e, users, pos, neg, reg=0.1)

    e = ego.clone().requires_grad_(True)
    x = (e[users] * (e[pos] - e[neg])).sum(1)
    ref = -torch.nn.functional.logsigmoid(x).mean()
    ref = ref + 0.05 * (e[users].pow(2).sum() + e[pos].pow(2).sum() + e[neg].pow(2).sum()) / 4
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-5)
    # numpy, not torch.testing: its first call imports torch._dynamo (seconds).
    np.testing.assert_allclose(grad.numpy(), e.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_adam_matches_the_reference_update() -> None:
    p = torch.tensor([1.0, -2.0])
    adam = Adam(p, lr=0.1)
    ref, m, v = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
    for t, g in enumerate([np.array([0.5, -1.0]), np.array([0.1, 2.0])], start=1):
        adam.step(torch.tensor(g, dtype=torch.float32))
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref -= 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(p.numpy(), ref, rtol=1e-6)


def test_row_objective_is_the_dense_objective_restricted_to_the_batch_rows() -> None:
    rng = np.random.default_rng(0)
    ego = torch.from_numpy(rng.standard_normal((12, 4)).astype(np.float32))
    users = np.array([0, 1, 1, 3])
    pos, neg = np.array([5, 6, 8, 5]), np.array([7, 7, 4, 6])
    loss, grad = bpr_objective(ego, ego, lambda e: e, users, pos, neg, reg=0.1)
    loss_rows, rows, grad_rows = bpr_objective_rows(ego, users, pos, neg, reg=0.1)
    assert rows.tolist() == sorted({*users, *pos, *neg})
    assert loss_rows == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(grad_rows.numpy(), grad.numpy()[rows.numpy()], rtol=1e-5, atol=1e-8)
    others = np.setdiff1d(np.arange(12), rows.numpy())
    assert not grad.numpy()[others].any()


def test_lazy_adam_touches_only_the_given_rows() -> None:
    rng = np.random.default_rng(0)
    p = torch.from_numpy(rng.standard_normal((6, 3)).astype(np.float32))
    adam = Adam(p, lr=0.1)
    adam.step(torch.from_numpy(rng.standard_normal((6, 3)).astype(np.float32)))
    # After a dense step every row has momentum: a dense step would keep moving them all.
    before = (p.clone(), adam.m.clone(), adam.v.clone())
    rows, g = torch.tensor([1, 4]), torch.from_numpy(rng.standard_normal((2, 3)).astype(np.float32))
    adam.step_rows(rows, g)
    assert adam.t == 2
    untouched = [0, 2, 3, 5]
    for now, then in zip((p, adam.m, adam.v), before, strict=True):
        np.testing.assert_array_equal(now.numpy()[untouched], then.numpy()[untouched])
    # The touched rows get exactly Adam's update, bias-corrected with the global step count.
    m = 0.9 * before[1].numpy()[[1, 4]] + 0.1 * g.numpy()
    v = 0.999 * before[2].numpy()[[1, 4]] + 0.001 * g.numpy() ** 2
    ref = before[0].numpy()[[1, 4]] - 0.1 * (m / (1 - 0.9**2)) / (
        np.sqrt(v / (1 - 0.999**2)) + 1e-8
    )
    np.testing.assert_allclose(adam.m.numpy()[[1, 4]], m, rtol=1e-6)
    np.testing.assert_allclose(adam.v.numpy()[[1, 4]], v, rtol=1e-6)
    np.testing.assert_allclose(p.numpy()[[1, 4]], ref, rtol=1e-5)


def test_bpr_step_touches_only_the_rows_of_the_batch() -> None:
    # User 3 has every item but item 9 as a positive, so item 9 is its only negative.
    n_users, n_items = 5, 10
    dense = np.zeros((n_users, n_items), np.float32)
    dense[:3, :4] = 1
    dense[3, :9] = 1
    dense[4, 5] = 1
    positives = Positives(sp.csr_matrix(dense))
    rng = np.random.default_rng(0)
    ego = torch.from_numpy(rng.standard_normal((n_users + n_items, 4)).astype(np.float32))
    adam = Adam(ego, lr=0.05)
    for negatives in ("uniform", "hard"):
        model = BPR(factors=4, reg=0.01, negatives=negatives)
        # A first step on other users gives momentum to many rows.
        users, items = np.array([0, 1, 2, 4]), np.array([0, 1, 3, 5])
        model._step(ego, None, adam, positives, users, items, rng, negatives == "hard")
        before = (ego.clone(), adam.m.clone(), adam.v.clone())
        users, items = np.array([3, 3]), np.array([2, 7])
        model._step(ego, None, adam, positives, users, items, rng, negatives == "hard")
        batch_rows = {3, n_users + 2, n_users + 7, n_users + 9}
        untouched = [r for r in range(n_users + n_items) if r not in batch_rows]
        for now, then in zip((ego, adam.m, adam.v), before, strict=True):
            np.testing.assert_array_equal(now.numpy()[untouched], then.numpy()[untouched])
            assert (now.numpy()[sorted(batch_rows)] != then.numpy()[sorted(batch_rows)]).all()


def test_training_loss_decreases_and_model_is_an_embedding_model() -> None:
    data = clustered_log()
    model = BPR(**FAST, negatives="uniform").fit(data)
    losses = [h["loss"] for h in model.history_]
    assert len(losses) == FAST["max_epochs"] and model.best_epoch_ == FAST["max_epochs"]
    assert losses[-1] < 0.5 * losses[0]
    assert isinstance(model, EmbeddingModel) and model.metric == "dot"
    users = np.arange(data.n_users)
    np.testing.assert_allclose(
        model.score_users(users), model.user_vectors(users) @ model.item_vectors().T, atol=1e-5
    )


def reference_ndcg10(train: InteractionMatrix, valid: InteractionMatrix):
    """Brute-force NDCG@10 of U Iᵀ on ``valid`` with training items masked (binary gains,
    mean over users with a validation item)."""
    seen, target = train.to_csr().toarray() > 0, valid.to_csr().toarray() > 0

    def ndcg(u: np.ndarray, i: np.ndarray) -> float:
        scores = np.where(seen, -np.inf, u.astype(np.float64) @ i.T.astype(np.float64))
        values = []
        for row in np.flatnonzero(target.any(axis=1)):
            top = np.argsort(-scores[row], kind="stable")[:10]
            dcg = (target[row, top] / np.log2(np.arange(2, 12))).sum()
            idcg = (1 / np.log2(np.arange(2, 2 + min(10, target[row].sum())))).sum()
            values.append(dcg / idcg)
        return float(np.mean(values))

    return ndcg


def small_split():
    split = random_split(clustered_log(), (0.7, 0.3, 0.0), seed=0)
    return split.train, split.valid


def test_validation_ndcg_is_the_reference_ndcg() -> None:
    train, valid = small_split()
    rng = np.random.default_rng(0)
    u = rng.standard_normal((train.n_users, 4)).astype(np.float32)
    i = rng.standard_normal((train.n_items, 4)).astype(np.float32)
    expected = reference_ndcg10(train, valid)(u, i)
    assert validation_ndcg(train, valid)(u, i) == pytest.approx(expected, rel=1e-6)


def test_early_stopping_keeps_the_best_evaluated_epoch(monkeypatch) -> None:
    train, valid = small_split()
    # The reference metric instead of the harness keeps this test free of its JIT warm-up.
    monkeypatch.setattr(_training, "validation_ndcg", reference_ndcg10)
    # A large learning rate overfits fast: the validation curve rises, then falls.
    model = BPR(factors=16, lr=0.1, reg=0.0, batch_size=128, max_epochs=60, patience=3)
    model.fit(train, valid=valid)
    evaluated = [
        (h["valid_ndcg"], h["epoch"]) for h in model.history_ if h["valid_ndcg"] is not None
    ]
    assert [e for _, e in evaluated] == list(range(2, 2 * len(evaluated) + 1, 2))
    best_ndcg, best_epoch = max(evaluated, key=lambda t: (t[0], -t[1]))
    assert model.best_epoch_ == best_epoch < model.history_[-1]["epoch"]
    # Stopped after `patience` evaluations without improvement.
    assert model.history_[-1]["epoch"] == best_epoch + 3 * model.eval_every
    again = reference_ndcg10(train, valid)(model.user_embeddings_, model.item_embeddings_)
    assert again == pytest.approx(best_ndcg, abs=1e-12)
    assert model.fit_seconds_ > 0


def test_early_stopping_loop_on_a_scripted_validation_curve() -> None:
    curve = {2: 0.1, 4: 0.3, 6: 0.3, 8: 0.2}  # a tie does not count as an improvement
    epoch = 0

    def run_epoch() -> float:
        nonlocal epoch
        epoch += 1
        return 1.0 / epoch

    def vectors() -> tuple[np.ndarray, np.ndarray]:
        return np.full((1, 1), epoch, np.float32), np.zeros((1, 1), np.float32)

    model = BPR(eval_every=2, patience=2, max_epochs=50)
    out = model._early_stopping(run_epoch, vectors, lambda u, i: curve[int(u[0, 0])])
    assert out.best_epoch == 4 and out.user_vectors[0, 0] == 4
    assert [h["epoch"] for h in out.history] == list(range(1, 9))
    assert [h["valid_ndcg"] for h in out.history][1::2] == [0.1, 0.3, 0.3, 0.2]
    assert out.history[0]["valid_ndcg"] is None and out.history[2]["loss"] == 1 / 3


def test_users_with_every_item_are_skipped_or_refused() -> None:
    data = InteractionMatrix.from_arrays(list("aabbc"), list("xyxyx"))  # a and b have all
    BPR(**FAST).fit(data)  # c can still be trained
    full = InteractionMatrix.from_arrays(list("aabb"), list("xyxy"))
    with pytest.raises(ConfigError, match="every user has interacted with every item"):
        BPR(**FAST).fit(full)


@pytest.mark.parametrize(
    ("param", "value"),
    [("negatives", "popular"), ("lr", 0.0), ("factors", 0), ("reg", -1.0), ("patience", 0)],
)
def test_bad_parameters_are_refused_at_fit(param: str, value: object) -> None:
    model = BPR(**{param: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=param):
        model.fit(clustered_log())
