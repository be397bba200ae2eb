"""Vocabulary-free encoding of id and attribute tables for the two-tower model.

Everything categorical is *hashed* (``blake2b``, never Python's per-process salted ``hash``), so
a value never seen in training still gets a bucket and nothing but the parameters is needed to
encode it again; only numeric columns carry statistics (train mean / std).

Column kinds (inferred from the training table unless given in ``overrides``):

=============  =================================================================================
numeric        standardised with the train mean / std, clipped to ±5; NaN -> 0 plus a missing
               indicator. A numeric column with at most :data:`MAX_LEVELS` distinct train values
               (coded ages, community ids) is *also* a categorical field: taste need not be
               monotone in such codes.
categorical    one hashed token per value (missing values share a "missing" token). Inferred for
               strings with at most :data:`MAX_LEVELS` distinct values, or distinct values for
               at most a share :data:`UNIQUE_RATIO` of the rows.
multi          pipe-joined values (``"Action|Comedy"``): the mean of their token embeddings.
prefix         short high-cardinality strings (zip codes): tokens for the first 1, 2 and 3
               characters, so nearby codes share what they have in common.
skip           ignored. Inferred for long, nearly unique strings (titles): as categories they
               would be a second id, useless for new rows.
=============  =================================================================================

:class:`SegmentPopularity` is the one statistic of interactions here: item popularity within
*segments* of users, the rows of the user table sharing the values of a few attributes (gender x
age group in MovieLens), what a user with nothing but attributes most likely takes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recfunnel.core.errors import ConfigError

KINDS = ("numeric", "categorical", "multi", "prefix", "skip")
#: Numeric columns with at most this many distinct train values are also categorical.
MAX_LEVELS = 32
#: Most tokens kept per multi-valued cell (the first ones, after removing repeats).
MAX_TOKENS = 8
#: Strings at least this distinct (distinct / non-missing) are not treated as categories.
UNIQUE_RATIO = 0.5
#: Clip of standardised numeric values: one outlier must not dominate a tower's input.
NUMERIC_CLIP = 5.0
_MISSING = "\x00missing"
_PREFIX_LENGTHS = (1, 2, 3)


def stable_hash(values: Iterable[object], buckets: int, salt: str = "") -> npt.NDArray[np.int64]:
    """Bucket in ``0..buckets-1`` of each value's string form, identical in every process.

    The first 8 bytes of ``blake2b(salt + "\\x1f" + value)`` as an unsigned little-endian
    integer, modulo ``buckets``. ``salt`` keeps the fields of a shared table apart.

    >>> stable_hash(["42", "42", "7"], 1000, salt="user").tolist()
    [541, 541, 566]
    """
    if buckets <= 0:
        raise ConfigError(f"buckets must be positive, got {buckets}")
    prefix = salt.encode("utf-8") + b"\x1f"
    vals = [str(v) for v in values]
    # Hash each distinct value once: id columns repeat (history lists), tables rarely do.
    uniq = {v: 0 for v in vals}
    for v in uniq:
        digest = hashlib.blake2b(prefix + v.encode("utf-8"), digest_size=8).digest()
        uniq[v] = int.from_bytes(digest, "little") % buckets
    return np.fromiter((uniq[v] for v in vals), dtype=np.int64, count=len(vals))


def _canonical(value: object) -> str:
    """One string per value, whatever dtype a table brings it in (``25``, ``25.0``, ``"25"``)."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        return str(int(f)) if f.is_integer() else format(f, ".12g")
    return str(value).strip()


def _is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False


def infer_kinds(
    table: pd.DataFrame, key: str, overrides: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """The fields ``(column, kind)`` of a training table (see the module docstring).

    >>> t = pd.DataFrame({"item_id": ["a", "b"], "genres": ["x|y", "z"], "year": [1990, 2001.5]})
    >>> infer_kinds(t, "item_id")
    [('genres', 'multi'), ('year', 'numeric'), ('year', 'categorical')]
    """
    overrides = dict(overrides or {})
    bad = {c: k for c, k in overrides.items() if k not in KINDS}
    if bad:
        raise ConfigError(f"unknown feature kind(s) {bad}; use one of {', '.join(KINDS)}")
    fields: list[tuple[str, str]] = []
    for col in table.columns:
        if col == key:
            continue
        series = table[col]
        present = series.dropna()
        if col in overrides:
            kind = overrides[col]
            if kind != "skip":
                fields.append((str(col), kind))
            continue
        if len(present) == 0:
            continue  # all missing in training: nothing to learn from it
        if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            fields.append((str(col), "numeric"))
            if present.nunique() <= MAX_LEVELS:
                fields.append((str(col), "categorical"))
            continue
        text = present.astype(str)
        if text.str.contains("|", regex=False).any():
            fields.append((str(col), "multi"))
        elif text.nunique() <= max(MAX_LEVELS, UNIQUE_RATIO * len(text)):
            fields.append((str(col), "categorical"))
        elif text.str.len().median() <= 10:
            fields.append((str(col), "prefix"))
        # else: long, nearly unique text (titles) is skipped.
    return fields


def _tokens(value: object, kind: str) -> list[str]:
    if _is_missing(value):
        return [_MISSING]
    text = _canonical(value)
    if kind == "multi":
        parts = list(dict.fromkeys(p.strip() for p in text.split("|") if p.strip()))
        return parts[:MAX_TOKENS] or [_MISSING]
    if kind == "prefix":
        return [f"{n}:{text[:n]}" for n in _PREFIX_LENGTHS] if text else [_MISSING]
    return [text]


class FeatureEncoder:
    """Turns rows of an attribute table into hashed tokens and standardised numbers.

    ``encode`` returns ``tokens`` (``n x F x L`` int64 buckets, padded with ``buckets``, the
    index of an all-zero padding row) and ``numeric`` (``n x 2N`` float32: N standardised
    values then N missing indicators).

    >>> t = pd.DataFrame({"user_id": ["a", "b"], "age": [20.0, 40.0], "g": ["F", "M"]})
    >>> enc = FeatureEncoder.fit(t, "user_id", buckets=64, overrides={"age": "numeric"})
    >>> tokens, numeric = enc.encode(pd.DataFrame({"age": [30.0, None]}))
    >>> tokens.shape, numeric.tolist()
    ((2, 1, 1), [[0.0, 0.0], [0.0, 1.0]])
    """

    def __init__(
        self,
        fields: Sequence[tuple[str, str]],
        buckets: int,
        means: npt.ArrayLike | None = None,
        stds: npt.ArrayLike | None = None,
    ) -> None:
        self.fields = [(str(c), str(k)) for c, k in fields]
        self.buckets = int(buckets)
        self.token_fields = [(c, k) for c, k in self.fields if k != "numeric"]
        self.numeric_columns = [c for c, k in self.fields if k == "numeric"]
        n = len(self.numeric_columns)
        self.means = np.zeros(n) if means is None else np.asarray(means, np.float64)
        self.stds = np.ones(n) if stds is None else np.asarray(stds, np.float64)
        widths = {"multi": MAX_TOKENS, "prefix": len(_PREFIX_LENGTHS)}
        self.width = max([widths.get(k, 1) for _, k in self.token_fields], default=1)

    @classmethod
    def fit(
        cls,
        table: pd.DataFrame | None,
        key: str,
        *,
        buckets: int,
        overrides: Mapping[str, str] | None = None,
    ) -> FeatureEncoder:
        """Infer the fields of ``table`` (rows of training entities) and their statistics."""
        if table is None:
            return cls([], buckets)
        fields = infer_kinds(table, key, overrides)
        enc = cls(fields, buckets)
        for j, col in enumerate(enc.numeric_columns):
            values = pd.to_numeric(table[col], errors="coerce").to_numpy(np.float64)
            values = values[np.isfinite(values)]
            if len(values):
                enc.means[j] = values.mean()
                std = values.std()
                enc.stds[j] = std if std > 0 else 1.0
        return enc

    @property
    def n_fields(self) -> int:
        return len(self.token_fields)

    @property
    def n_numeric(self) -> int:
        return 2 * len(self.numeric_columns)

    def encode(self, table: pd.DataFrame) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Tokens and numbers of each row of ``table``; absent columns count as missing."""
        n = len(table)
        tokens = np.full((n, self.n_fields, self.width), self.buckets, dtype=np.int64)
        for f, (col, kind) in enumerate(self.token_fields):
            column: Sequence[Any] = table[col].tolist() if col in table.columns else [None] * n
            # Distinct cells are tokenised and hashed once (a table repeats its categories).
            cells = pd.Series(column, dtype=object)
            codes, uniques = pd.factorize(cells, use_na_sentinel=True)
            per_value = [_tokens(v, kind) for v in uniques.tolist()] + [[_MISSING]]
            flat = [t for toks in per_value for t in toks]
            hashed = stable_hash(flat, self.buckets, salt=f"{kind}:{col}")
            padded = np.full((len(per_value), self.width), self.buckets, dtype=np.int64)
            pos = 0
            for r, toks in enumerate(per_value):
                padded[r, : len(toks)] = hashed[pos : pos + len(toks)]
                pos += len(toks)
            tokens[:, f, :] = padded[np.where(codes < 0, len(per_value) - 1, codes)]
        k = len(self.numeric_columns)
        numeric = np.zeros((n, 2 * k), dtype=np.float32)
        for j, col in enumerate(self.numeric_columns):
            if col in table.columns:
                values = pd.to_numeric(table[col], errors="coerce").to_numpy(np.float64)
            else:
                values = np.full(n, np.nan)
            missing = ~np.isfinite(values)
            z = np.clip((values - self.means[j]) / self.stds[j], -NUMERIC_CLIP, NUMERIC_CLIP)
            numeric[:, j] = np.where(missing, 0.0, z)
            numeric[:, k + j] = missing
        return tokens, numeric

    # ---- persistence: arrays only -----------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, npt.NDArray[Any]]:
        return {
            f"{prefix}columns": np.array([c for c, _ in self.fields], dtype=str),
            f"{prefix}kinds": np.array([k for _, k in self.fields], dtype=str),
            f"{prefix}means": self.means.astype(np.float64),
            f"{prefix}stds": self.stds.astype(np.float64),
        }

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, npt.NDArray[Any]], prefix: str, buckets: int
    ) -> FeatureEncoder:
        cols = arrays[f"{prefix}columns"].tolist()
        kinds = arrays[f"{prefix}kinds"].tolist()
        return cls(
            list(zip(cols, kinds, strict=True)),
            buckets,
            arrays[f"{prefix}means"],
            arrays[f"{prefix}stds"],
        )


def align(table: pd.DataFrame | None, key: str, ids: Sequence[str]) -> pd.DataFrame:
    """Rows of ``table`` for ``ids`` in that order; ids without a row get missing values."""
    if table is None:
        return pd.DataFrame({key: list(ids)})
    if key not in table.columns:
        raise ConfigError(f"feature table needs a {key!r} column; it has {list(table.columns)}")
    frame = table.copy()
    frame[key] = frame[key].astype(str)
    frame = frame.drop_duplicates(key, keep="last").set_index(key)
    return frame.reindex(pd.Index([str(i) for i in ids], name=key)).reset_index()


#: Joins the values of a segment key, and stands for a missing value in it (no printable text
#: can collide with them, and neither is a NUL, which NumPy strings drop).
_KEY_SEP, _KEY_MISSING = "\x1f", "\x1e"


def segment_keys(table: pd.DataFrame, columns: Sequence[str]) -> npt.NDArray[np.str_]:
    """One key per row of ``table``: its values of ``columns`` in canonical form (``25`` ==
    ``25.0`` == ``"25"``; missing values and absent columns alike), joined. Rows with equal keys
    are one segment.

    >>> cols = ["gender", "age"]
    >>> keys = segment_keys(pd.DataFrame({"gender": ["F", "M", None], "age": [25.0, 25, 18]}), cols)
    >>> keys[0] == segment_keys(pd.DataFrame({"age": ["25"], "gender": ["F"]}), cols)[0]
    True
    >>> len(set(keys.tolist())), keys[2] == segment_keys(pd.DataFrame({"age": [18]}), cols)[0]
    (3, True)
    """
    n = len(table)
    parts = []
    for col in columns:
        values = table[col].tolist() if col in table.columns else [None] * n
        parts.append([_KEY_MISSING if _is_missing(v) else _canonical(v) for v in values])
    joined = [_KEY_SEP.join(row) for row in zip(*parts, strict=True)] if parts else [""] * n
    return np.array(joined, dtype=str)


@dataclass(frozen=True)
class SegmentPopularity:
    """Item popularity within segments of users, smoothed towards the global popularity.

    Segments are the distinct :func:`segment_keys` of the training users on ``columns``;
    segment 0 is "everyone" (users whose key is unknown land there), segment s >= 1 is
    ``keys[s - 1]``. With c_s(i) the segment's interactions with item i, n_s all of the
    segment's, q_i the item's share of all N interactions (one interaction's share for items
    without any, as the logQ of training) and alpha = ``smoothing`` * N:

        p_0(i) = q_i,    p_s(i) = (c_s(i) + alpha q_i) / (n_s + alpha)

    additive smoothing with a Dirichlet prior of strength alpha centred on global popularity
    (empirical Bayes: a small segment keeps little of its own counts). ``smoothing`` is a share
    of N so that one value suits data sets of any size.

    >>> seen = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32))
    >>> users = pd.DataFrame({"g": ["F", "F", "M"]})
    >>> seg = SegmentPopularity.fit(users, ["g"], seen, smoothing=0.25)
    >>> seg.codes.tolist(), np.exp(seg.log_prior()).round(3).tolist()
    ([1, 1, 2], [[0.5, 0.625, 0.25], [0.25, 0.312, 0.125], [0.25, 0.062, 0.625]])
    """

    columns: tuple[str, ...]
    #: The key of segment s + 1 at position s.
    keys: npt.NDArray[np.str_]
    #: The segment of each training user (rows of ``seen``).
    codes: npt.NDArray[np.int64]
    #: ``(S + 1) x n_items`` interaction counts per segment (row 0, everyone's, is left empty).
    counts: sp.csr_matrix
    item_counts: npt.NDArray[np.float64]
    smoothing: float

    @classmethod
    def fit(
        cls, users: pd.DataFrame, columns: Sequence[str], seen: sp.csr_matrix, smoothing: float
    ) -> SegmentPopularity:
        """``users``: the attribute rows of the users of ``seen`` (users x items, binary), in
        order."""
        keys = segment_keys(users, columns)
        codes, uniques = pd.factorize(pd.Series(keys, dtype=object))
        codes = codes.astype(np.int64) + 1
        n = len(uniques) + 1
        member = sp.csr_matrix(
            (np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(n, len(codes))
        )
        counts = (member @ seen.astype(np.float64)).tocsr()  # row 0: no user has code 0
        item_counts = np.asarray(seen.sum(axis=0), dtype=np.float64).ravel()
        return cls(
            tuple(columns), np.asarray(uniques, dtype=str), codes, counts, item_counts, smoothing
        )

    @property
    def n_segments(self) -> int:
        """S + 1: the segments, "everyone" included."""
        return len(self.keys) + 1

    def _q(self) -> npt.NDArray[np.float64]:
        total = max(self.item_counts.sum(), 1.0)
        out: npt.NDArray[np.float64] = np.maximum(self.item_counts, 1.0) / total
        return out

    def _alpha(self) -> float:
        return float(self.smoothing * max(self.item_counts.sum(), 1.0))

    def log_prior(self) -> npt.NDArray[np.float64]:
        """``n_items x (S + 1)``: log p_s(i) of every item in every segment."""
        q, alpha = self._q(), self._alpha()
        n_s = np.asarray(self.counts.sum(axis=1), dtype=np.float64).ravel()
        p = (self.counts.toarray() + alpha * q[None, :]) / (n_s + alpha)[:, None]
        p[0] = q
        out: npt.NDArray[np.float64] = np.log(p).T
        return out

    def floor(self) -> npt.NDArray[np.float64]:
        """``S + 1``: log p_s of an item without any interaction (an item added later)."""
        q0 = 1.0 / max(self.item_counts.sum(), 1.0)
        n_s = np.asarray(self.counts.sum(axis=1), dtype=np.float64).ravel()
        out: npt.NDArray[np.float64] = np.log(self._alpha() * q0 / (n_s + self._alpha()))
        out[0] = np.log(q0)
        return out

    def loo_log_prior(
        self, users: npt.NDArray[np.int64], seen: sp.csr_matrix
    ) -> npt.NDArray[np.float64]:
        """``len(users) x n_items``: log p of each training user's own segment with the user's
        own interactions (rows of ``seen``) left out, the prior they would have as a new user.
        Evaluated on the users it was counted from, the prior would recall their items."""
        q, alpha = self._q(), self._alpha()
        codes = self.codes[users]
        own = seen[users].toarray().astype(np.float64)
        counts = self.counts[codes].toarray() - own
        n_s = counts.sum(axis=1, keepdims=True)
        out: npt.NDArray[np.float64] = np.log((counts + alpha * q) / (n_s + alpha))
        out[codes == 0] = np.log(q)
        return out
