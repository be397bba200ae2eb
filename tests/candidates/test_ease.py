"""EASE against an independent solution of its constrained least-squares problem."""

from __future__ import annotations

import numpy as np
import pytest

from recfunnel.candidates._gram import item_gram, mirror_upper
from recfunnel.candidates.ease import EASE
from recfunnel.core.errors import ConfigError
from recfunnel.core.ids import IdIndex
from recfunnel.core.matrix import InteractionMatrix


def _random_log(seed: int, n_users: int = 40, n_items: int = 15, n: int = 200) -> InteractionMatrix:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n)
    i = (rng.zipf(1.5, n) - 1) % n_items
    return InteractionMatrix.from_arrays([f"u{x}" for x in u], [f"i{x}" for x in i])


def _ease_by_ridge(x: np.ndarray, reg: float) -> np.ndarray:
    """min ‖X − XB‖² + λ‖B‖² s.t. diag(B) = 0 splits by column: column j of B is the ridge
    regression of X[:, j] on the other columns, solved here directly, one column at a time."""
    n = x.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        others = np.delete(np.arange(n), j)
        a = x[:, others]
        b[others, j] = np.linalg.solve(a.T @ a + reg * np.eye(n - 1), a.T @ x[:, j])
    return b


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("reg", [0.5, 10.0, 250.0])
def test_closed_form_matches_per_column_ridge(seed: int, reg: float) -> None:
    data = _random_log(seed)
    x = data.to_csr().toarray().astype(np.float64)
    model = EASE(reg=reg).fit(data)
    expected = _ease_by_ridge(x, reg)
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-5, atol=1e-6)
    assert model.weights_.dtype == np.float32
    assert not np.diag(model.weights_).any()
    np.testing.assert_allclose(
        model.score_users(np.arange(data.n_users)), x @ expected, rtol=1e-5, atol=1e-6
    )


def test_similar_items_is_the_row_of_b() -> None:
    data = _random_log(7)
    model = EASE(reg=5.0).fit(data)
    item = data.items.ids[0]
    sim = model.similar_items([item], n=data.n_items - 1)[0]
    row = model.weights_[0]
    np.testing.assert_allclose(sim.scores, row[data.items.encode(sim.ids)])
    assert list(sim.scores) == sorted(row[1:].tolist(), reverse=True)


def test_items_without_interactions_get_zero_weights() -> None:
    items = IdIndex(["x", "y", "z", "never"], kind="item")
    data = InteractionMatrix.from_arrays(list("aabbc"), list("xyxzy"), items=items)
    w = EASE(reg=1.0).fit(data).weights_
    assert np.isfinite(w).all()
    assert not w[3].any() and not w[:, 3].any()


def test_bad_params_and_too_many_items() -> None:
    data = _random_log(0)
    for reg in (0.0, -1.0):
        with pytest.raises(ConfigError, match="reg must be > 0"):
            EASE(reg=reg).fit(data)
    with pytest.raises(ConfigError, match=r"15 x 15 item-item matrix .*GiB.*max_items=10"):
        EASE(max_items=10).fit(data)
    assert EASE(max_items=None).fit(data).weights_.shape == (15, 15)


def test_mirror_upper_tiles() -> None:
    rng = np.random.default_rng(0)
    sym = rng.random((11, 11))
    sym = sym + sym.T
    upper_only = np.asfortranarray(np.triu(sym) + np.tril(rng.random((11, 11)), -1))
    np.testing.assert_array_equal(mirror_upper(upper_only, block=4), sym)


def test_item_gram_kernel_matches_the_dense_product() -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    # Above the size where the numba kernel takes over; weighted entries, empty rows/columns.
    x = sp.random(900, 300, density=0.25, random_state=rng, format="csr", dtype=np.float64)
    x.data = rng.integers(1, 4, x.nnz).astype(np.float64)
    assert x.nnz >= 50_000
    dense = x.toarray()
    for dtype in (np.float32, np.float64):
        got = item_gram(x, dtype)
        assert got.dtype == dtype and got.flags.c_contiguous
        np.testing.assert_allclose(got, np.triu(dense.T @ dense), rtol=1e-6)
    # The kernel's path through the whole fit, against the independent column-wise solution.
    data = _random_log(5, n_users=3000, n_items=200, n=200_000)
    assert data.to_csr().nnz >= 50_000
    model = EASE(reg=250.0, dtype="float64").fit(data)
    expected = _ease_by_ridge(data.to_csr().toarray().astype(np.float64), 250.0)
    np.testing.assert_allclose(model.weights_, expected, rtol=1e-4, atol=1e-6)
