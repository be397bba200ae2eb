"""Rankers, one per module, and the registry that names them.

The registry maps a name to ``"module:Class"`` and imports lazily: asking for ``lightgbm``
never imports torch, and importing this package imports neither.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from recfunnel.core.errors import ArtifactError
from recfunnel.core.ranker import Ranker, read_ranker_manifest
from recfunnel.core.registry import class_named, construct, resolve

#: Registry name -> "module:Class". Artefacts name their kind here; nothing is imported by a
#: path that a file supplies.
REGISTRY: dict[str, str] = {
    "lightgbm": "recfunnel.ranking.lightgbm_ranker:LightGBMRanker",
    "wide_deep": "recfunnel.ranking.wide_deep:WideDeep",
    "dcn": "recfunnel.ranking.dcn:DCNv2",
}


def ranker_class(name: str) -> type[Ranker]:
    """The class registered under ``name``."""
    cls: type[Ranker] = resolve(REGISTRY, name, "ranker")
    return cls


def make_ranker(name: str, **params: Any) -> Ranker:
    """A new, unfitted ranker by registry name.

    >>> make_ranker("lightgbm", objective="lambdarank", n_estimators=50).objective
    'lambdarank'
    >>> make_ranker("xgboost")
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.ConfigError: unknown ranker 'xgboost'; available: dcn, lightgbm, wide_deep
    """
    ranker: Ranker = construct(ranker_class(name), params)
    return ranker


def load_ranker(path: str | os.PathLike[str]) -> Ranker:
    """Load a saved ranker of any registered kind."""
    manifest = read_ranker_manifest(path)
    kind = manifest.get("model", "")
    if kind not in REGISTRY:
        raise ArtifactError(f"{path}: unknown ranker kind {kind!r}")
    return ranker_class(kind)._from_artifact(Path(path), manifest)


def __getattr__(name: str) -> Any:
    # `from recfunnel.ranking import DCNv2` keeps working without eager imports.
    return class_named(REGISTRY, name)


__all__ = ["REGISTRY", "load_ranker", "make_ranker", "ranker_class"]
