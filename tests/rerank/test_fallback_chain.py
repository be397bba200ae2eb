"""The fallback chain: fill to n from sources in order, skip duplicates and filtered items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recfunnel.core.errors import ConfigError
from recfunnel.core.rerank import RerankContext, Slate
from recfunnel.rerank import RerankChain, make_reranker
from recfunnel.rerank.fallback import FallbackChain, PopularInContext, SlateSource, StaticSource

NOW = 1_000.0


def _interactions() -> pd.DataFrame:
    # FR: p1 x3, p2 x2, p3 x2 (tie -> smaller id first), p9 x1 ; US: u1 x2, p1 x1.
    rows = (
        [("FR", "p1")] * 3
        + [("FR", "p3")] * 2
        + [("FR", "p2")] * 2
        + [("FR", "p9")]
        + [("US", "u1")] * 2
        + [("US", "p1")]
    )
    return pd.DataFrame(
        {
            "user_id": [f"x{i}" for i in range(len(rows))],
            "item_id": [r[1] for r in rows],
            "country": [r[0] for r in rows],
        }
    )


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["p1", "p2", "p3", "p9", "u1"],
            "created_at": [0.0, 0.0, 0.0, 0.0, 0.0],
            "expires_at": [np.nan, NOW, np.nan, np.nan, np.nan],
        }  # p2 expires at NOW
    )


def test_popular_in_context_from_interactions() -> None:
    pop = PopularInContext.from_interactions(_interactions(), "country", items=_items(), top=3)
    assert isinstance(pop, SlateSource)
    fr = pop.candidates(RerankContext(now=NOW, attributes={"country": "FR"}), 3)
    assert fr.ids() == ["p1", "p2", "p3"]
    assert fr.scores.tolist() == [3.0, 2.0, 2.0]
    assert fr.attributes["expires_at"][1] == NOW
    overall = pop.candidates(RerankContext(now=NOW), 3)  # no country -> overall popularity
    assert overall.ids() == ["p1", "p2", "p3"]
    assert pop.candidates(RerankContext(now=NOW, attributes={"country": "JP"}), 3).ids() == (
        overall.ids()
    )
    assert pop.candidates(RerankContext(now=NOW, attributes={"country": "US"}), 3).ids() == [
        "u1",
        "p1",
    ]
    with pytest.raises(ConfigError, match="region"):
        PopularInContext.from_interactions(_interactions(), "region")


def test_unknown_user_gets_popular_in_context() -> None:
    pop = PopularInContext.from_interactions(_interactions(), "country", items=_items())
    chain = FallbackChain([pop, StaticSource("editorial", ["e1", "p1", "e2"])], n=5)
    ctx = RerankContext(now=NOW, user_id=None, seen={"p3"}, attributes={"country": "FR"})
    out = chain.rerank(Slate.empty(), ctx)
    # p2 expired, p3 seen -> p1, p9 from popularity; then editorial skips p1 (already there).
    assert out.ids() == ["p1", "p9", "e1", "e2"]
    assert out.sources.tolist() == ["popular_in_context"] * 2 + ["editorial"] * 2


def test_keeps_primary_items_and_reports_sources() -> None:
    primary = Slate.from_lists(["r1", "r2"], [0.9, 0.8])
    chain = FallbackChain([StaticSource("global", ["r2", "g1", "g2", "g3"])], primary="ranked")
    out = chain.rerank(primary, RerankContext(now=NOW, n=4, blocked={"g1"}))
    assert out.ids() == ["r1", "r2", "g2", "g3"]
    assert out.sources.tolist() == ["ranked", "ranked", "global", "global"]
    np.testing.assert_array_equal(out.scores[:2], [0.9, 0.8])


def test_full_slate_is_truncated_and_sources_are_not_asked() -> None:
    class Exploding:
        name = "exploding"

        def candidates(self, context: RerankContext, n: int) -> Slate:
            raise AssertionError("a full slate must not ask its fallback sources")

    out = FallbackChain([Exploding()], n=2).rerank(
        Slate.from_lists(["a", "b", "c"]), RerankContext(now=NOW)
    )
    assert out.ids() == ["a", "b"]


def test_too_few_anywhere_gives_a_shorter_slate() -> None:
    out = FallbackChain([StaticSource("s", ["a", "b"])], n=10).rerank(
        Slate.empty(), RerankContext(now=NOW, seen={"a"})
    )
    assert out.ids() == ["b"]


def test_custom_filters_and_slate_size_required() -> None:
    src = StaticSource("s", ["a", "b", "c"])
    ctx = RerankContext(now=NOW, seen={"a"})
    assert FallbackChain([src], n=3, filters=()).rerank(Slate.empty(), ctx).ids() == ["a", "b", "c"]
    only_blocked = FallbackChain([src], n=3, filters=[make_reranker("blocked", item_ids=["c"])])
    assert only_blocked.rerank(Slate.empty(), ctx).ids() == ["a", "b"]
    with pytest.raises(ConfigError, match="slate size"):
        FallbackChain([src]).rerank(Slate.empty(), ctx)


def test_attributes_and_embeddings_merge() -> None:
    primary = Slate.from_lists(["r1"], [1.0], embeddings=[[1.0, 0.0]], genres=[{"x"}])
    src = StaticSource("s", ["s1"], created_at=[5.0])
    out = FallbackChain([src], n=2).rerank(primary, RerankContext(now=NOW))
    assert out.ids() == ["r1", "s1"]
    assert out.embeddings is None  # the source has none: no partial embedding matrix
    assert out.attributes["genres"].tolist() == [{"x"}, None]
    assert np.isnan(out.attributes["created_at"][0]) and out.attributes["created_at"][1] == 5.0


def test_in_a_chain_after_filters() -> None:
    chain = RerankChain.from_spec(
        [("seen", {}), ("fallback", {"sources": [StaticSource("s", ["a", "z"])], "n": 3})]
    )
    out = chain.rerank(Slate.from_lists(["a", "b"]), RerankContext(now=NOW, seen={"a"}))
    assert out.ids() == ["b", "z"]
