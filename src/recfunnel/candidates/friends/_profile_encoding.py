"""Profile attributes as model inputs: vocabularies, bags of tokens and standardised numbers.

A user's profile row (``user_features``, keyed by ``user_id``) becomes three arrays:

* **categorical** columns (age group, country, community): one code per column, ``1..V`` for
  the ``V`` values seen at fit (sorted), ``0`` for missing or unseen values - the reserved
  "unknown" slot a model gives its own embedding row;
* **multi-valued** columns (``"music|sport"``): a bag of token codes per user (CSR), token
  ``0`` likewise unknown; an empty or missing cell is the bag ``[0]``;
* **numeric** columns: ``(x - mean) / std`` over the fitted rows, missing values at 0 (the
  mean); non-negative columns (counts, amounts: heavy-tailed) are ``log1p``-scaled first.

Vocabularies and statistics are arrays (unicode strings and floats), so an artefact holding
them loads with ``allow_pickle=False``.

>>> import pandas as pd
>>> frame = pd.DataFrame({"user_id": ["a", "b", "c"], "country": ["FR", "US", "FR"],
...                       "interests": ["music|sport", "sport", None], "visits": [0, 3, 9.0]})
>>> enc = ProfileEncoder().fit(frame)
>>> enc.categorical_, enc.multi_valued_, enc.numeric_
(['country'], ['interests'], ['visits'])
>>> out = enc.transform(pd.DataFrame({"user_id": ["d"], "country": ["JP"],
...                                   "interests": ["sport|chess"], "visits": [3]}))
>>> out.categorical.tolist(), out.bags[0][1].tolist()   # JP unseen, chess unseen
([[0]], [2, 0])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from recfunnel.core.errors import DataError


def csr_take(
    indptr: npt.NDArray[np.int64], indices: npt.NDArray[Any], rows: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Rows ``rows`` of a CSR structure, as a new ``(indptr, indices)``; vectorised.

    >>> ip, ix = csr_take(np.array([0, 2, 3]), np.array([7, 8, 9]), np.array([1, 0, 1]))
    >>> ip.tolist(), ix.tolist()
    ([0, 1, 3, 4], [9, 7, 8, 9])
    """
    start = indptr[rows]
    counts = indptr[rows + 1] - start
    out_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(counts, out=out_ptr[1:])
    slot = np.arange(out_ptr[-1], dtype=np.int64)
    slot += np.repeat(start - out_ptr[:-1], counts)
    return out_ptr, indices[slot]


@dataclass
class EncodedProfiles:
    """Encoded profile rows: ``categorical`` (n x C codes), ``bags`` (per multi-valued column
    a CSR ``(indptr, tokens)``), ``numeric`` (n x M, standardised)."""

    categorical: npt.NDArray[np.int64]
    bags: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]
    numeric: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.categorical)

    def take(self, rows: npt.NDArray[np.int64]) -> EncodedProfiles:
        """Rows ``rows``; row ``-1`` is a user without a profile (every slot unknown)."""
        rows = np.asarray(rows, dtype=np.int64)
        missing = rows < 0
        safe = np.where(missing, 0, rows)
        cat = self.categorical[safe] if len(self) else np.zeros((len(rows), 0), np.int64)
        num = self.numeric[safe] if len(self) else np.zeros((len(rows), 0), np.float32)
        if missing.any():
            cat = cat.copy()
            num = num.copy()
            cat[missing] = 0
            num[missing] = 0.0
        bags = []
        for indptr, tokens in self.bags:
            if missing.any():
                # A missing user's bag is the unknown token alone: append one [0] row.
                indptr = np.append(indptr, indptr[-1] + 1)
                tokens = np.append(tokens, 0)
                safe_b = np.where(missing, len(indptr) - 2, rows)
            else:
                safe_b = rows
            bags.append(csr_take(indptr, tokens, safe_b))
        return EncodedProfiles(cat, bags, num)

    @staticmethod
    def concat(parts: Sequence[EncodedProfiles]) -> EncodedProfiles:
        """Rows of ``parts`` one after the other."""
        bags = []
        for b in range(len(parts[0].bags)):
            ptrs, toks, offset = [np.zeros(1, np.int64)], [], 0
            for p in parts:
                indptr, tokens = p.bags[b]
                ptrs.append(indptr[1:] + offset)
                toks.append(tokens)
                offset += int(indptr[-1])
            bags.append((np.concatenate(ptrs), np.concatenate(toks)))
        return EncodedProfiles(
            np.concatenate([p.categorical for p in parts]),
            bags,
            np.concatenate([p.numeric for p in parts]),
        )


class ProfileEncoder:
    """Learns vocabularies and statistics from a profile frame and encodes frames with them.

    ``categorical``, ``multi_valued`` and ``numeric`` name the columns; ``None`` infers them
    from the fitted frame (every column but ``id_column``): strings, booleans and pandas
    ``category`` columns are categorical unless some string contains ``separator`` (then
    multi-valued); numbers are numeric. Integer *codes* (a community id) are numbers to
    pandas: name them in ``categorical`` or give them the ``category`` dtype. A column named
    in one group is left out of the others' inference. Learned: ``categorical_``,
    ``multi_valued_``, ``numeric_`` (the columns), ``vocab_`` (column -> sorted value
    strings), ``mean_``, ``std_``, ``log_scaled_``.
    """

    def __init__(
        self,
        categorical: Sequence[str] | None = None,
        multi_valued: Sequence[str] | None = None,
        numeric: Sequence[str] | None = None,
        *,
        separator: str = "|",
        id_column: str = "user_id",
    ) -> None:
        self.categorical = categorical
        self.multi_valued = multi_valued
        self.numeric = numeric
        self.separator = separator
        self.id_column = id_column

    # ---- fitting -------------------------------------------------------------------------
    def _infer(self, frame: pd.DataFrame) -> tuple[list[str], list[str], list[str]]:
        cat: list[str] = []
        multi: list[str] = []
        num: list[str] = []
        for col in frame.columns:
            if col == self.id_column:
                continue
            s = frame[col]
            if pd.api.types.is_bool_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype):
                cat.append(col)
            elif pd.api.types.is_numeric_dtype(s):
                num.append(col)
            elif s.astype("string").str.contains(self.separator, regex=False).any():
                multi.append(col)
            else:
                cat.append(col)

        named = {
            str(c) for g in (self.categorical, self.multi_valued, self.numeric) for c in g or ()
        }

        def given(names: Sequence[str] | None, inferred: list[str]) -> list[str]:
            # A column named in one group is never inferred into another.
            if names is None:
                return [c for c in inferred if c not in named]
            return [str(c) for c in names]

        return (
            given(self.categorical, cat),
            given(self.multi_valued, multi),
            given(self.numeric, num),
        )

    def fit(self, frame: pd.DataFrame) -> ProfileEncoder:
        cat, multi, num = self._infer(frame)
        missing = [c for c in (*cat, *multi, *num) if c not in frame.columns]
        if missing:
            raise DataError(f"profile columns {missing} are not in user_features", source="users")
        self.categorical_, self.multi_valued_, self.numeric_ = cat, multi, num
        self.vocab_: dict[str, npt.NDArray[np.str_]] = {}
        for col in cat:
            values = frame[col].dropna().astype(str).unique()
            self.vocab_[col] = np.sort(np.asarray(values, dtype=str))
        for col in multi:
            tokens = self._tokens(frame[col])[1]
            self.vocab_[col] = np.sort(np.asarray(pd.unique(tokens), dtype=str))
        self.log_scaled_ = np.zeros(len(num), dtype=bool)
        self.mean_ = np.zeros(len(num), dtype=np.float64)
        self.std_ = np.ones(len(num), dtype=np.float64)
        for k, col in enumerate(num):
            x = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
            finite = x[np.isfinite(x)]
            self.log_scaled_[k] = bool(len(finite)) and bool((finite >= 0).all())
            if self.log_scaled_[k]:
                finite = np.log1p(finite)
            if len(finite):
                self.mean_[k] = finite.mean()
                self.std_[k] = finite.std() or 1.0
        return self

    @property
    def vocab_sizes(self) -> list[int]:
        """Embedding rows per categorical then multi-valued column (the unknown slot included)."""
        return [len(self.vocab_[c]) + 1 for c in (*self.categorical_, *self.multi_valued_)]

    # ---- encoding ------------------------------------------------------------------------
    def _tokens(self, s: pd.Series) -> tuple[npt.NDArray[np.int64], npt.NDArray[Any]]:
        """(row of each token, token string) of a multi-valued column; blanks dropped."""
        s = s.reset_index(drop=True)
        exploded = s.astype("string").str.split(self.separator, regex=False).explode()
        tok = exploded.str.strip()
        keep = (tok.notna() & (tok != "")).to_numpy(dtype=bool)
        rows = exploded.index.to_numpy()[keep].astype(np.int64)
        return rows, tok[keep].to_numpy(dtype=str)

    def _codes(self, col: str, values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        codes: npt.NDArray[np.int64] = (
            pd.Index(self.vocab_[col]).get_indexer(pd.Index(values)).astype(np.int64) + 1
        )
        return codes  # -1 + 1: unseen -> 0

    def transform(self, frame: pd.DataFrame) -> EncodedProfiles:
        """Encode ``frame`` (its rows, in order) with the fitted vocabularies and statistics."""
        n = len(frame)
        frame = frame.reset_index(drop=True)
        cat = np.zeros((n, len(self.categorical_)), dtype=np.int64)
        for k, col in enumerate(self.categorical_):
            if col in frame.columns:
                s = frame[col]
                codes = self._codes(col, s.astype(str).to_numpy(dtype=str))
                cat[:, k] = np.where(s.isna().to_numpy(), 0, codes)
        bags = []
        for col in self.multi_valued_:
            if col in frame.columns:
                rows, toks = self._tokens(frame[col])
            else:
                rows, toks = np.zeros(0, np.int64), np.zeros(0, dtype=str)
            codes = self._codes(col, toks)
            # Empty bags get the unknown token, so every user has at least one.
            empty = np.setdiff1d(np.arange(n), rows)
            rows = np.concatenate([rows, empty])
            codes = np.concatenate([codes, np.zeros(len(empty), np.int64)])
            order = np.argsort(rows, kind="stable")
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
            bags.append((indptr, codes[order]))
        num = np.zeros((n, len(self.numeric_)), dtype=np.float32)
        for k, col in enumerate(self.numeric_):
            if col not in frame.columns:
                continue
            x = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
            if self.log_scaled_[k]:
                x = np.log1p(np.maximum(x, 0.0))
            z = (x - self.mean_[k]) / self.std_[k]
            num[:, k] = np.where(np.isfinite(z), z, 0.0)
        return EncodedProfiles(cat, bags, num)

    # ---- persistence ---------------------------------------------------------------------
    def state(self, prefix: str) -> dict[str, npt.NDArray[Any]]:
        """The learned arrays, keys prefixed (unicode and float arrays only)."""
        out: dict[str, npt.NDArray[Any]] = {
            f"{prefix}categorical": np.asarray(self.categorical_, dtype=str),
            f"{prefix}multi_valued": np.asarray(self.multi_valued_, dtype=str),
            f"{prefix}numeric": np.asarray(self.numeric_, dtype=str),
            f"{prefix}mean": self.mean_,
            f"{prefix}std": self.std_,
            f"{prefix}log_scaled": self.log_scaled_,
        }
        for k, col in enumerate((*self.categorical_, *self.multi_valued_)):
            out[f"{prefix}vocab{k}"] = np.asarray(self.vocab_[col], dtype=str)
        return out

    def set_state(self, arrays: dict[str, npt.NDArray[Any]], prefix: str) -> ProfileEncoder:
        """Restore what :meth:`state` returned."""
        self.categorical_ = [str(c) for c in arrays[f"{prefix}categorical"].tolist()]
        self.multi_valued_ = [str(c) for c in arrays[f"{prefix}multi_valued"].tolist()]
        self.numeric_ = [str(c) for c in arrays[f"{prefix}numeric"].tolist()]
        self.mean_ = np.asarray(arrays[f"{prefix}mean"], dtype=np.float64)
        self.std_ = np.asarray(arrays[f"{prefix}std"], dtype=np.float64)
        self.log_scaled_ = np.asarray(arrays[f"{prefix}log_scaled"], dtype=bool)
        self.vocab_ = {
            col: np.asarray(arrays[f"{prefix}vocab{k}"], dtype=str)
            for k, col in enumerate((*self.categorical_, *self.multi_valued_))
        }
        return self


def profile_state(profiles: EncodedProfiles, prefix: str) -> dict[str, npt.NDArray[Any]]:
    """The arrays of ``profiles``, keys prefixed."""
    out: dict[str, npt.NDArray[Any]] = {
        f"{prefix}categorical": profiles.categorical,
        f"{prefix}numeric": profiles.numeric,
    }
    for k, (indptr, tokens) in enumerate(profiles.bags):
        out[f"{prefix}bag{k}_indptr"] = indptr
        out[f"{prefix}bag{k}_tokens"] = tokens
    return out


def profiles_from_state(
    arrays: dict[str, npt.NDArray[Any]], prefix: str, n_bags: int
) -> EncodedProfiles:
    """Restore what :func:`profile_state` returned."""
    return EncodedProfiles(
        np.asarray(arrays[f"{prefix}categorical"], dtype=np.int64),
        [
            (
                np.asarray(arrays[f"{prefix}bag{k}_indptr"], dtype=np.int64),
                np.asarray(arrays[f"{prefix}bag{k}_tokens"], dtype=np.int64),
            )
            for k in range(n_bags)
        ],
        np.asarray(arrays[f"{prefix}numeric"], dtype=np.float32),
    )
