"""Candidate generators, one per module, and the registry that names them.

The registry maps a name to ``"module:Class"`` and imports lazily, so asking for ``pop`` never
pays for importing torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from recfunnel.core.errors import ArtifactError
from recfunnel.core.generator import CandidateGenerator, read_manifest
from recfunnel.core.registry import class_named, construct, resolve

#: Registry name -> "module:Class". Artefacts name their kind here; nothing is imported by a
#: path that a file supplies.
REGISTRY: dict[str, str] = {
    "pop": "recfunnel.candidates.popularity:Popularity",
    "itemknn": "recfunnel.candidates.itemknn:ItemKNN",
    "ease": "recfunnel.candidates.ease:EASE",
    "als": "recfunnel.candidates.als:ALS",
    "bpr": "recfunnel.candidates.bpr:BPR",
    "lightgcn": "recfunnel.candidates.lightgcn:LightGCN",
    "two_tower": "recfunnel.candidates.two_tower:TwoTower",
    "friends_items": "recfunnel.candidates.social_items:FriendsItems",
}


def generator_class(name: str) -> type[CandidateGenerator]:
    """The class registered under ``name``."""
    cls: type[CandidateGenerator] = resolve(REGISTRY, name, "model")
    return cls


def make_generator(name: str, **params: Any) -> CandidateGenerator:
    """A new, unfitted generator by registry name.

    >>> make_generator("itemknn", k=50)
    ItemKNN(k=50, shrink=0.0, block_size=1024)
    """
    generator: CandidateGenerator = construct(generator_class(name), params)
    return generator


def load_generator(path: str | os.PathLike[str]) -> CandidateGenerator:
    """Load a saved generator of any registered kind."""
    manifest = read_manifest(path)
    kind = manifest.get("model", "")
    if kind not in REGISTRY:
        raise ArtifactError(f"{path}: unknown model kind {kind!r}")
    return generator_class(kind)._from_artifact(Path(path), manifest)


def __getattr__(name: str) -> Any:
    # `from recfunnel.candidates import ItemKNN` keeps working without eager imports.
    return class_named(REGISTRY, name)


__all__ = ["REGISTRY", "generator_class", "load_generator", "make_generator"]
