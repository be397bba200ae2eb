"""The Reranker conformance suite: every registered re-ranking step runs all of it.

Each step is run alone and behind the standard filters on a slate that contains seen, blocked,
expired and not-yet-created items, with a fallback source that offers such items too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recfunnel.core.errors import ConfigError
from recfunnel.core.rerank import RerankContext, Reranker, Slate
from recfunnel.rerank import (
    REGISTRY,
    RerankChain,
    StaticSource,
    make_reranker,
    reranker_class,
)
from recfunnel.rerank.rules import Rule

NOW = 1_000_000.0
N_ITEMS = 40


def _fallback_source() -> StaticSource:
    # Offers filtered items first (seen i0, blocked i1, expired x-old, future x-new) and
    # items already in the slate, then genuinely new ones.
    ids = ["i0", "i1", "x-old", "x-new", "i5", "f1", "f2", "f3", "f4", "f5"]
    created = [0.0, 0.0, 0.0, NOW + 10, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    expires = [np.nan, np.nan, NOW, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan]
    return StaticSource("backup", ids, created_at=created, expires_at=expires)


#: Parameters per registered name (the defaults where a step needs none).
PARAMS: dict[str, dict[str, Any]] = {
    "seen": {},
    "blocked": {"item_ids": ("i2",)},
    "expired": {},
    "freshness": {"half_life": 3_600.0, "weight": 0.5},
    "mmr": {"lambda_": 0.6, "k": 8},
    "rules": {
        "rules": [Rule("genres", "g1", factor=2.0), Rule("genres", "g2", factor=-0.5, mode="add")],
        "pins": {"i7": 0, "i0": 1, "absent": 2},
    },
    "fallback": {"sources": [_fallback_source()], "n": 45},
}

#: The filters a funnel starts with (the block list includes the standing entry "i2").
FILTERS = [
    ("seen", make_reranker("seen")),
    ("blocked", make_reranker("blocked", item_ids=("i2",))),
    ("expired", make_reranker("expired")),
]


def test_every_registered_reranker_has_conformance_params() -> None:
    assert set(PARAMS) == set(REGISTRY)


def _slate(seed: int = 0, n: int = N_ITEMS) -> Slate:
    rng = np.random.default_rng(seed)
    created = rng.uniform(NOW - 86_400, NOW, n)
    created[3] = NOW + 60  # not yet live
    expires = np.full(n, np.nan)
    expires[4] = NOW  # expires exactly now: gone
    expires[6] = NOW + 1  # still live
    genres = [set(rng.choice(["g0", "g1", "g2", "g3"], size=rng.integers(0, 3))) for _ in range(n)]
    return Slate.from_lists(
        [f"i{j}" for j in range(n)],
        rng.uniform(0, 1, n),
        embeddings=rng.normal(size=(n, 8)),
        created_at=created,
        expires_at=expires,
        genres=genres,
    )


def _context(**kw: Any) -> RerankContext:
    base = dict(now=NOW, request_id="r1", user_id="u1", seen={"i0", "i5"}, blocked={"i1"}, n=12)
    base.update(kw)
    return RerankContext(**base)


def _forbidden(slate: Slate, ctx: RerankContext, extra_blocked: set[str]) -> set[str]:
    """Ids that must never be shown: seen, blocked, or not live at ``ctx.now``."""
    bad = set(ctx.seen) | set(ctx.blocked) | extra_blocked | {"x-old", "x-new"}
    created = slate.attributes["created_at"]
    expires = slate.attributes["expires_at"]
    for item, c, e in zip(slate.ids(), created, expires, strict=True):
        if c > ctx.now or e <= ctx.now:
            bad.add(item)
    return bad


@pytest.fixture(params=sorted(REGISTRY))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _make(name: str) -> Reranker:
    return make_reranker(name, **PARAMS[name])


def test_make_and_params_round_trip(name: str) -> None:
    r = _make(name)
    assert isinstance(r, reranker_class(name))
    assert r.name == name
    copy = type(r)(**r.get_params())
    assert copy.get_params() == r.get_params()
    with pytest.raises(ConfigError, match="no parameter"):
        make_reranker(name, not_a_param=1)


def test_no_duplicates(name: str) -> None:
    for seed in range(3):
        out = _make(name).rerank(_slate(seed), _context())
        assert len(set(out.ids())) == len(out)
        assert np.isfinite(out.scores).all()


def test_never_returns_a_filtered_item(name: str) -> None:
    chain = RerankChain([*FILTERS, ("under_test", _make(name))])
    for seed in range(3):
        slate = _slate(seed)
        ctx = _context(seen=frozenset({f"i{seed + 8}", "i0", "i5"}))
        out = chain.rerank(slate, ctx)
        assert not set(out.ids()) & _forbidden(slate, ctx, extra_blocked={"i2"})
        if name != "fallback":  # only the fallback chain may add items
            assert set(out.ids()) <= set(slate.ids())


def test_deterministic(name: str) -> None:
    slate, ctx = _slate(1), _context()
    r = _make(name)
    first = r.rerank(slate, ctx)
    again = type(r)(**r.get_params()).rerank(slate, ctx)
    assert first.ids() == again.ids() == r.rerank(slate, ctx).ids()
    np.testing.assert_array_equal(first.scores, again.scores)


def test_empty_slate(name: str) -> None:
    out = _make(name).rerank(Slate.empty(), _context())
    assert isinstance(out, Slate)
    if name == "fallback":  # an unknown user: the backup source fills, minus filtered items
        assert out.ids() == ["i5", "f1", "f2", "f3", "f4", "f5"][1:]
        assert set(out.sources.tolist()) == {"backup"}
    else:
        assert len(out) == 0


def test_batch_is_per_request(name: str) -> None:
    r = _make(name)
    slates = [_slate(s) for s in range(3)]
    contexts = [_context(request_id=f"r{s}") for s in range(3)]
    batch = r.rerank_batch(slates, contexts)
    assert [b.ids() for b in batch] == [
        r.rerank(s, c).ids() for s, c in zip(slates, contexts, strict=True)
    ]
    with pytest.raises(ConfigError):
        r.rerank_batch(slates, contexts[:2])


def test_whole_chain_conforms() -> None:
    chain = RerankChain.from_spec(
        [
            (n, PARAMS[n])
            for n in ("seen", "blocked", "expired", "freshness", "rules", "mmr", "fallback")
        ]
    )
    slate, ctx = _slate(2), _context()
    out = chain.rerank(slate, ctx)
    assert len(set(out.ids())) == len(out) == 8 + 5  # MMR keeps 8; the backup adds f1..f5
    assert out.sources.tolist() == ["primary"] * 8 + ["backup"] * 5
    assert not set(out.ids()) & _forbidden(slate, ctx, extra_blocked={"i2"})
    assert chain.rerank(slate, ctx).ids() == out.ids()
    trace = chain.rerank_traced(slate, ctx)
    assert [n for n, _ in trace] == [n for n, _ in chain.steps]
    assert trace[-1][1].ids() == out.ids()
    assert chain.rerank(Slate.empty(), ctx).sources is not None


def test_unknown_name() -> None:
    with pytest.raises(ConfigError, match="unknown reranker"):
        make_reranker("nope")


def test_slate_rejects_duplicates() -> None:
    with pytest.raises(ConfigError, match="unique"):
        Slate.from_lists(["a", "b", "a"])
