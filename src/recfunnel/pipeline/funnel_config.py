"""The funnel's configuration: a commented TOML file read into typed, frozen dataclasses.

Configuration flows one way: :func:`load_funnel_config` (called by the command line) reads the
file, :meth:`FunnelConfig.from_dict` checks every key and value and builds the dataclasses, and
:class:`~recfunnel.pipeline.funnel.Funnel` turns them into objects through the registries. Every
error names the file and the key (``funnel.toml: retrieval.generators[1].quota: ...``); unknown
keys are errors too, so a typo never silently falls back to a default. The reference file,
with every key explained, is ``configs/funnel.toml``.

>>> cfg = FunnelConfig.from_dict({
...     "funnel": {"n": 5},
...     "retrieval": {"generators": [{"model": "pop", "quota": 20}]},
...     "light": {"model": "lightgbm", "keep": 10},
... })
>>> cfg.n, [g.name for g in cfg.retrieval], cfg.light.keep, cfg.heavy is None
(5, ['pop'], 10, True)
>>> FunnelConfig.from_dict({"retrieval": {"generators": [{"model": "pop", "qouta": 2}]}},
...                        source="f.toml")
Traceback (most recent call last):
...
recfunnel.core.errors.ConfigError: f.toml: retrieval.generators[0]: unknown key 'qouta'; known keys: index, index_params, model, name, params, quota
"""  # noqa: E501

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recfunnel.core.errors import ConfigError

LABEL_ORDERS = ("random", "last")
LABEL_SOURCES = ("holdout", "valid")


@dataclass(frozen=True)
class GeneratorConfig:
    """One retrieval source: registry ``model``, its ``quota`` of candidates, its ``params``."""

    name: str
    model: str
    quota: int
    params: dict[str, Any] = field(default_factory=dict)
    #: A vector index kind (``hnsw``, ``ivfpq``, ...) that retrieves this generator's
    #: candidates instead of scoring the whole catalogue; embedding models only, and only with
    #: ``retrieval.scope = "candidates"``.
    index: str | None = None
    index_params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureStepConfig:
    """One feature step: its ``name`` (column prefix), registry ``kind`` and ``params``."""

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RankerStageConfig:
    """A ranking stage: registry ``model``, how many candidates it ``keep``s, its ``params``."""

    model: str
    keep: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RerankStepConfig:
    """One re-ranking step by registry ``name`` with its ``params``."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FallbackConfig:
    """What fills a short slate: the ``popular_top`` most popular items (per value of the
    request attribute ``context_key`` when given), then the fixed ``editorial`` list."""

    popular_top: int = 200
    context_key: str | None = None
    editorial: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainingConfig:
    """How ranker training rows are made from the funnel (see :mod:`.ranker_data`)."""

    labels: str = "holdout"
    label_fraction: float = 0.2
    label_order: str = "random"
    random_negatives: int = 0
    negative_keep_rate: float = 1.0
    valid_user_fraction: float = 0.1
    refit_retrieval: bool = True
    max_users: int | None = None
    batch_size: int = 512
    seed: int = 0


#: Values of ``retrieval.scope``.
SCOPES = ("catalogue", "candidates")

DEFAULT_FEATURES = (
    FeatureStepConfig("retrieval", "retrieval"),
    FeatureStepConfig("zscore", "retrieval", {"score_prefix": "z_"}),
)


@dataclass(frozen=True)
class FunnelConfig:
    """Stages, sizes and models of a funnel (see ``configs/funnel.toml`` for every key)."""

    n: int = 10
    retrieval: tuple[GeneratorConfig, ...] = ()
    #: What the retrieval features (``z_<g>``, ``rank_<g>``) are relative to: ``"catalogue"``
    #: (every item, so each generator scores the whole catalogue per request) or
    #: ``"candidates"`` (the request's retrieved candidates only: each generator scores just
    #: those, and indexes may retrieve; what makes million-item catalogues servable).
    scope: str = "catalogue"
    features: tuple[FeatureStepConfig, ...] = DEFAULT_FEATURES
    #: Add the "friends" step (friend engagement with the candidate item; needs the social
    #: graph: ``Funnel.fit(..., graph=...)``).
    friend_engagement: bool = False
    light: RankerStageConfig | None = None
    heavy: RankerStageConfig | None = None
    rerank: tuple[RerankStepConfig, ...] = ()
    fallback: FallbackConfig = FallbackConfig()
    training: TrainingConfig = TrainingConfig()
    source: str = "<config>"

    @property
    def k1(self) -> int:
        """The most candidates retrieval can return (sum of quotas, before de-duplication)."""
        return sum(g.quota for g in self.retrieval)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data, in the layout :meth:`from_dict` reads."""
        out: dict[str, Any] = {
            "funnel": {"n": self.n},
            "retrieval": {
                "scope": self.scope,
                "generators": [_generator_dict(g) for g in self.retrieval],
            },
            "features": {
                "steps": [asdict(s) for s in self.features],
                "friend_engagement": self.friend_engagement,
            },
            "rerank": {"steps": [asdict(s) for s in self.rerank]},
            "fallback": {k: v for k, v in asdict(self.fallback).items() if v is not None},
            "training": {k: v for k, v in asdict(self.training).items() if v is not None},
        }
        out["fallback"]["editorial"] = list(self.fallback.editorial)
        for stage in ("light", "heavy"):
            cfg = getattr(self, stage)
            if cfg is not None:
                out[stage] = asdict(cfg)
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any], *, source: str = "<config>") -> FunnelConfig:
        """Check ``doc`` (parsed TOML) and build the configuration; errors name ``source``."""
        root = _Table(doc, source, "")
        root.only("funnel", "retrieval", "features", "light", "heavy", "rerank", "fallback",
                  "training")  # fmt: skip
        top = root.table("funnel")
        top.only("n")
        n = top.integer("n", 10, minimum=1)

        ret = root.table("retrieval")
        ret.only("generators", "scope")
        scope = ret.choice("scope", "catalogue", SCOPES)
        generators = []
        for g in ret.tables("generators", required=True):
            g.only("name", "model", "quota", "params", "index", "index_params")
            model = g.string("model")
            index = g.string("index", None)
            if index is not None:
                from recfunnel.index import REGISTRY as INDEXES

                if index not in INDEXES:
                    g.fail("index", f"unknown index kind {index!r}; available: "
                           f"{', '.join(sorted(INDEXES))}")  # fmt: skip
                if scope != "candidates":
                    g.fail("index", 'an index retrieves only with retrieval.scope = "candidates"')
            index_params = g.params("index_params")
            if index_params and index is None:
                g.fail("index_params", "given without an index")
            generators.append(
                GeneratorConfig(
                    g.string("name", model),
                    model,
                    g.integer("quota", minimum=1),
                    g.params(),
                    index,
                    index_params,
                )
            )
        names = [g.name for g in generators]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            ret.fail("generators", f"generator names must be unique; repeated: {dup} (set name=)")

        feats = root.table("features")
        feats.only("steps", "friend_engagement")
        friend_engagement = feats.boolean("friend_engagement", False)
        steps = tuple(
            FeatureStepConfig(s.string("name"), s.string("kind"), s.params())
            for s in feats.tables("steps", required=False, check=("name", "kind", "params"))
        )
        stages: dict[str, RankerStageConfig | None] = {}
        for stage in ("light", "heavy"):
            if stage not in doc:
                stages[stage] = None
                continue
            t = root.table(stage)
            t.only("model", "keep", "params")
            stages[stage] = RankerStageConfig(
                t.string("model"), t.integer("keep", minimum=1), t.params()
            )
        if stages["heavy"] is not None and stages["light"] is None:
            root.fail("heavy", "a heavy stage needs a light stage before it ([light])")
        if stages["light"] and stages["heavy"] and stages["heavy"].keep > stages["light"].keep:
            root.fail(
                "heavy.keep",
                f"the heavy stage keeps {stages['heavy'].keep} but the light stage passes only "
                f"{stages['light'].keep}; keep must shrink down the funnel",
            )

        rr = root.table("rerank")
        rr.only("steps")
        rerank = tuple(
            RerankStepConfig(s.string("name"), s.params())
            for s in rr.tables("steps", required=False, check=("name", "params"))
        )
        if any(s.name == "fallback" for s in rerank):
            rr.fail("steps", "the fallback step is configured in [fallback], not in rerank.steps")

        fb = root.table("fallback")
        fb.only("popular_top", "context_key", "editorial")
        fallback = FallbackConfig(
            popular_top=fb.integer("popular_top", 200, minimum=0),
            context_key=fb.string("context_key", None),
            editorial=tuple(fb.strings("editorial")),
        )

        tr = root.table("training")
        tr.only(*TrainingConfig.__dataclass_fields__)
        training = TrainingConfig(
            labels=tr.choice("labels", "holdout", LABEL_SOURCES),
            label_fraction=tr.number(
                "label_fraction", 0.2, low=0.0, high=1.0, open_low=True, open_high=True
            ),
            label_order=tr.choice("label_order", "random", LABEL_ORDERS),
            random_negatives=tr.integer("random_negatives", 0, minimum=0),
            negative_keep_rate=tr.number(
                "negative_keep_rate", 1.0, low=0.0, high=1.0, open_low=True
            ),
            valid_user_fraction=tr.number(
                "valid_user_fraction", 0.1, low=0.0, high=1.0, open_high=True
            ),
            refit_retrieval=tr.boolean("refit_retrieval", True),
            max_users=tr.integer("max_users", None, minimum=1),
            batch_size=tr.integer("batch_size", 512, minimum=1),
            seed=tr.integer("seed", 0),
        )
        return cls(
            n=n,
            retrieval=tuple(generators),
            scope=scope,
            features=steps or DEFAULT_FEATURES,
            friend_engagement=friend_engagement,
            light=stages["light"],
            heavy=stages["heavy"],
            rerank=rerank,
            fallback=fallback,
            training=training,
            source=source,
        )

    def locate(self, key: str, message: str) -> ConfigError:
        """A :class:`ConfigError` that names this configuration's file and ``key``."""
        return ConfigError(f"{self.source}: {key}: {message}")


def _generator_dict(g: GeneratorConfig) -> dict[str, Any]:
    out = asdict(g)
    if g.index is None:
        del out["index"], out["index_params"]
    return out


def load_funnel_config(path: str | os.PathLike[str]) -> FunnelConfig:
    """Read a funnel TOML file (see ``configs/funnel.toml``)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{p}: funnel configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return FunnelConfig.from_dict(doc, source=str(p))


class _Table:
    """A TOML table with its location, and typed getters whose errors name file and key."""

    def __init__(self, data: Any, source: str, path: str) -> None:
        self.source = source
        self.path = path
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: {path or '<top>'}: expected a table, got {data!r}")
        self.data = data

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, message: str) -> None:
        raise ConfigError(f"{self.source}: {self.key(name)}: {message}")

    def only(self, *known: str) -> None:
        for k in self.data:
            if k not in known:
                where = self.path or "<top>"
                raise ConfigError(
                    f"{self.source}: {where}: unknown key {k!r}; known keys: "
                    f"{', '.join(sorted(known))}"
                )

    def table(self, name: str) -> _Table:
        return _Table(self.data.get(name, {}), self.source, self.key(name))

    def tables(
        self, name: str, *, required: bool, check: tuple[str, ...] | None = None
    ) -> list[_Table]:
        value = self.data.get(name)
        if value is None or (value == [] and not required):
            if required:
                self.fail(name, "missing; give at least one [[" + self.key(name) + "]] table")
            return []
        if not isinstance(value, list) or not value:
            self.fail(name, f"expected a non-empty array of tables, got {value!r}")
        out = []
        for i, item in enumerate(value):
            t = _Table(item, self.source, f"{self.key(name)}[{i}]")
            if check is not None:
                t.only(*check)
            out.append(t)
        return out

    def _get(self, name: str, default: Any, required: bool) -> Any:
        if name not in self.data:
            if required:
                self.fail(name, "missing (required)")
            return default
        return self.data[name]

    def string(self, name: str, default: Any = ...) -> Any:
        value = self._get(name, default, default is ...)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            self.fail(name, f"expected a non-empty string, got {value!r}")
        return value

    def strings(self, name: str) -> list[str]:
        value = self._get(name, [], False)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(name, f"expected an array of strings, got {value!r}")
        return [str(v) for v in value]

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(name, default)
        if value not in choices:
            self.fail(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return str(value)

    def integer(self, name: str, default: Any = ..., *, minimum: int | None = None) -> Any:
        value = self._get(name, default, default is ...)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(name, f"must be >= {minimum}, got {value}")
        return value

    def number(
        self,
        name: str,
        default: float,
        *,
        low: float,
        high: float,
        open_low: bool = False,
        open_high: bool = False,
    ) -> float:
        value = self._get(name, default, False)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(name, f"expected a number, got {value!r}")
        v = float(value)
        if v < low or v > high or (open_low and v == low) or (open_high and v == high):
            lo, hi = ("(" if open_low else "["), (")" if open_high else "]")
            self.fail(name, f"must be in {lo}{low:g}, {high:g}{hi}, got {value}")
        return v

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name, default, False)
        if not isinstance(value, bool):
            self.fail(name, f"expected true or false, got {value!r}")
        return bool(value)

    def params(self, name: str = "params") -> dict[str, Any]:
        value = self._get(name, {}, False)
        if not isinstance(value, dict):
            self.fail(name, f"expected a table of parameters, got {value!r}")
        return dict(value)


__all__ = [
    "FallbackConfig",
    "FeatureStepConfig",
    "FunnelConfig",
    "GeneratorConfig",
    "RankerStageConfig",
    "RerankStepConfig",
    "TrainingConfig",
    "load_funnel_config",
]
