"""Re-ranking steps, one per module, the registry that names them, and the chain composing them.

A funnel's last stage is a :class:`RerankChain` of named steps applied in order, typically
filters first (so nothing later works on, or brings back, items that cannot be shown), then
score adjustments, then diversity, then the fallback chain that fills the slate to ``n``:

>>> from recfunnel.core.rerank import RerankContext, Slate
>>> chain = RerankChain.from_spec([
...     ("seen", {}),
...     ("expired", {}),
...     ("mmr", {"lambda_": 0.5, "k": 2, "similarity": "jaccard"}),
...     ("fallback", {"sources": [StaticSource("editorial", ["e1", "e2"])]}),
... ])
>>> s = Slate.from_lists(["a", "b", "c", "d"], [1.0, 0.9, 0.8, 0.7],
...                      genres=[{"x"}, {"x"}, {"y"}, {"x"}], expires_at=[None, None, None, 5.0])
>>> out = chain.rerank(s, RerankContext(now=10.0, seen={"a"}, n=3))
>>> out.ids(), out.sources.tolist()
(['b', 'c', 'e1'], ['primary', 'primary', 'editorial'])

The registry maps a name to ``"module:Class"`` and imports lazily.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from recfunnel.core.errors import ConfigError
from recfunnel.core.registry import class_named, construct, resolve
from recfunnel.core.rerank import RerankContext, Reranker, Slate
from recfunnel.rerank.fallback import FallbackChain, PopularInContext, SlateSource, StaticSource

#: Registry name -> "module:Class".
REGISTRY: dict[str, str] = {
    "seen": "recfunnel.rerank.filters:SeenFilter",
    "blocked": "recfunnel.rerank.filters:BlockedFilter",
    "expired": "recfunnel.rerank.filters:ExpiredFilter",
    "freshness": "recfunnel.rerank.freshness:FreshnessBoost",
    "mmr": "recfunnel.rerank.diversity:MaximalMarginalRelevance",
    "rules": "recfunnel.rerank.rules:BusinessRules",
    "fallback": "recfunnel.rerank.fallback:FallbackChain",
}


def reranker_class(name: str) -> type[Reranker]:
    """The class registered under ``name``."""
    cls: type[Reranker] = resolve(REGISTRY, name, "reranker")
    return cls


def make_reranker(name: str, **params: Any) -> Reranker:
    """A new re-ranking step by registry name.

    >>> make_reranker("freshness", half_life=3600.0)
    FreshnessBoost(half_life=3600.0, weight=0.2, mode='multiply', attribute='created_at')
    """
    reranker: Reranker = construct(reranker_class(name), params)
    return reranker


class RerankChain(Reranker):
    """Named steps applied in order (scikit-learn ``Pipeline`` style): ``[(name, step), ...]``."""

    name = "chain"

    def __init__(self, steps: Sequence[tuple[str, Reranker]] = ()) -> None:
        self.steps = steps

    @classmethod
    def from_spec(cls, spec: Sequence[tuple[str, Mapping[str, Any]]]) -> RerankChain:
        """A chain from ``[(registry name, params), ...]`` (configuration as plain data)."""
        return cls([(name, make_reranker(name, **dict(params))) for name, params in spec])

    def _check_steps(self) -> None:
        names = [name for name, _ in self.steps]
        if len(set(names)) != len(names):
            raise ConfigError(f"step names must be unique, got {names}")
        for name, step in self.steps:
            if not isinstance(step, Reranker):
                raise ConfigError(f"step {name!r} is not a Reranker: {step!r}")

    def rerank(self, slate: Slate, context: RerankContext) -> Slate:
        self._check_steps()
        for _, step in self.steps:
            slate = step.rerank(slate, context)
        return slate

    def rerank_traced(self, slate: Slate, context: RerankContext) -> list[tuple[str, Slate]]:
        """The slate after each step, ``[(step name, slate), ...]``: what each step dropped."""
        self._check_steps()
        trace = []
        for name, step in self.steps:
            slate = step.rerank(slate, context)
            trace.append((name, slate))
        return trace

    def __getitem__(self, name: str) -> Reranker:
        for step_name, step in self.steps:
            if step_name == name:
                return step
        raise KeyError(name)


def __getattr__(name: str) -> Any:
    # `from recfunnel.rerank import SeenFilter` works without importing every step eagerly.
    return class_named(REGISTRY, name)


__all__ = [
    "REGISTRY",
    "FallbackChain",
    "PopularInContext",
    "RerankChain",
    "SlateSource",
    "StaticSource",
    "make_reranker",
    "reranker_class",
]
