"""Lazy registries: a name maps to ``"module:Class"``, imported only when asked for.

Every family of variants (generators, rankers, re-rankers, indexes) keeps its own
``REGISTRY`` dict in its package; these two functions are the lookup and the checked
construction they share. Artefacts name their kind through a registry, so loading one never
imports a path that a file supplies.

>>> registry = {"counter": "collections:Counter"}
>>> resolve(registry, " Counter ", "thing")
<class 'collections.Counter'>
>>> resolve(registry, "deque", "thing")
Traceback (most recent call last):
...
recfunnel.core.errors.ConfigError: unknown thing 'deque'; available: counter
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from recfunnel.core.errors import ConfigError


def resolve(registry: Mapping[str, str], name: str, what: str) -> Any:
    """The class registered under ``name`` (case and surrounding spaces ignored); a
    ``ConfigError`` listing the registered names otherwise."""
    try:
        module, _, cls_name = registry[name.strip().lower()].partition(":")
    except KeyError:
        raise ConfigError(
            f"unknown {what} {name!r}; available: {', '.join(sorted(registry))}"
        ) from None
    return getattr(importlib.import_module(module), cls_name)


def construct(cls: Any, params: Mapping[str, Any], *, label: str | None = None) -> Any:
    """``cls(**params)``, refusing parameter names its ``__init__`` does not take with a
    ``ConfigError`` that lists the ones it does."""
    accepted = [
        n
        for n, p in inspect.signature(cls.__init__).parameters.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{label or cls.__name__} has no parameter(s) {unknown}; it takes {accepted}"
        )
    return cls(**params)


def class_named(registry: Mapping[str, str], name: str) -> Any:
    """The registered class whose class name is ``name`` (for a package's ``__getattr__``, so
    ``from package import ClassName`` works without importing every variant eagerly)."""
    for spec in registry.values():
        module, _, cls_name = spec.partition(":")
        if cls_name == name:
            return getattr(importlib.import_module(module), cls_name)
    raise AttributeError(name)
