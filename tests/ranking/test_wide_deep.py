"""Wide & Deep: hashed crosses, the wide + deep sum, and what the crosses buy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recfunnel.core.errors import ConfigError
from recfunnel.core.ranker import RankerFeatures
from recfunnel.evaluation.calibration import roc_auc
from recfunnel.ranking import make_ranker
from recfunnel.ranking.wide_deep import WideDeepNet, wide_ids


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # np.testing: torch.testing's first use imports torch._dynamo (~2.6 s).
    np.testing.assert_allclose(
        actual.detach().numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_wide_ids_are_deterministic_in_range_and_separate_columns() -> None:
    sparse = np.array([[5, 5], [5, 6], [6, 5]])
    ids = wide_ids(sparse, np.array([[0, 1]]), 1 << 20)
    assert ids.shape == (3, 3) and ids.dtype == np.int64
    assert ((ids >= 0) & (ids < 1 << 20)).all()
    np.testing.assert_array_equal(ids, wide_ids(sparse, np.array([[0, 1]]), 1 << 20))
    assert ids[0, 0] != ids[0, 1]  # value 5 in column 0 is not value 5 in column 1
    assert len({ids[0, 2], ids[1, 2], ids[2, 2]}) == 3  # (5,5), (5,6), (6,5) cross apart
    # Large ids (hash spaces up to 2**63) do not overflow.
    assert (wide_ids(np.array([[2**62, 3]]), np.array([[0, 1]]), 97) < 97).all()


def test_logit_is_wide_plus_deep() -> None:
    torch.manual_seed(0)
    net = WideDeepNet([4, 6], 2, wide_buckets=32, embedding_dim=3, hidden_units=[5])
    with torch.no_grad():
        net.wide.weights.weight.normal_()
    dense = torch.randn(7, 2)
    sparse = torch.randint(0, 4, (7, 2))
    wide = torch.randint(0, 32, (7, 3))
    x = net.dense_arch(dense)
    wide_part = net.wide.weights.weight[wide].sum(dim=(1, 2)) + x @ net.wide.dense_weight
    deep_in = torch.cat([net.sparse_arch(sparse).flatten(1), x], dim=1)
    deep_part = net.over_arch(net.deep(deep_in))
    assert_close(net(dense, sparse, wide), wide_part + net.wide.bias + deep_part)


def xor_data(n: int, seed: int) -> tuple[RankerFeatures, np.ndarray]:
    """The label is the parity of two categorical columns: no column alone predicts it."""
    rng = np.random.default_rng(seed)
    sparse = rng.integers(0, 20, size=(n, 2))
    y = ((sparse[:, 0] + sparse[:, 1]) % 2).astype(float)
    return RankerFeatures(np.zeros((n, 0), np.float32), sparse, n_buckets=(20, 20)), y


def test_crosses_memorise_an_interaction_the_columns_alone_cannot() -> None:
    train, y = xor_data(4000, 0)
    test, y_test = xor_data(1000, 1)
    common = {"hidden_units": (), "embedding_dim": 1, "n_epochs": 10, "lr": 0.05}
    # hidden_units=() and a 1-d embedding leave the deep part linear: only crosses help.
    crossed = make_ranker("wide_deep", crosses="all_pairs", **common).fit(train, y)
    plain = make_ranker("wide_deep", crosses="none", **common).fit(train, y)
    assert roc_auc(y_test, crossed.predict(test)) > 0.99
    assert abs(roc_auc(y_test, plain.predict(test)) - 0.5) < 0.1


def test_crosses_by_name_and_errors() -> None:
    train, y = xor_data(200, 0)
    named = RankerFeatures(train.dense, train.sparse, sparse_names=("user", "item"))
    model = make_ranker("wide_deep", crosses=[["user", "item"]], n_epochs=1).fit(named, y)
    assert model.cross_pairs_.tolist() == [[0, 1]]
    with pytest.raises(ConfigError, match="no sparse column 'country'"):
        make_ranker("wide_deep", crosses=[["user", "country"]]).fit(named, y)
    with pytest.raises(ConfigError, match="all_pairs"):
        make_ranker("wide_deep", crosses="some").fit(named, y)
