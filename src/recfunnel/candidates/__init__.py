"""Candidate generators, one per module, and the registry that names them."""

from __future__ import annotations

import os
from typing import Any

from recfunnel.candidates.itemknn import ItemKNN
from recfunnel.candidates.popularity import Popularity
from recfunnel.core.errors import ArtifactError, ConfigError
from recfunnel.core.generator import CandidateGenerator, read_manifest

#: Registry name -> class. Artefacts name their class here; nothing is imported by path.
GENERATORS: dict[str, type[CandidateGenerator]] = {cls.name: cls for cls in (Popularity, ItemKNN)}


def make_generator(name: str, **params: Any) -> CandidateGenerator:
    """A new, unfitted generator by registry name.

    >>> make_generator("itemknn", k=50)
    ItemKNN(k=50, shrink=0.0, block_size=1024)
    """
    try:
        cls = GENERATORS[name.strip().lower()]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; available: {', '.join(sorted(GENERATORS))}"
        ) from None
    return cls(**params)


def load_generator(path: str | os.PathLike[str]) -> CandidateGenerator:
    """Load a saved generator of any registered kind."""
    from pathlib import Path

    manifest = read_manifest(path)
    cls = GENERATORS.get(manifest.get("model", ""))
    if cls is None:
        raise ArtifactError(f"{path}: unknown model kind {manifest.get('model')!r}")
    return cls._from_artifact(Path(path), manifest)


__all__ = ["GENERATORS", "ItemKNN", "Popularity", "load_generator", "make_generator"]
