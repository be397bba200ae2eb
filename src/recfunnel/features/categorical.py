"""Categorical, multi-valued and crossed features, hashed into buckets without a vocabulary.

All three produce sparse bucket ids with the reserved ids of :mod:`.hashing`: ``0`` missing (and
padding), ``1`` out of vocabulary (rarer than ``min_count`` at fit, or unseen when
``min_count > 1``), ``2 ..`` hashed values; a column's size is ``n_buckets + 2``. Each field
hashes with its own seed (by default its column name(s)), so fields do not share collisions.
With ``min_count=1`` nothing is learned: an unseen value gets its hashed bucket, and the
transform needs only the parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

from recfunnel.core.errors import ConfigError
from recfunnel.features.base import FeatureBlock, FeatureStep, require_columns
from recfunnel.features.hashing import (
    MISSING_ID,
    MISSING_TOKEN,
    N_RESERVED,
    canonical,
    hash_buckets,
    hash_strings,
    is_missing,
    stable_hash64,
)

#: Mean-pooled multi-valued fields become ``n_buckets + 2`` dense columns; keep that small.
MAX_MEAN_BUCKETS = 1024
#: Joins the parts of a crossed value before hashing (ASCII record separator).
CROSS_SEP = "\x1e"


class _Vocabulary(FeatureStep):
    """Shared by the three fields: the optional frequency threshold, as sorted 64-bit hashes."""

    min_count: int
    n_buckets: int

    def _check_common(self) -> None:
        if int(self.n_buckets) <= 0:
            raise ConfigError(f"{type(self).__name__}: n_buckets must be positive")
        if int(self.min_count) < 1:
            raise ConfigError(f"{type(self).__name__}: min_count must be >= 1")

    def _learn_vocabulary(self, hashes: npt.NDArray[np.uint64], counts: npt.ArrayLike) -> None:
        """Keep the hashes whose total count reaches ``min_count``."""
        if int(self.min_count) <= 1:
            self.kept_: npt.NDArray[np.uint64] | None = None
            return
        uniq, inverse = np.unique(hashes, return_inverse=True)
        totals = np.bincount(inverse, weights=np.asarray(counts, np.float64), minlength=len(uniq))
        self.kept_ = uniq[totals >= int(self.min_count)]

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        self._check_fitted("kept_")
        kept = np.zeros(0, np.uint64) if self.kept_ is None else self.kept_
        return {"kept": kept, "has_vocabulary": np.asarray(self.kept_ is not None)}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        has = bool(arrays["has_vocabulary"])
        self.kept_ = np.asarray(arrays["kept"], np.uint64) if has else None


class HashedCategorical(_Vocabulary):
    """One categorical or id column into ``n_hashes`` bucket-id columns.

    >>> frame = pd.DataFrame({"genre": ["drama", "drama", "noir", None]})
    >>> step = HashedCategorical("genre", n_buckets=16, min_count=2).fit(frame)
    >>> block = step.transform(pd.DataFrame({"genre": ["drama", "noir", None, "western"]}))
    >>> block.sparse[:, 0].tolist(), block.sparse_names, block.n_buckets
    ([7, 1, 0, 1], ('genre',), (18,))
    """

    name: ClassVar[str] = "hashed_categorical"

    def __init__(
        self,
        column: str,
        n_buckets: int = 2**18,
        n_hashes: int = 1,
        min_count: int = 1,
        seed: int | str | None = None,
    ) -> None:
        self.column = column
        self.n_buckets = n_buckets
        self.n_hashes = n_hashes
        self.min_count = min_count
        self.seed = seed

    @property
    def _seed(self) -> str:
        return str(self.column if self.seed is None else self.seed)

    def fit(self, frame: pd.DataFrame, events: pd.DataFrame | None = None) -> Self:
        self._check_common()
        if self.n_hashes not in (1, 2):
            raise ConfigError(f"HashedCategorical: n_hashes must be 1 or 2, got {self.n_hashes}")
        require_columns(frame, [self.column], type(self).__name__)
        values = frame[self.column]
        present = ~is_missing(values.to_numpy())
        hashes = stable_hash64(values, self._seed)[present]
        self._learn_vocabulary(hashes, np.ones(len(hashes)))
        return self

    def transform(self, frame: pd.DataFrame) -> FeatureBlock:
        self._check_fitted("kept_")
        require_columns(frame, [self.column], type(self).__name__)
        values = frame[self.column]
        hashes = stable_hash64(values, self._seed)
        ids = hash_buckets(
            hashes,
            is_missing(values.to_numpy()),
            int(self.n_buckets),
            n_hashes=int(self.n_hashes),
            kept=self.kept_,
        )
        names = (
            (self.column,)
            if self.n_hashes == 1
            else tuple(f"{self.column}#{k}" for k in range(self.n_hashes))
        )
        return FeatureBlock(
            np.zeros((len(frame), 0), np.float32),
            ids,
            (),
            names,
            (int(self.n_buckets) + N_RESERVED,) * int(self.n_hashes),
        )


class MultiValued(_Vocabulary):
    """A multi-valued column (``"Action|Comedy"`` or a list per cell).

    ``mode="ids"``: the first ``max_values`` distinct values as bucket ids, padded with ``0``
    (a ranker pools their embeddings, ignoring id 0). ``mode="mean"``: a dense vector over the
    ``n_buckets + 2`` ids, the mean of the values' one-hot vectors (mean pooling with an
    identity embedding; for small bucket counts, e.g. genres, and tree rankers).

    >>> frame = pd.DataFrame({"genres": ["a|b", "b", "", None, ["a", "c"]]})
    >>> step = MultiValued("genres", n_buckets=64, max_values=3).fit(frame)
    >>> step.transform(frame).sparse.tolist()
    [[37, 28, 0], [28, 0, 0], [0, 0, 0], [0, 0, 0], [37, 53, 0]]
    >>> step.set_params(mode="mean").transform(frame).dense[0, [28, 37]].tolist()
    [0.5, 0.5]
    """

    name: ClassVar[str] = "multi_valued"

    def __init__(
        self,
        column: str,
        n_buckets: int = 2**12,
        max_values: int = 8,
        sep: str = "|",
        mode: str = "ids",
        min_count: int = 1,
        seed: int | str | None = None,
    ) -> None:
        self.column = column
        self.n_buckets = n_buckets
        self.max_values = max_values
        self.sep = sep
        self.mode = mode
        self.min_count = min_count
        self.seed = seed

    @property
    def _seed(self) -> str:
        return str(self.column if self.seed is None else self.seed)

    def _check(self) -> None:
        self._check_common()
        if self.mode not in ("ids", "mean"):
            raise ConfigError(f"MultiValued: mode must be 'ids' or 'mean', got {self.mode!r}")
        if self.mode == "mean" and int(self.n_buckets) > MAX_MEAN_BUCKETS:
            raise ConfigError(
                f"MultiValued(mode='mean') makes n_buckets + 2 dense columns; n_buckets must be "
                f"<= {MAX_MEAN_BUCKETS}, got {self.n_buckets} (use mode='ids')"
            )
        if int(self.max_values) < 1:
            raise ConfigError("MultiValued: max_values must be >= 1")

    def _cells(self, frame: pd.DataFrame) -> tuple[npt.NDArray[np.intp], list[list[str]]]:
        require_columns(frame, [self.column], type(self).__name__)
        codes, uniques = _factorize_cells(frame[self.column], self.sep)
        return codes, [_split(u, self.sep, int(self.max_values)) for u in uniques]

    def fit(self, frame: pd.DataFrame, events: pd.DataFrame | None = None) -> Self:
        self._check()
        codes, tokens = self._cells(frame)
        counts = np.bincount(codes[codes >= 0], minlength=len(tokens))
        flat = [t for toks in tokens for t in toks]
        weights = np.repeat(counts, [len(t) for t in tokens])
        self._learn_vocabulary(hash_strings(flat, self._seed), weights)
        return self

    def transform(self, frame: pd.DataFrame) -> FeatureBlock:
        self._check_fitted("kept_")
        self._check()
        codes, tokens = self._cells(frame)
        table = _padded_ids(
            tokens, self._seed, int(self.n_buckets), int(self.max_values), self.kept_
        )
        ids = table[codes]  # code -1 -> the all-missing last row
        width = int(self.n_buckets) + N_RESERVED
        if self.mode == "ids":
            names = tuple(f"{self.column}[{k}]" for k in range(int(self.max_values)))
            return FeatureBlock(
                np.zeros((len(frame), 0), np.float32), ids, (), names, (width,) * len(names)
            )
        dense = np.zeros((len(frame), width), np.float32)
        rows = np.repeat(np.arange(len(frame)), ids.shape[1])
        flat = ids.ravel()
        real = flat != MISSING_ID
        np.add.at(dense, (rows[real], flat[real]), 1.0)
        n = dense.sum(axis=1, keepdims=True)
        dense = np.divide(dense, n, out=dense, where=n > 0)
        names = tuple(f"{self.column}={b}" for b in range(width))
        return FeatureBlock(dense, np.zeros((len(frame), 0), np.int64), names, (), ())


class FeatureCross(_Vocabulary):
    """A hashed cross of two or more columns (e.g. user age group × item genre).

    Numeric columns named in ``bins`` are first cut at those edges (``numpy.digitize``: bin
    ``k`` holds ``edges[k-1] <= x < edges[k]``). Columns in ``multi_columns`` are split on
    ``sep``, and the cross then holds up to ``max_values`` combinations, padded with ``0``.
    A missing part takes part in the cross as its own value.

    >>> frame = pd.DataFrame({"age": [17, 34, 35], "genres": ["Drama", "Drama|Noir", "Noir"]})
    >>> cross = FeatureCross(["age", "genres"], n_buckets=64, bins={"age": [18, 35, 50]},
    ...                      multi_columns=["genres"], max_values=2).fit(frame)
    >>> block = cross.transform(frame)
    >>> block.sparse_names, block.sparse.tolist()
    (('age×genres[0]', 'age×genres[1]'), [[64, 0], [27, 47], [41, 0]])
    """

    name: ClassVar[str] = "feature_cross"

    def __init__(
        self,
        columns: Sequence[str],
        n_buckets: int = 2**16,
        bins: Mapping[str, Sequence[float]] | None = None,
        multi_columns: Sequence[str] = (),
        sep: str = "|",
        max_values: int = 8,
        min_count: int = 1,
        seed: int | str | None = None,
    ) -> None:
        self.columns = columns
        self.n_buckets = n_buckets
        self.bins = bins
        self.multi_columns = multi_columns
        self.sep = sep
        self.max_values = max_values
        self.min_count = min_count
        self.seed = seed

    @property
    def _seed(self) -> str:
        return str("×".join(self.columns) if self.seed is None else self.seed)

    @property
    def _width(self) -> int:
        return int(self.max_values) if self.multi_columns else 1

    def _check(self) -> None:
        self._check_common()
        cols = list(self.columns)
        if len(cols) < 2:
            raise ConfigError(f"FeatureCross needs at least two columns, got {cols}")
        stray = set(self.multi_columns) - set(cols)
        stray |= set(self.bins or {}) - set(cols)
        if stray:
            raise ConfigError(f"FeatureCross: {sorted(stray)} not among the crossed columns")

    def _cells(self, frame: pd.DataFrame) -> tuple[npt.NDArray[np.intp], list[list[str]]]:
        cols = list(self.columns)
        require_columns(frame, cols, type(self).__name__)
        bins = dict(self.bins or {})
        per_codes, per_tokens = [], []
        for col in cols:
            series = frame[col]
            if col in bins:
                x = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
                binned = np.digitize(np.where(np.isnan(x), 0.0, x), np.asarray(bins[col], float))
                series = pd.Series(np.where(np.isnan(x), np.nan, binned.astype(np.float64)))
            codes, uniques = _factorize_cells(series, self.sep)
            if col in self.multi_columns:
                toks = [
                    _split(u, self.sep, int(self.max_values)) or [MISSING_TOKEN] for u in uniques
                ]
            else:
                toks = [[canonical(u)] for u in uniques]
            per_codes.append(np.where(codes < 0, len(toks), codes))
            per_tokens.append([*toks, [MISSING_TOKEN]])
        combos, inverse = np.unique(np.stack(per_codes, axis=1), axis=0, return_inverse=True)
        tokens = []
        for combo in combos.tolist():
            crossed = [""]
            for j, code in enumerate(combo):
                crossed = [
                    f"{a}{CROSS_SEP}{b}" if j else b for a in crossed for b in per_tokens[j][code]
                ]
                crossed = crossed[: int(self.max_values)]
            tokens.append(crossed)
        return inverse.reshape(-1), tokens

    def fit(self, frame: pd.DataFrame, events: pd.DataFrame | None = None) -> Self:
        self._check()
        codes, tokens = self._cells(frame)
        counts = np.bincount(codes, minlength=len(tokens))
        flat = [t for toks in tokens for t in toks]
        self._learn_vocabulary(
            hash_strings(flat, self._seed), np.repeat(counts, [len(t) for t in tokens])
        )
        return self

    def transform(self, frame: pd.DataFrame) -> FeatureBlock:
        self._check_fitted("kept_")
        self._check()
        codes, tokens = self._cells(frame)
        table = _padded_ids(tokens, self._seed, int(self.n_buckets), self._width, self.kept_)
        ids = table[codes]
        base = "×".join(self.columns)
        names = (base,) if self._width == 1 else tuple(f"{base}[{k}]" for k in range(self._width))
        return FeatureBlock(
            np.zeros((len(frame), 0), np.float32),
            ids,
            (),
            names,
            (int(self.n_buckets) + N_RESERVED,) * len(names),
        )


# ---- helpers ---------------------------------------------------------------------------------
def _factorize_cells(series: pd.Series, sep: str) -> tuple[npt.NDArray[np.intp], list[Any]]:
    """Codes (``-1`` for missing) and distinct values; list-like cells are joined with ``sep``."""
    values = series.to_numpy(dtype=object) if series.dtype == object else series.to_numpy()
    if values.dtype == object and any(isinstance(v, list | tuple | np.ndarray) for v in values):
        values = np.asarray(
            [
                sep.join(canonical(x) for x in v) if isinstance(v, list | tuple | np.ndarray) else v
                for v in values
            ],
            dtype=object,
        )
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return np.asarray(codes), list(np.asarray(uniques, dtype=object))


def _split(value: object, sep: str, limit: int) -> list[str]:
    """The first ``limit`` distinct non-empty parts of a multi-valued cell."""
    parts = (p.strip() for p in canonical(value).split(sep))
    return list(dict.fromkeys(p for p in parts if p))[:limit]


def _padded_ids(
    tokens: list[list[str]],
    seed: str,
    n_buckets: int,
    width: int,
    kept: npt.NDArray[np.uint64] | None,
) -> npt.NDArray[np.int64]:
    """``(U + 1) x width`` bucket ids of each distinct cell's tokens, padded with ``0``; the
    last row (all ``0``) is for missing cells."""
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    flat = [t for toks in tokens for t in toks]
    ids = hash_buckets(hash_strings(flat, seed), np.zeros(len(flat), bool), n_buckets, kept=kept)[
        :, 0
    ]
    table = np.full((len(tokens) + 1, width), MISSING_ID, np.int64)
    rows = np.repeat(np.arange(len(tokens)), lengths)
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(len(flat)) - np.repeat(starts, lengths)
    table[rows, cols] = ids
    return table
