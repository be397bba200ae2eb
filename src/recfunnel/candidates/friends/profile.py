"""Profile similarity: suggest people whose sign-up attributes resemble the user's.

The cold-start source for a member with no friends and no history: each user is a vector of
their profile attributes (one-hot categorical columns such as age group or city, and
multi-valued columns such as ``interests = "chess|hiking"``), and candidates are the nearest
users by cosine similarity, found by a vector index (:func:`recfunnel.index.make_index`,
exact or HNSW). People befriend people like themselves (homophily: McPherson, Smith-Lovin &
Cook 2001), which is all this source assumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recfunnel.candidates.friends._neighborhood import top_per_row
from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.friends import Candidates, FriendGenerator, FriendSide
from recfunnel.core.graph import SocialGraph
from recfunnel.core.index import VectorIndex
from recfunnel.index import make_index


class ProfileSimilarity(FriendGenerator):
    """score(u, v) = cosine similarity of the profile vectors of ``u`` and ``v``.

    A profile vector concatenates one block per column: a one-hot block for each
    ``categorical`` column (default: every column of ``user_features`` but ``user_id``, the
    ``multi_valued`` ones and floating-point ones) and a multi-hot block for each
    ``multi_valued`` column (values split on ``sep``). Each block is scaled to unit length, so
    every column weighs the same however many values it holds; a column keeps its
    ``max_values`` most frequent values at fit (ties: alphabetical) and ignores the rest.
    Users are searched in a cosine index of kind ``index`` (``"exact"`` or ``"hnsw"``, with
    ``index_params`` such as ``{"M": 32}``); memory is ``4 x dimension`` bytes per user.

    A user without a profile (or whose values were all unseen at fit) gets no candidates.
    When a member registers, put them in the graph and call :meth:`add_profiles` with their
    row: they are searchable, and can be served, at once. ``load`` rebuilds the index from the
    saved vectors.

    >>> import pandas as pd
    >>> e = pd.DataFrame({"src_user_id": list("ab"), "dst_user_id": list("cd")})
    >>> g = SocialGraph.from_edges(e, mutual=False)                  # a-c, b-d
    >>> f = pd.DataFrame({"user_id": list("abcd"), "city": list("xxyy"),
    ...                   "interests": ["chess|go", "chess", "go", "ski"]})
    >>> m = ProfileSimilarity(multi_valued=["interests"]).fit(g, user_features=f)
    >>> rec = m.recommend(["a"], n=3)[0]
    >>> rec.ids, [round(s, 3) for s in rec.scores]                    # c is a's friend
    (('b',), [0.854])
    >>> g.add_users(["new"]).tolist()
    [4]
    >>> _ = m.add_profiles(pd.DataFrame({"user_id": ["new"], "city": ["y"], "interests": ["ski"]}))
    >>> m.recommend(["new"], n=1)[0].ids
    ('d',)
    """

    name: ClassVar[str] = "profile_similarity"
    search_space: ClassVar[dict[str, tuple[Any, ...]]] = {
        "max_values": ("int", 16, 4096, "log"),
    }

    def __init__(
        self,
        categorical: Sequence[str] | None = None,
        multi_valued: Sequence[str] = (),
        sep: str = "|",
        max_values: int = 256,
        index: str = "exact",
        index_params: dict[str, Any] | None = None,
    ) -> None:
        self.categorical = categorical
        self.multi_valued = multi_valued
        self.sep = sep
        self.max_values = max_values
        self.index = index
        self.index_params = index_params

    # ---- fit -------------------------------------------------------------------------------
    def _fit(self, graph: SocialGraph, side: FriendSide) -> None:
        features = side.user_features
        if features is None:
            raise ConfigError(f"{type(self).__name__}.fit needs user_features (profiles)")
        if not isinstance(self.max_values, int) or self.max_values < 1:
            raise ConfigError(f"max_values must be a positive integer, got {self.max_values!r}")
        if "user_id" not in features.columns:
            raise DataError("missing column 'user_id'", source="user_features")
        multi = [str(c) for c in self.multi_valued]
        if self.categorical is None:
            cats = [
                str(c)
                for c in features.columns
                if c != "user_id"
                and c not in multi
                and not pd.api.types.is_float_dtype(features[c])
            ]
        else:
            cats = [str(c) for c in self.categorical]
        for col in cats + multi:
            if col not in features.columns:
                raise DataError(f"missing column {col!r}", source="user_features")
        if not cats + multi:
            raise ConfigError(f"{type(self).__name__}: no profile column to encode")
        self.columns_ = np.asarray(cats + multi, dtype=np.str_)
        self.multi_ = np.asarray([c in multi for c in cats + multi], dtype=bool)
        values: list[npt.NDArray[np.str_]] = []
        for col, is_multi in zip(self.columns_.tolist(), self.multi_.tolist(), strict=True):
            tokens = self._tokens(features[col], is_multi)
            counts = [(str(v), int(c)) for v, c in tokens.value_counts().items()]
            ranked = sorted(counts, key=lambda vc: (-vc[1], vc[0]))[: self.max_values]
            values.append(np.asarray(sorted(v for v, _ in ranked), dtype=np.str_))
        self.value_offsets_ = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(
            np.int64
        )
        self.values_ = np.concatenate(values).astype(np.str_)
        rows, vectors = self._vectors(features, graph, missing="ignore")
        # Row order, as load restores it: index labels (and so the order of exact ties
        # inside the index) are the same after a save/load round trip.
        keep = np.flatnonzero(np.abs(vectors).sum(axis=1) > 0)
        keep = keep[np.argsort(rows[keep], kind="stable")]
        self.rows_ = rows[keep]
        self.vectors_ = vectors[keep]
        self._build_index()

    def _tokens(self, column: pd.Series, is_multi: bool) -> pd.Series:
        """One string per (user, value); the index is the row position in the frame."""
        col = column.reset_index(drop=True)
        col = col[col.notna()].astype(str)
        if is_multi:
            col = col.str.split(self.sep, regex=False).explode().str.strip()
        return col[col != ""]

    def _vectors(
        self, features: pd.DataFrame, graph: SocialGraph, *, missing: str
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Graph rows and profile vectors of the users of ``features`` that are in the graph
        (``missing="raise"``: every one must be); a user listed twice keeps the last row."""
        features = features.drop_duplicates("user_id", keep="last").reset_index(drop=True)
        rows = graph.encode(features["user_id"].astype(str), missing=missing)
        blocks = []
        for k, (col, is_multi) in enumerate(
            zip(self.columns_.tolist(), self.multi_.tolist(), strict=True)
        ):
            if col not in features.columns:
                raise DataError(f"missing column {col!r}", source="user_features")
            vocab = pd.Index(self.values_[self.value_offsets_[k] : self.value_offsets_[k + 1]])
            tokens = self._tokens(features[col], is_multi)
            code = vocab.get_indexer(pd.Index(tokens.to_numpy(dtype=object)))
            ok = code >= 0
            block = sp.csr_matrix(
                (np.ones(int(ok.sum()), np.float32), (tokens.index.to_numpy()[ok], code[ok])),
                shape=(len(features), len(vocab)),
            )
            block.sum_duplicates()
            block.data[:] = 1.0
            norms = np.sqrt(np.asarray(block.sum(axis=1)).ravel())
            scale = 1.0 / np.where(norms > 0, norms, 1.0)
            blocks.append(sp.diags(scale) @ block)
        dense = sp.hstack(blocks).toarray().astype(np.float32)
        keep = rows >= 0
        return rows[keep].astype(np.int64), dense[keep]

    def _build_index(self) -> None:
        self._added: dict[int, npt.NDArray[np.float32]] = {}
        self._position = {r: k for k, r in enumerate(self.rows_.tolist())}
        self.index_: VectorIndex | None = None
        if len(self.rows_):
            index = make_index(self.index, metric="cosine", **(self.index_params or {}))
            self.index_ = index.build(self.vectors_, [str(r) for r in self.rows_.tolist()])

    # ---- new members -----------------------------------------------------------------------
    def add_profiles(self, user_features: pd.DataFrame) -> Self:
        """Index (or re-index) the profiles of users already in the graph — a member who just
        registered, or one who edited their profile — with the columns and values learned at
        fit. Unknown users raise ``UnknownIdError``: add them to the graph first. Returns
        ``self``."""
        self._check_fitted()
        if "user_id" not in user_features.columns:
            raise DataError("missing column 'user_id'", source="user_features")
        rows, vectors = self._vectors(user_features, self.graph_, missing="raise")
        for r, v in zip(rows.tolist(), vectors, strict=True):
            if self._vector(r) is not None and self.index_ is not None:
                self.index_.remove([str(r)])
            self._position.pop(r, None)
            if np.abs(v).sum() > 0:
                self._added[r] = v
                if self.index_ is None:
                    index = make_index(self.index, metric="cosine", **(self.index_params or {}))
                    self.index_ = index.build(v[None, :], [str(r)])
                else:
                    self.index_.add(v[None, :], [str(r)])
            else:
                self._added.pop(r, None)
        return self

    def _stored(self, row: int) -> npt.NDArray[np.float32]:
        vector = self._vector(row)
        assert vector is not None  # (a row the index returned)
        return vector

    def _vector(self, row: int) -> npt.NDArray[np.float32] | None:
        if row in self._added:
            return self._added[row]
        pos = self._position.get(row)
        return None if pos is None else self.vectors_[pos]

    # ---- serving ---------------------------------------------------------------------------
    def _candidates(self, users: npt.NDArray[np.int64], n: int) -> Candidates:
        counts = np.zeros(len(users), dtype=np.int64)
        out_i: list[npt.NDArray[np.int64]] = []
        out_s: list[npt.NDArray[np.float64]] = []
        found_vectors = {k: self._vector(u) for k, u in enumerate(users.tolist())}
        vectors = {k: v for k, v in found_vectors.items() if v is not None}
        have = sorted(vectors)
        total = 0 if self.index_ is None else len(self.index_)
        if have and self.index_ is not None and total:
            queries = np.stack([vectors[j] for j in have])
            k = min(2 * n, total)
            ids, scores = self.index_.search(queries, k)
            for j, row in enumerate(have):
                found, sim = self._widen(queries[j], ids[j], scores[j], n, total)
                counts[row] = len(found)
                out_i.append(found)
                out_s.append(sim)
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        cand = Candidates(
            indptr,
            np.concatenate(out_i) if out_i else np.zeros(0, np.int64),
            (np.concatenate(out_s) if out_s else np.zeros(0)).astype(np.float32),
        )
        return top_per_row(cand, n)

    def _widen(
        self,
        query: npt.NDArray[np.float32],
        ids: npt.NDArray[np.object_],
        scores: npt.NDArray[np.float32],
        n: int,
        total: int,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """One query's candidates with exact cosine scores. Profiles tie a lot (everyone of
        the same age group and country); the search is widened until the whole tie group at
        the n-th place is in, and scores are recomputed in float64 one pair at a time, so the
        top n (ties: lower row) do not depend on the batch or on the index's internal order."""
        assert self.index_ is not None
        while (
            len(ids) < total
            and ids[-1] is not None
            and scores[-1] >= scores[min(n, len(ids)) - 1] - 1e-5
        ):
            found_ids, found_scores = self.index_.search(query[None, :], min(2 * len(ids), total))
            ids, scores = found_ids[0], found_scores[0]
        rows = np.asarray([int(s) for s in ids.tolist() if s is not None], dtype=np.int64)
        if not len(rows):
            return rows, np.zeros(0)
        stored = np.stack([self._stored(r) for r in rows.tolist()]).astype(np.float64)
        q = query.astype(np.float64)
        # Row-wise sums (not a BLAS product), so a pair's score never depends on its neighbours.
        sim = (stored * q).sum(axis=1) / (
            np.sqrt((stored * stored).sum(axis=1)) * np.sqrt((q * q).sum())
        )
        # A similarity of 0 shares nothing and suggests nobody.
        keep = sim > 1e-6
        return rows[keep], sim[keep]

    # ---- persistence -----------------------------------------------------------------------
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        live = {r: self.vectors_[k] for r, k in self._position.items()}
        live.update(self._added)
        rows = np.asarray(sorted(live), dtype=np.int64)
        dim = self.vectors_.shape[1]
        vectors = (
            np.stack([live[r] for r in rows.tolist()])
            if len(rows)
            else np.zeros((0, dim), np.float32)
        )
        return {
            "columns": self.columns_,
            "multi": self.multi_,
            "values": self.values_,
            "value_offsets": self.value_offsets_,
            "rows": rows,
            "vectors": vectors.astype(np.float32),
        }

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self.columns_ = arrays["columns"].astype(np.str_)
        self.multi_ = arrays["multi"].astype(bool)
        self.values_ = arrays["values"].astype(np.str_)
        self.value_offsets_ = arrays["value_offsets"].astype(np.int64)
        self.rows_ = arrays["rows"].astype(np.int64)
        self.vectors_ = arrays["vectors"].astype(np.float32)
        self._build_index()
