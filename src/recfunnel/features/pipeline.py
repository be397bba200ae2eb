"""Named feature steps composed into one fit / transform over candidate rows.

The input is a DataFrame with one row per (request, candidate): ``user_id``, ``item_id``,
``timestamp`` (the request time), the generators' ``score_*`` / ``rank_*`` columns and the user
and item attributes joined in. Each step's block is prefixed with the step's name
(``"genre.genres[0]"``); dense columns are then standardised by one
:class:`~recfunnel.features.normalizer.StreamingNormalizer` (missing values become the mean plus
an indicator), whose statistics :meth:`FeaturePipeline.update_statistics` keeps current while
serving. The output is a :class:`~recfunnel.features.base.FeatureBlock`: the ranker's input.

Saved pipelines are a directory with ``manifest.json`` (step kinds from :data:`STEPS`, their
parameters, names, the hash function, a checksum) and ``arrays.npz`` (learned arrays, loaded with
``allow_pickle=False``). Nothing is pickled and no import path comes from a file; the transform
after :meth:`FeaturePipeline.load` is bit-identical, in any process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

from recfunnel.core.artifact import read_manifest_file, sha256_file, staged_directory
from recfunnel.core.errors import ArtifactError, ConfigError, NotFittedError
from recfunnel.features.base import Columns, FeatureBlock, FeatureStep, Frame
from recfunnel.features.categorical import FeatureCross, HashedCategorical, MultiValued
from recfunnel.features.context import ContextFeatures
from recfunnel.features.counts import WindowedCounts
from recfunnel.features.hashing import HASH_NAME
from recfunnel.features.normalizer import StreamingNormalizer
from recfunnel.features.numeric import NumericColumns, RetrievalFeatures
from recfunnel.features.pagerank import ItemPageRank
from recfunnel.features.social import FriendEngagement

ARTIFACT_FORMAT = "recfunnel.FeaturePipeline"
ARTIFACT_VERSION = 1

#: Step kinds by registry name: what a saved pipeline may name.
STEPS: dict[str, type[FeatureStep]] = {
    cls.name: cls
    for cls in (
        HashedCategorical,
        MultiValued,
        FeatureCross,
        ContextFeatures,
        WindowedCounts,
        ItemPageRank,
        NumericColumns,
        RetrievalFeatures,
        FriendEngagement,
    )
}


class FeaturePipeline:
    """Steps ``[(name, step), ...]`` side by side, then one normaliser over the dense columns.

    >>> frame = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i1", "i2"],
    ...                       "timestamp": [0.0, 3600.0], "score_pop": [3.0, 1.0]})
    >>> pipe = FeaturePipeline([("item", HashedCategorical("item_id", n_buckets=100)),
    ...                         ("ctx", ContextFeatures(cyclical=False)),
    ...                         ("ret", RetrievalFeatures())]).fit(frame)
    >>> out = pipe.transform(frame)
    >>> out.sparse_names, out.sparse.tolist()
    (('item.item_id', 'ctx.hour', 'ctx.weekday'), [[24, 2, 5], [36, 3, 5]])
    >>> out.dense_names[:3], out.dense[:, 0].tolist()
    (('ret.pop.score', 'ret.pop.reciprocal_rank', 'ret.n_retrieved'), [1.0, -1.0])
    """

    def __init__(
        self,
        steps: Sequence[tuple[str, FeatureStep]],
        normalizer: StreamingNormalizer | None = None,
        normalize: bool = True,
    ) -> None:
        self.steps = steps
        self.normalizer = normalizer
        self.normalize = normalize

    def _check(self) -> None:
        names = [n for n, _ in self.steps]
        if not names:
            raise ConfigError("FeaturePipeline needs at least one step")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"FeaturePipeline: duplicate step name(s) {dup}")
        for name, step in self.steps:
            if not isinstance(step, FeatureStep) or getattr(step, "name", None) not in STEPS:
                raise ConfigError(f"step {name!r} is not a registered feature step: {step!r}")
            if "/" in name or not name:
                raise ConfigError(f"step name {name!r} must be non-empty and contain no '/'")

    @property
    def named_steps(self) -> dict[str, FeatureStep]:
        return dict(self.steps)

    # ---- fit / transform ----------------------------------------------------------------
    def fit(self, frame: pd.DataFrame, events: pd.DataFrame | None = None) -> Self:
        """Fit every step on the candidate rows (``events``: the log, for counts and PageRank),
        then the normaliser on the resulting dense columns."""
        self._check()
        missing = [n for n, s in self.steps if s.needs_events and events is None]
        if missing:
            raise ConfigError(f"step(s) {missing} need the event log: fit(frame, events=...)")
        frame = frame.reset_index(drop=True)
        for _, step in self.steps:
            step.fit(frame, events)
        raw = self._raw(frame)
        if self.normalize:
            norm = self.normalizer if self.normalizer is not None else StreamingNormalizer()
            self.normalizer_: StreamingNormalizer | None = norm.fit(raw.dense)
        else:
            self.normalizer_ = None
        self.raw_dense_names_ = raw.dense_names
        return self

    def _raw(self, frame: Frame) -> FeatureBlock:
        blocks = [step.transform(frame).prefixed(name) for name, step in self.steps]
        return FeatureBlock.concat(blocks)

    def _check_fitted(self) -> None:
        if not hasattr(self, "raw_dense_names_"):
            raise NotFittedError("FeaturePipeline is not fitted: call fit() or load() first")

    def transform(self, frame: Frame) -> FeatureBlock:
        """Dense float32 ``B x Fd`` (standardised) and sparse int64 ``B x Fs`` bucket ids.

        ``frame`` is a DataFrame or :class:`~recfunnel.features.base.Columns` (the serving
        path's rows; steps that only read DataFrames get it converted, once)."""
        self._check_fitted()
        raw = self._raw(self._readable(frame))
        if self.normalizer_ is None:
            return raw
        dense = self.normalizer_.transform(raw.dense).astype(np.float32)
        names = tuple(self.normalizer_.feature_names_out(raw.dense_names))
        return FeatureBlock(dense, raw.sparse, names, raw.sparse_names, raw.n_buckets)

    def _readable(self, frame: Frame) -> Frame:
        if isinstance(frame, Columns):
            if all(step.reads_columns for _, step in self.steps):
                return frame
            frame = frame.to_frame()
        return frame.reset_index(drop=True)

    def fit_transform(
        self, frame: pd.DataFrame, events: pd.DataFrame | None = None
    ) -> FeatureBlock:
        return self.fit(frame, events).transform(frame)

    def update_statistics(self, frame: Frame) -> Self:
        """Merge these rows into the normaliser's running statistics (serving-time drift)."""
        self._check_fitted()
        if self.normalizer_ is not None:
            self.normalizer_.partial_fit(self._raw(self._readable(frame)).dense)
        return self

    @property
    def dense_names_(self) -> tuple[str, ...]:
        self._check_fitted()
        if self.normalizer_ is None:
            return self.raw_dense_names_
        return tuple(self.normalizer_.feature_names_out(self.raw_dense_names_))

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write directory ``path`` atomically: ``manifest.json`` + ``arrays.npz``."""
        self._check_fitted()
        arrays: dict[str, npt.NDArray[Any]] = {}
        for name, step in self.steps:
            for key, value in step._state().items():
                arrays[f"{name}/{key}"] = np.asarray(value)
        if self.normalizer_ is not None:
            for key, value in self.normalizer_.state().items():
                arrays[f"normalizer/{key}"] = value
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with staged_directory(target) as tmp:
            np.savez(tmp / "arrays.npz", **arrays)  # type: ignore[arg-type]
            manifest = {
                "format": ARTIFACT_FORMAT,
                "format_version": ARTIFACT_VERSION,
                "hash": HASH_NAME,
                "steps": [
                    {"name": n, "kind": s.name, "params": _jsonable(s.get_params())}
                    for n, s in self.steps
                ],
                "normalizer": None
                if self.normalizer_ is None
                else {"params": self.normalizer_.get_params()},
                "raw_dense_names": list(self.raw_dense_names_),
                "arrays": {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()},
                "arrays_sha256": sha256_file(tmp / "arrays.npz"),
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeaturePipeline:
        """Read what :meth:`save` wrote (checksum and format checked, no pickles)."""
        p = Path(path)
        manifest = read_manifest_file(
            p, format=ARTIFACT_FORMAT, version=ARTIFACT_VERSION, what="feature pipeline"
        )
        if manifest.get("hash") != HASH_NAME:
            raise ArtifactError(
                f"{p}: saved with hash {manifest.get('hash')!r}, this recfunnel hashes with "
                f"{HASH_NAME!r}; bucket ids would differ, refit the pipeline"
            )
        npz = p / "arrays.npz"
        if not npz.is_file() or sha256_file(npz) != manifest.get("arrays_sha256"):
            raise ArtifactError(f"{npz}: missing or checksum mismatch (file corrupt or edited)")
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        steps: list[tuple[str, FeatureStep]] = []
        for entry in manifest["steps"]:
            kind = entry.get("kind")
            if kind not in STEPS:
                raise ArtifactError(f"{p}: unknown feature step kind {kind!r}")
            step = STEPS[kind](**entry.get("params", {}))
            prefix = f"{entry['name']}/"
            step._set_state(
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            )
            steps.append((str(entry["name"]), step))
        norm_entry = manifest.get("normalizer")
        pipe = cls(
            steps,
            None if norm_entry is None else StreamingNormalizer(**norm_entry["params"]),
            normalize=norm_entry is not None,
        )
        if pipe.normalizer is not None:
            pipe.normalizer.set_state(
                {
                    k[len("normalizer/") :]: v
                    for k, v in arrays.items()
                    if k.startswith("normalizer/")
                }
            )
        pipe.normalizer_ = pipe.normalizer
        pipe.raw_dense_names_ = tuple(manifest["raw_dense_names"])
        return pipe

    def __repr__(self) -> str:
        inner = ", ".join(f"({n!r}, {s!r})" for n, s in self.steps)
        return f"FeaturePipeline([{inner}], normalizer={self.normalizer!r})"


def _jsonable(value: Any) -> Any:
    """Parameters as JSON (tuples become lists; loading accepts either)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ConfigError(f"feature step parameter {value!r} cannot be saved as JSON")
