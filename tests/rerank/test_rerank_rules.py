"""Business rules (boost / bury / pin), the freshness boost and the filters' boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from recfunnel.core.errors import ConfigError
from recfunnel.core.rerank import RerankContext, Slate
from recfunnel.rerank.filters import BlockedFilter, ExpiredFilter, SeenFilter
from recfunnel.rerank.freshness import FreshnessBoost
from recfunnel.rerank.rules import BusinessRules, Rule

CTX = RerankContext(now=0.0)


def _slate() -> Slate:
    return Slate.from_lists(
        ["a", "b", "c", "d", "e"],
        [5.0, 4.0, 3.0, 2.0, 1.0],
        brand=["acme", "zeta", "acme", None, "zeta"],
        genres=[{"news"}, {"kids"}, set(), {"kids", "news"}, {"drama"}],
        price=[10.0, 1.0, 3.0, 7.0, 2.0],
    )


def test_multiplicative_boost() -> None:
    out = BusinessRules([Rule("brand", "zeta", factor=2.0)]).rerank(_slate(), CTX)
    # b: 8, e: 2 -> b, a, c, e (2.0, ties keep order: d 2.0 came first), ...
    assert out.ids() == ["b", "a", "c", "d", "e"]
    np.testing.assert_array_equal(out.scores, [8.0, 5.0, 3.0, 2.0, 2.0])


def test_additive_bury_and_membership_in_sets() -> None:
    out = BusinessRules([Rule("genres", "news", factor=-10.0, mode="add")]).rerank(_slate(), CTX)
    assert out.ids() == ["b", "c", "e", "a", "d"]
    np.testing.assert_array_equal(out.scores, [4.0, 3.0, 1.0, -5.0, -8.0])


def test_predicate_rules_apply_in_order() -> None:
    rules = [
        Rule("price", predicate=lambda p: p < 2.5, factor=0.0),  # bury cheap items entirely
        Rule("price", predicate=lambda p: p < 2.5, factor=1.5, mode="add"),
    ]
    out = BusinessRules(rules).rerank(_slate(), CTX)
    # b (1.0) and e (2.0): * 0 then + 1.5 -> 1.5
    assert out.ids() == ["a", "c", "d", "b", "e"]
    np.testing.assert_array_equal(out.scores, [5.0, 3.0, 2.0, 1.5, 1.5])


def test_rule_on_unknown_attribute_changes_nothing() -> None:
    out = BusinessRules([Rule("colour", "red", factor=100.0)]).rerank(_slate(), CTX)
    assert out.ids() == _slate().ids()


def test_pins() -> None:
    rules = BusinessRules(pins={"e": 0, "d": 1, "c": 99, "gone": 0})
    # e and d move to the top; c is pinned past the end, so it goes last; "gone" is not
    # in the slate (filtered earlier) and is not brought back.
    assert rules.rerank(_slate(), CTX).ids() == ["e", "d", "a", "b", "c"]


def test_pins_after_boost_and_ties_at_one_position() -> None:
    rules = BusinessRules([Rule("brand", "acme", factor=10.0)], pins={"e": 1, "b": 1})
    # boosted order: a 50, c 30, b 4, d 2, e 1; b and e both want slot 1: b comes first in the
    # boosted order, is inserted first, then e pushes in at 1 ahead of it.
    assert rules.rerank(_slate(), CTX).ids() == ["a", "e", "b", "c", "d"]


def test_invalid_rules() -> None:
    with pytest.raises(ConfigError, match="mode"):
        Rule("brand", "x", mode="replace")
    with pytest.raises(ConfigError, match="pin positions"):
        BusinessRules(pins={"a": -1}).rerank(_slate(), CTX)


# ---- freshness ------------------------------------------------------------------------


def test_freshness_formula() -> None:
    day = 86_400.0
    s = Slate.from_lists(
        ["old", "mid", "new", "unknown"], [1.0, 1.0, 1.0, 1.1], created_at=[0.0, day, 2 * day, None]
    )
    ctx = RerankContext(now=2 * day)
    mult = FreshnessBoost(half_life=day, weight=1.0).rerank(s, ctx)
    # boosts 2^-2, 2^-1, 1, 0 -> scores 1.25, 1.5, 2.0, 1.1
    assert mult.ids() == ["new", "mid", "old", "unknown"]
    np.testing.assert_allclose(mult.scores, [2.0, 1.5, 1.25, 1.1])
    add = FreshnessBoost(half_life=day, weight=0.3, mode="add").rerank(s, ctx)
    np.testing.assert_allclose(dict(zip(add.ids(), add.scores, strict=True))["old"], 1.075)
    # An item "created in the future" counts as new (age clipped at 0), not boosted past 1.
    future = Slate.from_lists(["f"], [1.0], created_at=[3 * day])
    np.testing.assert_allclose(
        FreshnessBoost(half_life=day, weight=1.0).boost(future, ctx.now), 1.0
    )
    with pytest.raises(ConfigError, match="half_life"):
        FreshnessBoost(half_life=0.0).rerank(s, ctx)


# ---- filter boundaries ------------------------------------------------------------------


def test_expiry_boundaries_follow_item_is_live() -> None:
    s = Slate.from_lists(
        ["exp-now", "exp-later", "born-now", "born-later", "open"],
        created_at=[None, None, 10.0, 10.5, None],
        expires_at=[10.0, 10.5, None, None, None],
    )
    assert ExpiredFilter().rerank(s, RerankContext(now=10.0)).ids() == [
        "exp-later",
        "born-now",
        "open",
    ]
    assert ExpiredFilter().rerank(Slate.from_lists(["x"]), CTX).ids() == ["x"]  # no columns


def test_seen_and_blocked() -> None:
    ctx = RerankContext(now=0.0, seen={"a"}, blocked={"b"})
    assert SeenFilter().rerank(_slate(), ctx).ids() == ["b", "c", "d", "e"]
    assert BlockedFilter(item_ids=["e"]).rerank(_slate(), ctx).ids() == ["a", "c", "d"]
