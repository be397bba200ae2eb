"""DCN-v2: the cross layer is the paper's formula, the structures wire as in the paper, and
the hand-written Adam matches torch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recfunnel.core.errors import ConfigError
from recfunnel.core.ranker import RankerFeatures
from recfunnel.ranking import make_ranker
from recfunnel.ranking.dcn import DCNv2Net
from recfunnel.ranking.nn.cross import CrossLayer, CrossNet
from recfunnel.ranking.nn.training import Adam


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # np.testing: torch.testing's first use imports torch._dynamo (~2.6 s).
    np.testing.assert_allclose(
        actual.detach().numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-6
    )


def test_cross_layer_hand_computed() -> None:
    # x0 = (1, 2, 3), W = [[1,0,1],[0,2,0],[1,1,0]], b = (0, 1, -1), x_l = x0:
    # W x0 = (1+3, 4, 1+2) = (4, 4, 3); + b = (4, 5, 2); x0 ⊙ that = (4, 10, 6); + x0 = (5, 12, 9)
    layer = CrossLayer(3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0, 1], [0, 2, 0], [1, 1, 0]]))
        layer.bias.copy_(torch.tensor([0.0, 1, -1]))
    x0 = torch.tensor([[1.0, 2, 3]])
    x1 = layer(x0, x0)
    assert x1.tolist() == [[5.0, 12.0, 9.0]]
    # Second layer with the same weights: W x1 = (5+9, 24, 5+12) = (14, 24, 17); + b =
    # (14, 25, 16); x0 ⊙ that = (14, 50, 48); + x1 = (19, 62, 57)
    assert layer(x0, x1).tolist() == [[19.0, 62.0, 57.0]]


def test_cross_net_equals_the_formula_on_random_inputs() -> None:
    torch.manual_seed(0)
    net = CrossNet(5, 3)
    x0 = torch.randn(7, 5, dtype=torch.float32)
    x = x0
    for layer in net.layers:
        x = x0 * (x @ layer.weight.T + layer.bias) + x  # x_{l+1} = x0 ⊙ (W x_l + b) + x_l
    assert_close(net(x0), x)


def test_low_rank_is_full_rank_with_w_equal_u_vt() -> None:
    torch.manual_seed(1)
    low = CrossLayer(6, low_rank=2)
    full = CrossLayer(6)
    with torch.no_grad():
        full.weight.copy_(low.u @ low.v.T)
        full.bias.copy_(torch.randn(6))
        low.bias.copy_(full.bias)
    x0, xl = torch.randn(4, 6), torch.randn(4, 6)
    assert_close(low(x0, xl), full(x0, xl))
    assert sum(p.numel() for p in low.parameters()) == 2 * 6 * 2 + 6


@pytest.mark.parametrize("structure", ["stacked", "parallel"])
def test_structures_wire_as_in_the_paper(structure: str) -> None:
    torch.manual_seed(2)
    net = DCNv2Net(
        [5, 7], 3, embedding_dim=4, n_cross_layers=2, hidden_units=[8, 6], structure=structure
    )
    dense, sparse = torch.randn(9, 3), torch.randint(0, 5, (9, 2))
    x0 = torch.cat([net.sparse_arch(sparse).flatten(1), net.dense_arch(dense)], dim=1)
    assert x0.shape == (9, 2 * 4 + 3)
    if structure == "stacked":
        expected = net.over_arch(net.deep(net.cross_net(x0)))
        assert net.over_arch.linear.in_features == 6
    else:
        expected = net.over_arch(torch.cat([net.cross_net(x0), net.deep(x0)], dim=1))
        assert net.over_arch.linear.in_features == 11 + 6
    assert_close(net(dense, sparse), expected)


def test_learns_a_multiplicative_cross() -> None:
    # y = [x0 * x1 > 0]: no single feature carries signal, one cross layer expresses it.
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(3000, 3)).astype(np.float32)
    y = (dense[:, 0] * dense[:, 1] > 0).astype(float)
    model = make_ranker("dcn", n_cross_layers=1, hidden_units=(), n_epochs=15, lr=0.01)
    model.fit(RankerFeatures(dense[:2000]), y[:2000])
    p = model.predict(RankerFeatures(dense[2000:]))
    accuracy = float(((p > 0.5) == (y[2000:] > 0)).mean())
    assert accuracy > 0.9, accuracy


def test_bad_parameters() -> None:
    features = RankerFeatures(np.zeros((4, 1), np.float32))
    with pytest.raises(ConfigError, match="structure"):
        make_ranker("dcn", structure="stacked-ish").fit(features, np.zeros(4))
    with pytest.raises(ConfigError, match="low_rank"):
        make_ranker("dcn", low_rank=0).fit(features, np.zeros(4))
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        make_ranker("dcn").fit(features, np.full(4, 2.0))


def test_adam_matches_torch_optim() -> None:
    torch.manual_seed(0)
    a, b = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    ours = Adam(list(a.parameters()), lr=0.01, weight_decay=0.1)
    theirs = torch.optim.Adam(b.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(20):
        x = torch.randn(8, 5)
        for module, opt in ((a, ours), (b, theirs)):
            module.zero_grad()
            (module(x) ** 2).sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-6, atol=1e-6)
