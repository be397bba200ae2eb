"""ALS: the confidence model of Hu et al., fold-in, and agreement with implicit itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recfunnel.candidates import REGISTRY, load_generator
from recfunnel.candidates.als import ALS as _ALS
from recfunnel.candidates.als import AUTO_REG_PER_INTERACTION
from recfunnel.core.errors import ConfigError, NotFittedError
from recfunnel.core.generator import EmbeddingModel
from recfunnel.core.matrix import InteractionMatrix


def ALS(**params: object) -> _ALS:
    # One thread: on a busy machine OpenMP's barriers cost ~1 s per fit of even a tiny log.
    params.setdefault("num_threads", 1)
    return _ALS(**params)  # type: ignore[arg-type]


def _random_log(seed: int, n_users: int = 30, n_items: int = 20, n: int = 240) -> InteractionMatrix:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n)
    i = (rng.zipf(1.4, n) - 1) % n_items
    return InteractionMatrix.from_arrays([f"u{x}" for x in u], [f"i{x}" for x in i])


def _blocks(n_blocks: int = 3, users: int = 8, items: int = 6, seed: int = 0) -> InteractionMatrix:
    """Users of block b interact with 4 random items of block b only."""
    rng = np.random.default_rng(seed)
    uu, ii = [], []
    for b in range(n_blocks):
        for u in range(users):
            for j in rng.choice(items, 4, replace=False):
                uu.append(f"u{b}_{u}")
                ii.append(f"i{b}_{j}")
    return InteractionMatrix.from_arrays(uu, ii)


def _exact_step(fixed: np.ndarray, rows: sp.csr_matrix, alpha: float, reg: float) -> np.ndarray:
    """One exact ALS half-step, written from Hu et al.'s equations: for each row r,
    (FᵀC_rF + λI)⁻¹ FᵀC_r p_r with c = 1 + alpha on observed cells, 1 elsewhere."""
    f = fixed.astype(np.float64)
    out = np.zeros((rows.shape[0], f.shape[1]))
    for r in range(rows.shape[0]):
        c = 1.0 + alpha * rows[r].toarray().ravel()
        p = (rows[r].toarray().ravel() > 0).astype(np.float64)
        out[r] = np.linalg.solve((f.T * c) @ f + reg * np.eye(f.shape[1]), f.T @ (c * p))
    return out


def _engine(model: _ALS) -> Any:
    """implicit's own model carrying our factors, as implicit sees them (alpha folded in)."""
    from implicit.cpu.als import AlternatingLeastSquares

    engine = AlternatingLeastSquares(
        factors=model.factors, regularization=model.regularization_, alpha=1.0, num_threads=1
    )
    engine.user_factors = model.user_factors_
    engine.item_factors = model.item_factors_
    return engine


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_last_item_step_is_the_exact_hu_et_al_solution(alpha: float) -> None:
    # The fit ends with an item step, so with the exact solver the item vectors solve it
    # exactly given the user vectors: this pins down c = 1 + alpha and λ.
    data = _random_log(0)
    model = ALS(factors=5, regularization=0.7, alpha=alpha, iterations=3, use_cg=False).fit(data)
    expected = _exact_step(model.user_factors_, data.to_csr().T.tocsr(), alpha, 0.7)
    np.testing.assert_allclose(model.item_factors_, expected, rtol=1e-3, atol=1e-4)


def test_fold_in_reproduces_trained_user_vectors() -> None:
    # At convergence the user step no longer moves anything: folding in a training user's own
    # history gives back their trained vector.
    data = _random_log(1)
    model = ALS(factors=4, regularization=1.0, iterations=60, use_cg=False).fit(data)
    histories = [
        data.items.decode(row.indices).tolist() for row in data.to_csr()[np.arange(data.n_users)]
    ]
    folded = model.fold_in(histories)
    np.testing.assert_allclose(folded, model.user_factors_, atol=2e-3 * np.abs(folded).max())
    # The exact user step itself, against the reference, to solver precision.
    expected = _exact_step(model.item_factors_, data.to_csr(), model.alpha, 1.0)
    np.testing.assert_allclose(folded, expected, rtol=1e-4, atol=1e-5)


def test_fold_in_agrees_with_implicit_recalculate_user() -> None:
    data = _random_log(2)
    model = ALS(factors=8, regularization=2.0, alpha=4.0).fit(data)
    seen = data.to_csr()
    confidence = seen.copy()
    confidence.data = 1.0 + 4.0 * confidence.data
    theirs = _engine(model).recalculate_user(np.arange(data.n_users), confidence)
    np.testing.assert_allclose(model.fold_in(seen), theirs, rtol=1e-3, atol=1e-4)


def test_recommend_agrees_with_implicit() -> None:
    data = _random_log(3)
    model = ALS(factors=8).fit(data)
    users = np.arange(6)
    ids, scores = _engine(model).recommend(users, data.to_csr()[users], N=5)
    ours = model.recommend(data.users.decode(users).tolist(), n=5)
    for row_ids, row_scores, rec in zip(ids, scores, ours, strict=True):
        assert rec.ids == tuple(data.items.decode(row_ids).tolist())
        np.testing.assert_allclose(rec.scores, row_scores, rtol=1e-5, atol=1e-6)
    # similar_items: implicit's cosine ranking, less the item itself (its own best match).
    items = np.arange(4)
    sim_ids, sim_scores = _engine(model).similar_items(items, N=6)
    ours_sim = model.similar_items(data.items.decode(items).tolist(), n=5)
    for item, row_ids, row_scores, rec in zip(items, sim_ids, sim_scores, ours_sim, strict=True):
        assert row_ids[0] == item
        assert rec.ids == tuple(data.items.decode(row_ids[1:]).tolist())
        np.testing.assert_allclose(rec.scores, row_scores[1:], rtol=1e-5, atol=1e-6)


def test_new_user_gets_their_blocks_items_first() -> None:
    data = _blocks()
    model = ALS(factors=6).fit(data)
    for b in range(3):
        history = [f"i{b}_0", f"i{b}_1"]
        rec = model.recommend_new([history], n=6)[0]
        assert [i.split("_")[0] for i in rec.ids[:4]] == [f"i{b}"] * 4
        assert not set(history) & set(rec.ids)


def test_history_forms_agree() -> None:
    data = _random_log(4)
    model = ALS(factors=6).fit(data)
    lists = [["i0", "i3", "i0", "not-an-item"], [], ["i5"]]
    csr = sp.csr_matrix(
        ([2.0, 1.0, 1.0], ([0, 0, 2], data.items.encode(["i0", "i3", "i5"]))),
        shape=(3, data.n_items),
    )
    folded = model.fold_in(lists)
    np.testing.assert_array_equal(folded, model.fold_in(csr))
    assert not folded[1].any()  # an empty history is the zero vector
    assert model.recommend_new(lists, n=3) == model.recommend_new(csr, n=3)
    with_seen = model.recommend_new([["i0"]], n=data.n_items, exclude_seen=False)[0]
    assert "i0" in with_seen.ids and len(with_seen) == data.n_items
    assert "i0" not in model.recommend_new([["i0"]], n=data.n_items)[0].ids
    with pytest.raises(ConfigError, match="columns"):
        model.fold_in(sp.csr_matrix((1, data.n_items + 1)))
    with pytest.raises(ConfigError, match="not a string"):
        model.fold_in(["i0"])
    with pytest.raises(ConfigError, match="positive"):
        model.recommend_new([["i0"]], n=0)
    with pytest.raises(NotFittedError):
        _ALS().fold_in([["i0"]])


def test_embedding_model_and_persistence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "als", "recfunnel.candidates.als:ALS")
    data = _random_log(5)
    model = ALS(factors=6).fit(data)
    assert isinstance(model, EmbeddingModel) and model.metric == "dot"
    users = np.arange(data.n_users)
    np.testing.assert_allclose(
        model.score_users(users),
        model.user_vectors(users) @ model.item_vectors().T,
        rtol=1e-5,
        atol=1e-6,
    )
    loaded = load_generator(model.save(tmp_path / "als"))
    assert isinstance(loaded, _ALS) and loaded.regularization_ == model.regularization_
    np.testing.assert_array_equal(loaded.fold_in([["i1", "i2"]]), model.fold_in([["i1", "i2"]]))


def test_auto_regularization_scales_with_interactions_per_user() -> None:
    data = _random_log(6)
    seen = data.to_csr()
    active = int((seen.getnnz(axis=1) > 0).sum())
    auto = ALS(factors=4).fit(data).regularization_
    assert auto == pytest.approx(AUTO_REG_PER_INTERACTION * seen.nnz / active)
    assert ALS(factors=4, regularization=3).fit(data).regularization_ == 3.0


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"factors": 0}, "factors must be a positive integer"),
        ({"iterations": 2.5}, "iterations must be a positive integer"),
        ({"regularization": -1.0}, "regularization must be"),
        ({"regularization": "big"}, "regularization must be"),
        ({"alpha": -0.5}, "alpha must be"),
        ({"num_threads": -1}, "num_threads"),
    ],
)
def test_bad_params(params: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ALS(**params).fit(_random_log(0))
