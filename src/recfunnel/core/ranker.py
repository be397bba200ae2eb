"""The ``Ranker`` contract: the second stage of the funnel, scoring (request, candidate) rows.

A ranker sees one row per candidate as :class:`RankerFeatures`: dense floats and sparse
categorical features that a feature pipeline has already hashed into bucket ids. Rankers do not
know the pipeline; they only record, at fit, how many buckets each sparse column has and fold
any id into range (``id % n_buckets``), so a categorical value never seen in training is just
another bucket, not an error.

Implementations provide ``_fit``, ``_predict`` and their learned arrays (``_state`` /
``_set_state``, plus ``_texts`` / ``_set_texts`` for a library's own text format such as a
LightGBM model file); validation, parameters and persistence live here once. Artefacts are a
directory with ``manifest.json``, ``arrays.npz`` (loaded with ``allow_pickle=False``) and any
text files the manifest lists, each checksummed.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from recfunnel.core.artifact import read_manifest_file, sha256_file, staged_directory
from recfunnel.core.errors import ArtifactError, ConfigError, NotFittedError
from recfunnel.core.params import Params

ARTIFACT_FORMAT = "recfunnel.Ranker"
ARTIFACT_VERSION = 1

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class RankerFeatures:
    """One row per (request, candidate): ``dense`` float32 ``B x Fd``, ``sparse`` int64 ``B x Fs``.

    ``sparse`` holds hashed bucket ids (``>= 0``); ``n_buckets`` optionally gives the size of
    each sparse column's hash space (otherwise a ranker takes ``max id + 1`` seen at fit).
    Arrays are converted on construction; either block may have zero columns.

    >>> f = RankerFeatures(dense=[[0.5, 1.0], [2.0, 0.0]], sparse=[[3], [7]],
    ...                    dense_names=("price", "age"), sparse_names=("category",))
    >>> len(f), f.dense.dtype, f.sparse.dtype, f.n_dense, f.n_sparse
    (2, dtype('float32'), dtype('int64'), 2, 1)
    >>> f.take([1]).sparse.tolist()
    [[7]]
    >>> RankerFeatures(dense=[[1.0]], sparse=[[-1]])
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.ConfigError: sparse bucket ids must be >= 0 (hash them first); got -1
    """

    dense: FloatArray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    sparse: IntArray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    dense_names: tuple[str, ...] | None = None
    sparse_names: tuple[str, ...] | None = None
    n_buckets: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        dense = np.asarray(self.dense, dtype=np.float32)
        sparse = np.asarray(self.sparse)
        if sparse.size and not np.issubdtype(sparse.dtype, np.integer):
            raise ConfigError(f"sparse features must be integer bucket ids, got {sparse.dtype}")
        sparse = sparse.astype(np.int64, copy=False)
        if dense.ndim == 1 and dense.size == 0:
            dense = dense.reshape(0, 0)
        if sparse.ndim == 1 and sparse.size == 0:
            sparse = sparse.reshape(0, 0)
        if dense.ndim != 2 or sparse.ndim != 2:
            raise ConfigError(
                f"dense and sparse must be 2-D (rows x features); got {dense.ndim}-D and "
                f"{sparse.ndim}-D"
            )
        # An empty block of a non-empty batch: B x 0.
        if dense.shape == (0, 0) and sparse.shape[0]:
            dense = np.zeros((sparse.shape[0], 0), np.float32)
        if sparse.shape == (0, 0) and dense.shape[0]:
            sparse = np.zeros((dense.shape[0], 0), np.int64)
        if dense.shape[0] != sparse.shape[0]:
            raise ConfigError(
                f"dense has {dense.shape[0]} rows but sparse has {sparse.shape[0]}; "
                "one row per candidate in both"
            )
        if sparse.size and int(sparse.min()) < 0:
            raise ConfigError(
                f"sparse bucket ids must be >= 0 (hash them first); got {int(sparse.min())}"
            )
        for label, names, width in (
            ("dense_names", self.dense_names, dense.shape[1]),
            ("sparse_names", self.sparse_names, sparse.shape[1]),
            ("n_buckets", self.n_buckets, sparse.shape[1]),
        ):
            if names is not None and len(names) != width:
                raise ConfigError(f"{label} has {len(names)} entries for {width} columns")
        if self.n_buckets is not None and any(int(n) <= 0 for n in self.n_buckets):
            raise ConfigError(f"n_buckets must be positive, got {self.n_buckets}")
        object.__setattr__(self, "dense", dense)
        object.__setattr__(self, "sparse", sparse)
        for name in ("dense_names", "sparse_names", "n_buckets"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    @property
    def n_dense(self) -> int:
        return int(self.dense.shape[1])

    @property
    def n_sparse(self) -> int:
        return int(self.sparse.shape[1])

    def take(self, rows: npt.ArrayLike) -> RankerFeatures:
        """The given rows (indices or a boolean mask), same names and bucket counts."""
        idx = np.asarray(rows)
        return RankerFeatures(
            self.dense[idx], self.sparse[idx], self.dense_names, self.sparse_names, self.n_buckets
        )


@dataclass(frozen=True)
class LabelledFeatures:
    """Features with their labels (and LightGBM-style group sizes): validation data."""

    features: RankerFeatures
    labels: npt.NDArray[np.float64]
    groups: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype=np.float64))
        if self.groups is not None:
            object.__setattr__(self, "groups", np.asarray(self.groups, dtype=np.int64))


class Ranker(Params, ABC):
    """Base class of every ranker.

    Hyper-parameters are the ``__init__`` keyword arguments, stored unchanged under the same
    names; learned state ends in ``_``. Scores are higher-is-better; a ranker trained with a
    pointwise log loss returns click probabilities (``predicts_probability`` is then true).
    """

    #: Registry name, e.g. ``"dcn"``; used in artefacts and on the command line.
    name: ClassVar[str]

    n_dense_: int
    sparse_buckets_: IntArray
    dense_names_: tuple[str, ...] | None
    sparse_names_: tuple[str, ...] | None

    # ---- the contract -------------------------------------------------------------------
    @abstractmethod
    def _fit(
        self,
        features: RankerFeatures,
        labels: npt.NDArray[np.float64],
        groups: IntArray | None,
        valid: LabelledFeatures | None,
        sample_weight: npt.NDArray[np.float64] | None,
    ) -> None:
        """Learn (inputs already validated; sparse ids already folded into range)."""

    @abstractmethod
    def _predict(self, features: RankerFeatures) -> FloatArray:
        """Scores ``B`` for validated, in-range features."""

    @abstractmethod
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        """The learned arrays to persist."""

    @abstractmethod
    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        """Restore what :meth:`_state` returned (``n_dense_``, ``sparse_buckets_`` are set)."""

    def _texts(self) -> dict[str, str]:
        """Text artefacts to persist, file name -> content (a library's own model format)."""
        return {}

    def _set_texts(self, texts: dict[str, str]) -> None:
        """Restore what :meth:`_texts` returned (called before :meth:`_set_state`)."""

    @property
    def predicts_probability(self) -> bool:
        """Whether :meth:`predict` returns probabilities of a positive label."""
        return True

    def _check_params(self) -> None:
        """Raise ``ConfigError`` for invalid hyper-parameters (called by ``fit``)."""

    # ---- parameters (scikit-learn conventions) -----------------------------------------

    # ---- derived behaviour --------------------------------------------------------------
    def fit(
        self,
        features: RankerFeatures,
        labels: npt.ArrayLike,
        *,
        groups: npt.ArrayLike | None = None,
        valid: LabelledFeatures | None = None,
        sample_weight: npt.ArrayLike | None = None,
    ) -> Self:
        """Learn from one row per candidate; returns ``self``.

        ``groups`` are consecutive group (query) sizes summing to the number of rows, as
        LightGBM takes them; rankers with a listwise objective need them. ``valid`` is only
        used for early stopping (never pass test data). ``sample_weight`` weights rows.
        """
        self._check_params()
        n = len(features)
        if n == 0:
            raise ConfigError(f"{type(self).__name__}.fit: no rows to learn from")
        y = _labels(labels, n, "labels")
        g = _groups(groups, n, "groups")
        w = None
        if sample_weight is not None:
            w = _labels(sample_weight, n, "sample_weight")
            if (w < 0).any():
                raise ConfigError("sample_weight must be >= 0")
        self.n_dense_ = features.n_dense
        self.dense_names_ = features.dense_names
        self.sparse_names_ = features.sparse_names
        if features.n_buckets is not None:
            buckets = np.asarray(features.n_buckets, dtype=np.int64)
        elif features.n_sparse:
            buckets = features.sparse.max(axis=0).astype(np.int64) + 1
        else:
            buckets = np.zeros(0, np.int64)
        self.sparse_buckets_ = buckets
        if valid is not None:
            _labels(valid.labels, len(valid.features), "valid labels")
            _groups(valid.groups, len(valid.features), "valid groups")
            valid = LabelledFeatures(self._in_range(valid.features), valid.labels, valid.groups)
        self._fit(self._in_range(features), y, g, valid, w)
        return self

    def predict(self, features: RankerFeatures) -> FloatArray:
        """Scores (float32, length ``B``) of a batch of rows; unseen bucket ids are folded in."""
        self._check_fitted()
        if len(features) == 0:
            return np.zeros(0, np.float32)
        return self._predict(self._in_range(features))

    def _check_fitted(self) -> None:
        if not hasattr(self, "sparse_buckets_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    def _in_range(self, features: RankerFeatures) -> RankerFeatures:
        """Check the columns against those seen at fit and fold bucket ids into range."""
        if features.n_dense != self.n_dense_ or features.n_sparse != len(self.sparse_buckets_):
            raise ConfigError(
                f"{type(self).__name__} was fitted on {self.n_dense_} dense and "
                f"{len(self.sparse_buckets_)} sparse columns; got {features.n_dense} and "
                f"{features.n_sparse}"
            )
        for label, fitted, given in (
            ("dense", self.dense_names_, features.dense_names),
            ("sparse", self.sparse_names_, features.sparse_names),
        ):
            if fitted is not None and given is not None and tuple(fitted) != tuple(given):
                raise ConfigError(
                    f"{label} columns {list(given)} differ from those at fit {list(fitted)}"
                )
        sparse = features.sparse
        if sparse.size and (sparse >= self.sparse_buckets_).any():
            sparse = sparse % self.sparse_buckets_
        else:
            return features
        return RankerFeatures(
            features.dense, sparse, features.dense_names, features.sparse_names, None
        )

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model to directory ``path`` atomically (arrays + texts + JSON manifest)."""
        self._check_fitted()
        target = Path(path)
        arrays = dict(self._state())
        texts = self._texts()
        target.parent.mkdir(parents=True, exist_ok=True)
        with staged_directory(target) as tmp:
            np.savez(tmp / "arrays.npz", **arrays)  # type: ignore[arg-type]
            files = {}
            for fname, text in texts.items():
                if Path(fname).name != fname or fname in ("arrays.npz", "manifest.json"):
                    raise ConfigError(f"invalid artefact text file name {fname!r}")
                (tmp / fname).write_text(text, encoding="utf-8")
                files[fname] = sha256_file(tmp / fname)
            manifest = {
                "format": ARTIFACT_FORMAT,
                "format_version": ARTIFACT_VERSION,
                "model": self.name,
                "params": self.get_params(),
                "n_dense": self.n_dense_,
                "sparse_buckets": [int(b) for b in self.sparse_buckets_],
                "dense_names": _names(self.dense_names_),
                "sparse_names": _names(self.sparse_names_),
                "arrays": {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()},
                "arrays_sha256": sha256_file(tmp / "arrays.npz"),
                "text_files": files,
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        return target

    @classmethod
    def _from_artifact(cls, path: Path, manifest: dict[str, Any]) -> Self:
        model = cls(**manifest.get("params", {}))
        npz = path / "arrays.npz"
        if sha256_file(npz) != manifest.get("arrays_sha256"):
            raise ArtifactError(f"{npz}: checksum mismatch (file corrupt or edited)")
        texts = {}
        for fname, digest in manifest.get("text_files", {}).items():
            fpath = path / Path(str(fname)).name
            if not fpath.is_file() or sha256_file(fpath) != digest:
                raise ArtifactError(f"{fpath}: missing or checksum mismatch")
            texts[fpath.name] = fpath.read_text(encoding="utf-8")
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        model.n_dense_ = int(manifest["n_dense"])
        model.sparse_buckets_ = np.asarray(manifest["sparse_buckets"], dtype=np.int64)
        model.dense_names_ = _tuple(manifest.get("dense_names"))
        model.sparse_names_ = _tuple(manifest.get("sparse_names"))
        model._set_texts(texts)
        model._set_state(arrays)
        return model


def read_ranker_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a saved ranker, checked for format and version."""
    return read_manifest_file(
        path, format=ARTIFACT_FORMAT, version=ARTIFACT_VERSION, what="ranker artefact"
    )


def _labels(values: npt.ArrayLike, n: int, what: str) -> npt.NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise ConfigError(f"{what} must have one value per row ({n}); got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{what} must be finite")
    return arr


def _groups(values: npt.ArrayLike | None, n: int, what: str) -> IntArray | None:
    if values is None:
        return None
    arr = np.asarray(values)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or (arr <= 0).any():
        raise ConfigError(f"{what} must be a 1-D array of positive group sizes")
    if int(arr.sum()) != n:
        raise ConfigError(
            f"{what} sizes sum to {int(arr.sum())} but there are {n} rows; groups are "
            "consecutive runs of rows"
        )
    return arr.astype(np.int64)


def _names(names: Sequence[str] | None) -> list[str] | None:
    return None if names is None else [str(n) for n in names]


def _tuple(names: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if names is None else tuple(str(n) for n in names)
