"""The social graph: friendships, pending requests and blocks among users, updated online.

Edges arrive directed (the store's ``edges`` table): ``connect`` from ``a`` to ``b`` is a
friend request (or a follow); ``connect`` edges in both directions make a **friendship**; one
direction only is a **pending request**; ``block`` means ``a`` blocked ``b``. With
``mutual=False`` every ``connect`` edge counts as a friendship (undirected data sets).

:class:`SocialGraph` keeps friendships as a symmetric CSR matrix (the base) plus a small
overlay of friendships added or removed since it was built, so that ``POST /v1/edges`` takes
effect on the next request without rebuilding a 20M-edge matrix; :meth:`SocialGraph.compact`
folds the overlay into a new base. Everything that reads the graph goes through
:meth:`rows` / :meth:`neighbors` / :meth:`degree`, which see the overlay.

>>> import pandas as pd
>>> edges = pd.DataFrame({"src_user_id": ["a", "b", "b", "c", "a"],
...                       "dst_user_id": ["b", "a", "c", "d", "d"],
...                       "timestamp": [1.0, 2.0, 3.0, 4.0, 5.0],
...                       "kind": ["connect", "connect", "connect", "connect", "block"]})
>>> g = SocialGraph.from_edges(edges)
>>> g.n_users, g.n_friendships
(4, 1)
>>> g.decode(g.neighbors(g.encode(["a"])[0])).tolist()
['b']
>>> g.add_edges(["c"], ["b"])          # c accepts b's request: now friends
>>> g.decode(g.neighbors(g.encode(["b"])[0])).tolist()
['a', 'c']
>>> sorted(g.decode(g.excluded_rows(g.encode(["a"])).indices).tolist())  # self, friend, block
['a', 'b', 'd']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recfunnel.core.errors import DataError, UnknownIdError
from recfunnel.core.ids import IdIndex
from recfunnel.core.schema import EDGE_KINDS


def _pair_key(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], n: int) -> npt.NDArray[Any]:
    return a.astype(np.int64) * np.int64(n) + b.astype(np.int64)


class SocialGraph:
    """Friendships (symmetric), pending requests and blocks over a growing set of users.

    Build it with :meth:`from_edges`; user ``k`` of :attr:`users` is row ``k``. Users who join
    later are appended by :meth:`add_users` (or by :meth:`add_edges` with ``add_users=True``).
    """

    def __init__(
        self,
        users: IdIndex,
        friends: sp.csr_matrix,
        since: npt.NDArray[np.float64] | None = None,
        *,
        requests: Iterable[tuple[int, int]] = (),
        blocks: Iterable[tuple[int, int]] = (),
    ) -> None:
        n = len(users)
        if friends.shape != (n, n):
            raise DataError(f"friendship matrix is {friends.shape}, expected {(n, n)}")
        base = sp.csr_matrix(friends, dtype=np.float32)
        base.sum_duplicates()
        base.sort_indices()
        self.users = users
        self._base = base
        self._since = (
            np.full(base.nnz, np.nan) if since is None else np.asarray(since, dtype=np.float64)
        )
        if len(self._since) != base.nnz:
            raise DataError(f"since has {len(self._since)} values for {base.nnz} friendships")
        self._n0 = n
        self._new_ids: list[str] = []
        self._new_lookup: dict[str, int] = {}
        # Overlay since the base was built: added friendships (with time) and removed ones,
        # both stored in both directions; pending requests src -> dst; blocks src -> dst.
        self._added: dict[int, dict[int, float]] = {}
        self._removed: dict[int, set[int]] = {}
        self._requests: dict[int, set[int]] = {}
        self._requested_by: dict[int, set[int]] = {}
        self._blocks: dict[int, set[int]] = {}
        self._blocked_by: dict[int, set[int]] = {}
        for a, b in requests:
            self._link(self._requests, a, b)
            self._link(self._requested_by, b, a)
        for a, b in blocks:
            self._link(self._blocks, a, b)
            self._link(self._blocked_by, b, a)
        self._adjacency: sp.csr_matrix | None = None
        self._base_latest: float | None = None
        self._overlay_latest = float("nan")
        self.version = 0

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_edges(
        cls,
        edges: pd.DataFrame,
        users: Sequence[str] | IdIndex | None = None,
        *,
        mutual: bool = True,
        source: str = "edges",
    ) -> SocialGraph:
        """Build from directed edge rows (``src_user_id``, ``dst_user_id``, ``timestamp`` and
        optionally ``kind``). ``users`` fixes the index (every edge endpoint must be in it);
        by default it holds the endpoints in order of first appearance. A friendship's time
        is the later of its two edges (the moment it was accepted)."""
        for col in ("src_user_id", "dst_user_id"):
            if col not in edges.columns:
                raise DataError(f"missing column {col!r}", source=source)
        src_ids = edges["src_user_id"].astype(str).to_numpy()
        dst_ids = edges["dst_user_id"].astype(str).to_numpy()
        if users is None:
            index = IdIndex.from_values(np.concatenate([src_ids, dst_ids]), kind="user")
        else:
            index = users if isinstance(users, IdIndex) else IdIndex(users, kind="user")
        n = len(index)
        lookup = pd.Index(index.ids)
        src = lookup.get_indexer(pd.Index(src_ids)).astype(np.int64)
        dst = lookup.get_indexer(pd.Index(dst_ids)).astype(np.int64)
        bad = np.flatnonzero((src < 0) | (dst < 0))
        if len(bad):
            row = int(bad[0])
            col = "src_user_id" if src[row] < 0 else "dst_user_id"
            raise DataError(
                f"user {str(edges[col].iloc[row])!r} is not in the user index",
                source=source,
                line=row + 1,
                field=col,
            )
        if (src == dst).any():
            row = int(np.flatnonzero(src == dst)[0])
            raise DataError(
                "an edge from a user to themself", source=source, line=row + 1, field="dst_user_id"
            )
        ts = (
            edges["timestamp"].to_numpy(dtype=np.float64)
            if "timestamp" in edges.columns
            else np.full(len(edges), np.nan)
        )
        kind = (
            edges["kind"].astype(str).to_numpy()
            if "kind" in edges.columns
            else np.full(len(edges), "connect")
        )
        unknown = ~np.isin(kind, EDGE_KINDS)
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise DataError(
                f"kind {kind[row]!r} is not one of {list(EDGE_KINDS)}",
                source=source,
                line=row + 1,
                field="kind",
            )
        is_block = kind == "block"
        blocks = list(zip(src[is_block].tolist(), dst[is_block].tolist(), strict=True))
        c_src, c_dst, c_ts = src[~is_block], dst[~is_block], ts[~is_block]
        if mutual:
            key = _pair_key(c_src, c_dst, n)
            rev = _pair_key(c_dst, c_src, n)
            both = np.isin(rev, key)
            requests = list(zip(c_src[~both].tolist(), c_dst[~both].tolist(), strict=True))
            c_src, c_dst, c_ts = c_src[both], c_dst[both], c_ts[both]
        else:
            requests = []
        # Symmetrise; duplicates (both directions present) keep the later time.
        a = np.concatenate([c_src, c_dst])
        b = np.concatenate([c_dst, c_src])
        t = np.concatenate([c_ts, c_ts])
        order = np.lexsort((np.nan_to_num(t, nan=-np.inf), b, a))
        a, b, t = a[order], b[order], t[order]
        last = np.ones(len(a), dtype=bool)
        if len(a):
            last[:-1] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
        a, b, t = a[last], b[last], t[last]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(a, minlength=n), out=indptr[1:])
        friends = sp.csr_matrix((np.ones(len(a), np.float32), b, indptr), shape=(n, n))
        return cls(index, friends, t, requests=requests, blocks=blocks)

    @classmethod
    def from_pairs(
        cls,
        users: IdIndex,
        a: npt.ArrayLike,
        b: npt.ArrayLike,
        since: npt.ArrayLike | None = None,
        *,
        requests: Iterable[tuple[int, int]] = (),
        blocks: Iterable[tuple[int, int]] = (),
    ) -> SocialGraph:
        """Build from friendships given once each as row pairs ``(a[k], b[k])`` with their
        times (e.g. the output of :meth:`friendship_pairs`, filtered)."""
        aa = np.asarray(a, dtype=np.int64)
        bb = np.asarray(b, dtype=np.int64)
        tt = np.full(len(aa), np.nan) if since is None else np.asarray(since, np.float64)
        n = len(users)
        rows = np.concatenate([aa, bb])
        cols = np.concatenate([bb, aa])
        times = np.concatenate([tt, tt])
        order = np.lexsort((cols, rows))
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        friends = sp.csr_matrix((np.ones(len(rows), np.float32), cols[order], indptr), shape=(n, n))
        return cls(users, friends, times[order], requests=requests, blocks=blocks)

    # ---- ids --------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self._n0 + len(self._new_ids)

    @property
    def n_friendships(self) -> int:
        """Number of (undirected) friendships, overlay included."""
        added = sum(len(v) for v in self._added.values())
        removed = sum(len(v) for v in self._removed.values())
        return int(self._base.nnz + added - removed) // 2

    def __contains__(self, user_id: object) -> bool:
        return user_id in self.users or user_id in self._new_lookup

    def encode(self, user_ids: Iterable[str], *, missing: str = "raise") -> npt.NDArray[np.int64]:
        """Row indices of ``user_ids`` (``missing="ignore"`` maps unknown ids to -1)."""
        ids = [str(u) for u in user_ids]
        out = self.users.encode(ids, missing="ignore")
        if self._new_lookup:
            for k in np.flatnonzero(out < 0).tolist():
                out[k] = self._new_lookup.get(ids[k], -1)
        if missing == "raise" and (out < 0).any():
            bad = [u for u, i in zip(ids, out.tolist(), strict=True) if i < 0]
            raise UnknownIdError(f"{len(bad)} id(s) not in the social graph, e.g. {bad[:5]}")
        return out

    def decode(self, indices: npt.ArrayLike) -> npt.NDArray[np.object_]:
        """User ids at row ``indices``."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_users):
            raise UnknownIdError(f"row indices out of range 0..{self.n_users - 1}")
        if not self._new_ids:
            return self.users.decode(idx)
        out = np.empty(len(idx), dtype=object)
        old = idx < self._n0
        out[old] = self.users.decode(idx[old])
        out[~old] = np.asarray(self._new_ids, dtype=object)[idx[~old] - self._n0]
        return out

    def user_ids(self) -> npt.NDArray[np.object_]:
        """Every user id, row order (base users then those added online)."""
        return np.concatenate([self.users.ids, np.asarray(self._new_ids, dtype=object)])

    def id_index(self) -> IdIndex:
        """An :class:`IdIndex` of every user in row order (``users`` itself when nobody has
        joined since the graph was built)."""
        return IdIndex(self.user_ids().tolist(), kind="user") if self._new_ids else self.users

    def add_users(self, user_ids: Iterable[str]) -> npt.NDArray[np.int64]:
        """Append users not yet in the graph; returns the rows of all of ``user_ids``."""
        ids = [str(u) for u in user_ids]
        for u in ids:
            if u not in self:
                self._new_lookup[u] = self.n_users
                self._new_ids.append(u)
                self._touch()
        return self.encode(ids)

    # ---- online updates ---------------------------------------------------------------------
    @staticmethod
    def _link(table: dict[int, Any], a: int, b: int, value: float | None = None) -> None:
        slot = table.setdefault(a, {} if value is not None else set())
        if isinstance(slot, dict):
            slot[b] = value
        else:
            slot.add(b)

    @staticmethod
    def _unlink(table: dict[int, Any], a: int, b: int) -> None:
        slot = table.get(a)
        if slot is None:
            return
        if isinstance(slot, dict):
            slot.pop(b, None)
        else:
            slot.discard(b)
        if not slot:
            del table[a]

    def _touch(self) -> None:
        self._adjacency = None
        self.version += 1

    def are_friends(self, a: int, b: int) -> bool:
        if b in self._added.get(a, {}):
            return True
        if b in self._removed.get(a, ()):
            return False
        if a >= self._n0 or b >= self._n0:
            return False
        lo, hi = self._base.indptr[a], self._base.indptr[a + 1]
        pos = lo + np.searchsorted(self._base.indices[lo:hi], b)
        return bool(pos < hi and self._base.indices[pos] == b)

    def _befriend(self, a: int, b: int, when: float) -> None:
        if np.isfinite(when) and not when <= self._overlay_latest:
            self._overlay_latest = float(when)
        for x, y in ((a, b), (b, a)):
            self._unlink(self._requests, x, y)
            self._unlink(self._requested_by, x, y)
            if y in self._removed.get(x, ()):
                self._unlink(self._removed, x, y)
            else:
                self._link(self._added, x, y, when)

    def _unfriend(self, a: int, b: int) -> None:
        for x, y in ((a, b), (b, a)):
            if y in self._added.get(x, {}):
                self._unlink(self._added, x, y)
            else:
                self._link(self._removed, x, y)

    def add_edges(
        self,
        src: Sequence[str],
        dst: Sequence[str],
        kinds: Sequence[str] | None = None,
        timestamps: Sequence[float] | None = None,
        *,
        add_users: bool = True,
    ) -> None:
        """Apply directed edges as they arrive (the store's semantics): a ``connect`` answered
        by one the other way makes a friendship, otherwise a pending request; a ``block`` ends
        any friendship or request between the two; a ``connect`` on the pair of one's own
        block replaces it. Unknown users are added (``add_users=True``) or refused."""
        if len(src) != len(dst):
            raise DataError(f"{len(src)} sources but {len(dst)} destinations", source="edges")
        kinds = list(kinds) if kinds is not None else ["connect"] * len(src)
        times = list(timestamps) if timestamps is not None else [np.nan] * len(src)
        for k, kind in enumerate(kinds):
            if kind not in EDGE_KINDS:
                raise DataError(
                    f"kind {kind!r} is not one of {list(EDGE_KINDS)}",
                    source="edges",
                    line=k + 1,
                    field="kind",
                )
        a_idx = self.add_users(src) if add_users else self.encode(src)
        b_idx = self.add_users(dst) if add_users else self.encode(dst)
        for a, b, kind, when in zip(a_idx.tolist(), b_idx.tolist(), kinds, times, strict=True):
            if a == b:
                continue
            if kind == "block":
                self._link(self._blocks, a, b)
                self._link(self._blocked_by, b, a)
                if self.are_friends(a, b):
                    self._unfriend(a, b)
                for x, y in ((a, b), (b, a)):
                    self._unlink(self._requests, x, y)
                    self._unlink(self._requested_by, y, x)
            elif self.are_friends(a, b):
                continue
            elif b in self._blocks.get(a, ()):
                # The same (src, dst) pair as the block: like the store, the connect replaces
                # it (an unblock plus a request).
                self._unlink(self._blocks, a, b)
                self._unlink(self._blocked_by, b, a)
                self._link(self._requests, a, b)
                self._link(self._requested_by, b, a)
            elif a in self._requests.get(b, ()):
                self._befriend(a, b, float(when))
            else:
                self._link(self._requests, a, b)
                self._link(self._requested_by, b, a)
        self._touch()

    def remove_edges(self, src: Sequence[str], dst: Sequence[str]) -> None:
        """Withdraw directed edges: an unfriend (the other side's edge stays as a pending
        request from them), a withdrawn request, or an unblock."""
        a_idx = self.encode(src, missing="ignore")
        b_idx = self.encode(dst, missing="ignore")
        for a, b in zip(a_idx.tolist(), b_idx.tolist(), strict=True):
            if a < 0 or b < 0:
                continue
            if b in self._blocks.get(a, ()):
                self._unlink(self._blocks, a, b)
                self._unlink(self._blocked_by, b, a)
            elif self.are_friends(a, b):
                self._unfriend(a, b)
                self._link(self._requests, b, a)
                self._link(self._requested_by, a, b)
            else:
                self._unlink(self._requests, a, b)
                self._unlink(self._requested_by, b, a)
        self._touch()

    def forget_users(self, user_ids: Iterable[str]) -> int:
        """Remove every friendship, request and block that touches ``user_ids`` (a deleted
        account); the rows stay (indexes do not shift) but are isolated. Returns how many of
        the ids were in the graph."""
        rows = self.encode(list(user_ids), missing="ignore")
        rows = rows[rows >= 0]
        for u in rows.tolist():
            for v in self.neighbors(u).tolist():
                self._unfriend(u, v)
            for table, mirror in (
                (self._requests, self._requested_by),
                (self._requested_by, self._requests),
                (self._blocks, self._blocked_by),
                (self._blocked_by, self._blocks),
            ):
                for v in list(table.get(u, ())):
                    self._unlink(mirror, v, u)
                table.pop(u, None)
        self._touch()
        return len(rows)

    # ---- reading ----------------------------------------------------------------------------
    def rows(self, users: npt.ArrayLike) -> sp.csr_matrix:
        """Friendship rows of ``users`` (``B x n_users``, ones), overlay applied."""
        idx = np.asarray(users, dtype=np.int64)
        n = self.n_users
        if self._n0:
            in_base = np.where(idx < self._n0, idx, 0)
            base = self._base[in_base]
            base = sp.csr_matrix((base.data, base.indices, base.indptr), shape=(len(idx), n))
        else:
            base = sp.csr_matrix((len(idx), n), dtype=np.float32)
        touched = [
            r
            for r, u in enumerate(idx.tolist())
            if u >= self._n0 or u in self._added or u in self._removed
        ]
        if not touched:
            return base
        lil = base.tolil()
        for r in touched:
            u = int(idx[r])
            cols = set(lil.rows[r]) if u < self._n0 else set()
            cols -= self._removed.get(u, set())
            cols |= set(self._added.get(u, {}))
            lil.rows[r] = sorted(cols)
            lil.data[r] = [1.0] * len(cols)
        return lil.tocsr()

    def since_rows(self, users: npt.ArrayLike) -> sp.csr_matrix:
        """:meth:`rows` with each friendship's time as the value (NaN when unknown); the
        sparsity pattern is that of :meth:`rows` (explicit entries are kept)."""
        idx = np.asarray(users, dtype=np.int64)
        pattern = self.rows(idx)
        out = np.full(pattern.nnz, np.nan)
        base_ip, base_ix = self._base.indptr, self._base.indices
        ip = pattern.indptr
        for r, u in enumerate(idx.tolist()):
            lo, hi = ip[r], ip[r + 1]
            if hi == lo:
                continue
            cols = pattern.indices[lo:hi]
            if u < self._n0:
                b_lo, b_hi = base_ip[u], base_ip[u + 1]
                pos = np.searchsorted(base_ix[b_lo:b_hi], cols)
                pos = np.minimum(pos, max(b_hi - b_lo - 1, 0))
                hit = (
                    (b_hi > b_lo) & (base_ix[b_lo:b_hi][pos] == cols)
                    if b_hi > b_lo
                    else (np.zeros(len(cols), bool))
                )
                out[lo:hi][hit] = self._since[b_lo + pos[hit]]
            extra = self._added.get(u)
            if extra:
                for k, c in enumerate(cols.tolist()):
                    if c in extra:
                        out[lo + k] = extra[c]
        return sp.csr_matrix((out, pattern.indices, pattern.indptr), shape=pattern.shape)

    def latest_time(self) -> float:
        """The time of the most recent friendship (NaN when none has a time); cheap: the
        base's is computed once, the overlay's kept as friendships arrive."""
        if self._base_latest is None:
            finite = self._since[np.isfinite(self._since)]
            self._base_latest = float(finite.max()) if len(finite) else float("nan")
        known = [t for t in (self._base_latest, self._overlay_latest) if np.isfinite(t)]
        return max(known) if known else float("nan")

    def neighbors(self, user: int) -> npt.NDArray[np.int64]:
        """Friends of one user (sorted rows)."""
        out: npt.NDArray[np.int64] = self.rows([user]).indices.astype(np.int64)
        return out

    def degree(self, users: npt.ArrayLike | None = None) -> npt.NDArray[np.int64]:
        """Number of friends of ``users`` (every user when ``None``)."""
        idx = np.arange(self.n_users) if users is None else np.asarray(users, dtype=np.int64)
        out = np.zeros(len(idx), dtype=np.int64)
        old = idx < self._n0
        ip = self._base.indptr
        out[old] = ip[idx[old] + 1] - ip[idx[old]]
        if self._added or self._removed:
            touched = np.fromiter(set(self._added) | set(self._removed), dtype=np.int64)
            for r in np.flatnonzero(np.isin(idx, touched)).tolist():
                u = int(idx[r])
                out[r] += len(self._added.get(u, ())) - len(self._removed.get(u, ()))
        return out

    def adjacency(self) -> sp.csr_matrix:
        """The whole symmetric friendship matrix (``n_users x n_users``), overlay applied."""
        if self._adjacency is None:
            n = self.n_users
            adj = self._padded_base()
            touched = sorted(set(self._added) | set(self._removed))
            if touched:
                keep = np.ones(n, dtype=np.float32)
                keep[touched] = 0.0
                place = sp.csr_matrix(
                    (np.ones(len(touched), np.float32), (touched, np.arange(len(touched)))),
                    shape=(n, len(touched)),
                )
                adj = sp.diags(keep).tocsr() @ adj + place @ self.rows(touched)
            adj = sp.csr_matrix(adj, dtype=np.float32)
            adj.sort_indices()
            self._adjacency = adj
        return self._adjacency

    def _padded_base(self) -> sp.csr_matrix:
        n = self.n_users
        indptr = np.concatenate(
            [self._base.indptr, np.full(n - self._n0, self._base.indptr[-1], dtype=np.int64)]
        )
        return sp.csr_matrix((self._base.data, self._base.indices, indptr), shape=(n, n))

    def excluded_rows(self, users: npt.ArrayLike) -> sp.csr_matrix:
        """Who must never be suggested to each of ``users``: themself, their friends, anyone
        with a pending request either way, anyone blocked either way (``B x n_users``)."""
        idx = np.asarray(users, dtype=np.int64)
        friends = self.rows(idx)
        extra_r: list[int] = []
        extra_c: list[int] = []
        for r, u in enumerate(idx.tolist()):
            extra_r.append(r)
            extra_c.append(u)
            for table in (self._requests, self._requested_by, self._blocks, self._blocked_by):
                cols = table.get(u)
                if cols:
                    extra_c.extend(cols)
                    extra_r.extend([r] * len(cols))
        extra = sp.csr_matrix(
            (np.ones(len(extra_r), np.float32), (extra_r, extra_c)), shape=friends.shape
        )
        out = (friends + extra).tocsr()
        out.data[:] = 1.0
        return out

    def friendship_pairs(
        self,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Each friendship once as ``(a, b, since)`` with ``a < b`` (base only when the overlay
        is empty; otherwise the overlay's times are used for added pairs)."""
        adj = self.adjacency()
        coo = adj.tocoo()
        keep = coo.row < coo.col
        a, b = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64)
        since = np.full(len(a), np.nan)
        # Base times: look up (a, b) in the base CSR.
        in_base = (a < self._n0) & (b < self._n0)
        if in_base.any() and self._base.nnz:
            key_base = _pair_key(
                np.repeat(np.arange(self._n0), np.diff(self._base.indptr)),
                self._base.indices,
                self.n_users,
            )
            pos = np.searchsorted(key_base, _pair_key(a[in_base], b[in_base], self.n_users))
            pos = np.minimum(pos, len(key_base) - 1)
            hit = key_base[pos] == _pair_key(a[in_base], b[in_base], self.n_users)
            vals = np.where(hit, self._since[pos], np.nan)
            since[in_base] = vals
        if self._added:
            key = _pair_key(a, b, self.n_users)
            for x, partners in self._added.items():
                for y, when in partners.items():
                    if x < y:
                        at = int(np.searchsorted(key, x * self.n_users + y))
                        if at < len(key) and key[at] == x * self.n_users + y:
                            since[at] = when
        return a, b, since

    def compact(self) -> SocialGraph:
        """A new graph whose base holds the overlay (pending requests and blocks carried)."""
        a, b, since = self.friendship_pairs()
        n = self.n_users
        ids = self.id_index()
        rows = np.concatenate([a, b])
        cols = np.concatenate([b, a])
        order = np.lexsort((cols, rows))
        t = np.concatenate([since, since])[order]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        friends = sp.csr_matrix((np.ones(len(rows), np.float32), cols[order], indptr), shape=(n, n))
        return SocialGraph(
            ids,
            friends,
            t,
            requests=[(x, y) for x, ys in self._requests.items() for y in ys],
            blocks=[(x, y) for x, ys in self._blocks.items() for y in ys],
        )

    def request_counts(
        self, users: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Pending requests each of ``users`` has sent and received (not yet answered)."""
        idx = np.asarray(users, dtype=np.int64).tolist()
        sent = np.fromiter((len(self._requests.get(u, ())) for u in idx), np.int64, len(idx))
        got = np.fromiter((len(self._requested_by.get(u, ())) for u in idx), np.int64, len(idx))
        return sent, got

    def pending_requests(self) -> list[tuple[int, int]]:
        """Pending ``(src, dst)`` requests."""
        return [(x, y) for x, ys in self._requests.items() for y in ys]

    def blocked_pairs(self) -> list[tuple[int, int]]:
        """``(src, dst)``: ``src`` blocked ``dst``."""
        return [(x, y) for x, ys in self._blocks.items() for y in ys]

    def __repr__(self) -> str:
        return (
            f"SocialGraph(users={self.n_users}, friendships={self.n_friendships}, "
            f"pending={sum(len(v) for v in self._requests.values())}, "
            f"blocks={sum(len(v) for v in self._blocks.values())})"
        )
