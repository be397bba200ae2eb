"""The embedded store: one SQLite file in WAL mode with ``synchronous=FULL``.

With WAL and ``synchronous=FULL`` every commit fsyncs the write-ahead log before it returns,
so an acknowledged batch survives a process crash or power loss. Writers take the database
lock up front (``BEGIN IMMEDIATE``) and wait up to ``timeout`` seconds for one another, so
several processes may share one file; readers stream from their own connection and see a
consistent snapshot without blocking writers.

>>> from recfunnel.data.store import open_store
>>> with open_store("sqlite:///:memory:") as store:
...     first = store.add_interactions([
...         {"event_id": "e1", "user_id": "ana", "item_id": "book", "timestamp": 10},
...         {"event_id": "e2", "user_id": "ana", "item_id": "film", "value": 4.0},
...     ])
...     retry = store.add_interactions([{"event_id": "e2", "user_id": "ana", "item_id": "film"}])
...     page = store.user_interactions("ana", limit=1)
...     (first.accepted, retry.accepted, retry.duplicates), page.rows[0].item_id, page.next_cursor
((2, 0, 1), 'book', '1')
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pandas as pd

from recfunnel.core.errors import ArtifactError, ConfigError
from recfunnel.core.store import (
    CHANGES_KEEP,
    TABLES,
    Change,
    Changes,
    Deletions,
    IngestResult,
    Page,
    ServedRequest,
    Store,
    StoredInteraction,
    table_schema,
)
from recfunnel.data.store import _rows

if TYPE_CHECKING:
    import pyarrow as pa

#: Version 2 added ``edges.kind``; a version-1 file is migrated when opened.
SCHEMA_VERSION = "2"

#: The tables; ``seq`` is the arrival order that pagination and ``to_arrow`` follow.
DDL = """
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY, attributes TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY, attributes TEXT NOT NULL DEFAULT '{}',
    created_at REAL, expires_at REAL);
CREATE INDEX IF NOT EXISTS items_expires_at ON items (expires_at);
CREATE TABLE IF NOT EXISTS interactions (
    seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL,
    item_id TEXT NOT NULL, event_type TEXT NOT NULL, value REAL NOT NULL, timestamp REAL,
    context TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS interactions_user ON interactions (user_id, seq);
CREATE TABLE IF NOT EXISTS edges (
    src_user_id TEXT NOT NULL, dst_user_id TEXT NOT NULL, timestamp REAL,
    kind TEXT NOT NULL DEFAULT 'connect' CHECK (kind IN ('connect', 'block')),
    PRIMARY KEY (src_user_id, dst_user_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_dst ON edges (dst_user_id);
CREATE TABLE IF NOT EXISTS served_requests (
    seq INTEGER PRIMARY KEY, request_id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL,
    model_version TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS served_requests_user ON served_requests (user_id);
CREATE TABLE IF NOT EXISTS user_deletions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, deleted_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL);
"""
#: ``served_requests`` and ``user_deletions`` came after version 2 without a version change:
#: they are only added (``CREATE … IF NOT EXISTS`` on every open), and a reader that does not
#: know them never looks at them (nor ``changes``, the change log). ``user_deletions`` and
#: ``changes`` use AUTOINCREMENT so that positions are never reused. Every write holds the
#: database's write lock (``BEGIN IMMEDIATE``), so change-log positions follow commit order.


#: Connection settings, after ``journal_mode=WAL``: fsync the log on every commit, and a page
#: cache (negative = KiB) large enough to keep the event-id index's hot pages in memory.
PRAGMAS = ("PRAGMA synchronous=FULL", "PRAGMA cache_size=-65536")
#: Served requests are not acknowledged writes: their commits skip the fsync (WAL with
#: ``synchronous=NORMAL`` survives a process crash, not a power loss), ~0.03 instead of ~0.2 ms.
RELAXED, DURABLE = "PRAGMA synchronous=NORMAL", "PRAGMA synchronous=FULL"

#: Version 1 -> 2: edges get their kind (every stored edge was a connect). SQLite checks the
#: CHECK only on later writes, which is all it needs here.
ADD_EDGE_KIND = (
    "ALTER TABLE edges ADD COLUMN kind TEXT NOT NULL DEFAULT 'connect' "
    "CHECK (kind IN ('connect', 'block'))"
)

INSERT_INTERACTIONS = (
    "INSERT INTO interactions (event_id, user_id, item_id, event_type, value, timestamp, context)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"
)

#: What ``iter_batches`` selects per table, in the column order of ``core.store.table_schema``.
SELECTS = {
    "interactions": "SELECT event_id, user_id, item_id, event_type, value, timestamp, context "
    "FROM interactions ORDER BY seq",
    "users": "SELECT user_id, attributes FROM users ORDER BY user_id",
    "items": "SELECT item_id, attributes, created_at, expires_at FROM items ORDER BY item_id",
    "edges": "SELECT src_user_id, dst_user_id, timestamp, kind FROM edges "
    "ORDER BY src_user_id, dst_user_id",
}


def path_from_url(url: str) -> str:
    """The file of a ``sqlite:///`` URL (three slashes + a relative path, four + an absolute
    one, as SQLAlchemy); ``sqlite://`` and ``sqlite:///:memory:`` are in memory.

    >>> path_from_url("sqlite:////var/lib/recfunnel/events.db")
    '/var/lib/recfunnel/events.db'
    """
    if url in ("sqlite://", "sqlite:///:memory:"):
        return ":memory:"
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise ConfigError(
            f"not a SQLite URL: {url!r}; expected sqlite:///relative/path.db, "
            "sqlite:////absolute/path.db or sqlite:///:memory:"
        )
    return url[len("sqlite:///") :]


class SQLiteStore(Store):
    """A :class:`~recfunnel.core.store.Store` in one SQLite file (or ``":memory:"``)."""

    def __init__(self, path: str, *, timeout: float = 30.0) -> None:
        super().__init__()
        self.path = path
        self.timeout = timeout
        self._lock = threading.RLock()
        self._conn = self._connect()
        with self._lock:
            # executescript commits on its own, so the script carries its transaction.
            self._conn.executescript(
                "BEGIN IMMEDIATE;" + DDL + "INSERT INTO store_meta VALUES ('schema_version', "
                f"'{SCHEMA_VERSION}') ON CONFLICT DO NOTHING; COMMIT;"
            )
            version = self._migrate()
        if version != SCHEMA_VERSION:
            self._conn.close()
            raise ArtifactError(
                f"{path}: store schema version {version}, this recfunnel reads {SCHEMA_VERSION}"
            )

    def _migrate(self) -> str:
        """Bring a version-1 file to the current schema, in one transaction that holds the
        write lock (processes opening the file together migrate it once); the version."""
        with self._write() as cur:
            (version,) = cur.execute(
                "SELECT value FROM store_meta WHERE key = 'schema_version'"
            ).fetchone()
            if version != "1":
                return str(version)
            columns = {row[1] for row in cur.execute("PRAGMA table_info(edges)")}
            if "kind" not in columns:
                cur.execute(ADD_EDGE_KIND)
            cur.execute(
                "UPDATE store_meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,)
            )
        return SCHEMA_VERSION

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        return cls(path_from_url(url), **options)

    @property
    def in_memory(self) -> bool:
        return self.path == ":memory:" or self.path == ""

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open SQLite store {self.path!r}: {exc}") from exc
        if mode != "wal" and not self.in_memory:
            conn.close()
            raise ConfigError(f"{self.path}: SQLite refused WAL mode (journal_mode={mode})")
        for pragma in PRAGMAS:
            conn.execute(pragma)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One transaction holding the write lock from the start; rolled back on any error."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.rollback()
                raise
            self._conn.commit()

    # -- writes ------------------------------------------------------------------------------

    def add_interactions(self, interactions: Iterable[Any] | pd.DataFrame) -> IngestResult:
        rows = _rows.interaction_rows(interactions)
        with self._write() as cur:
            before = self._conn.total_changes
            cur.executemany(INSERT_INTERACTIONS, rows)
            accepted = self._conn.total_changes - before
        return IngestResult(accepted, len(rows) - accepted, [r[0] for r in rows])

    def upsert_users(self, users: Iterable[Any]) -> int:
        rows = _rows.user_rows(users)
        with self._write() as cur:
            cur.executemany(
                "INSERT INTO users VALUES (?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET attributes = excluded.attributes",
                rows,
            )
            _log_change(cur, "users", rows)
        return len(rows)

    def upsert_items(self, items: Iterable[Any]) -> int:
        rows = _rows.item_rows(items)
        with self._write() as cur:
            cur.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?) ON CONFLICT (item_id) DO UPDATE SET "
                "attributes = excluded.attributes, created_at = excluded.created_at, "
                "expires_at = excluded.expires_at",
                rows,
            )
            _log_change(cur, "items", rows)
        return len(rows)

    def add_edges(self, edges: Iterable[Any]) -> int:
        rows = _rows.edge_rows(edges)
        with self._write() as cur:
            before = self._conn.total_changes
            cur.executemany(
                "INSERT INTO edges (src_user_id, dst_user_id, timestamp, kind) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )
            added = self._conn.total_changes - before
            # Pairs stored before keep their timestamp and take the new kind (not counted).
            cur.executemany(
                "UPDATE edges SET kind = ?4 WHERE src_user_id = ?1 AND dst_user_id = ?2 "
                "AND kind <> ?4",
                rows,
            )
            _log_change(cur, "edges", rows)
            return added

    def remove_edges(self, edges: Iterable[Any]) -> int:
        pairs = _rows.edge_pairs(edges)
        with self._write() as cur:
            before = self._conn.total_changes
            cur.executemany("DELETE FROM edges WHERE src_user_id = ? AND dst_user_id = ?", pairs)
            removed = self._conn.total_changes - before
            _log_change(cur, "edges_removed", pairs)
            return removed

    def _delete_users(self, user_ids: list[str]) -> dict[str, int]:
        ids = [(u,) for u in _rows.check_ids(user_ids, "user_id")]
        removed = {}
        now = time.time()
        with self._write() as cur:
            for table, sql in (
                ("interactions", "DELETE FROM interactions WHERE user_id = ?"),
                ("edges", "DELETE FROM edges WHERE src_user_id = ?1 OR dst_user_id = ?1"),
                ("users", "DELETE FROM users WHERE user_id = ?"),
            ):
                before = self._conn.total_changes
                cur.executemany(sql, ids)
                removed[table] = self._conn.total_changes - before
            cur.executemany("DELETE FROM served_requests WHERE user_id = ?", ids)
            cur.executemany(
                "INSERT INTO user_deletions (user_id, deleted_at) VALUES (?, ?)",
                [(u, now) for (u,) in ids],
            )
            _log_change(cur, "users_deleted", ids)
        return removed

    def record_requests(self, requests: Iterable[Any], *, keep: int) -> None:
        rows = _rows.served_rows(requests)
        _rows.check_keep(keep)
        if not rows:
            return
        with self._lock:
            self._conn.execute(RELAXED)
            try:
                with self._write() as cur:
                    cur.executemany(
                        "INSERT INTO served_requests (request_id, user_id, model_version) "
                        "VALUES (?, ?, ?) ON CONFLICT (request_id) DO NOTHING",
                        rows,
                    )
                    cur.execute(
                        "DELETE FROM served_requests "
                        "WHERE seq <= (SELECT max(seq) FROM served_requests) - ?",
                        (keep,),
                    )
            finally:
                self._conn.execute(DURABLE)

    def served_requests(self, request_ids: Iterable[str]) -> dict[str, ServedRequest]:
        ids = _rows.check_ids(request_ids, "request_id")
        found: dict[str, ServedRequest] = {}
        with self._lock:
            for start in range(0, len(ids), 500):  # below SQLite's bound-parameter limit
                part = ids[start : start + 500]
                rows = self._conn.execute(
                    "SELECT request_id, user_id, model_version FROM served_requests "
                    f"WHERE request_id IN ({', '.join('?' * len(part))})",
                    part,
                ).fetchall()
                found.update((r[0], ServedRequest(*r)) for r in rows)
        return found

    def deletions_since(self, position: int = 0) -> Deletions:
        after = _rows.check_position(position)
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, user_id FROM user_deletions WHERE seq > ? ORDER BY seq", (after,)
            ).fetchall()
        return Deletions([r[1] for r in rows], rows[-1][0] if rows else after)

    def changes_since(self, position: int = 0, *, limit: int = 1000) -> Changes:
        after = _rows.check_position(position)
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, kind, payload FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, _rows.check_limit(limit)),
            ).fetchall()
            if not rows:
                return Changes([], after, True)
            trimmed = self._conn.execute(
                "SELECT value FROM store_meta WHERE key = 'changes_trimmed'"
            ).fetchone()
        entries = [Change(r[0], r[1], _rows.change_rows(r[2])) for r in rows]
        return Changes(entries, rows[-1][0], after >= (int(trimmed[0]) if trimmed else 0))

    def purge_expired(self, at: float | None = None) -> int:
        when = _rows.moment(at, "purge_expired")
        with self._write() as cur:
            return cur.execute("DELETE FROM items WHERE expires_at <= ?", (when,)).rowcount

    # -- reads -------------------------------------------------------------------------------

    def user_interactions(
        self, user_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page:
        _rows.text_id(user_id, "user_interactions", "user_id")
        after = _rows.check_page(limit, cursor)
        with self._lock:
            found = self._conn.execute(
                "SELECT seq, event_id, user_id, item_id, event_type, value, timestamp, context "
                "FROM interactions WHERE user_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (user_id, after, limit + 1),
            ).fetchall()
        return _page(found, limit)

    def live_items(self, at: float | None = None) -> list[str]:
        when = _rows.moment(at, "live_items")
        with self._lock:
            found = self._conn.execute(
                "SELECT item_id FROM items WHERE (created_at IS NULL OR created_at <= ?1) "
                "AND (expires_at IS NULL OR expires_at > ?1)",
                (when,),
            ).fetchall()
        return sorted(r[0] for r in found)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                t: self._conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES
            }

    def iter_batches(self, table: str, *, batch_size: int = 65_536) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        _rows.check_table(table, SELECTS)
        _rows.check_batch_size(batch_size)
        schema = table_schema(table)
        with self._reader() as conn:
            cur = conn.execute(SELECTS[table])
            while rows := cur.fetchmany(batch_size):
                columns = zip(*rows, strict=True)
                yield pa.RecordBatch.from_arrays(
                    [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)],
                    schema=schema,
                )

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A connection reading one snapshot: a private one for a file, else the shared one."""
        if self.in_memory:
            with self._lock:
                yield self._conn
            return
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        try:
            conn.execute("BEGIN")
            yield conn
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _log_change(cur: sqlite3.Cursor, kind: str, rows: list[Any]) -> None:
    """Append a change-log entry (in the write's transaction) and drop all but the newest
    ``CHANGES_KEEP`` entries, recording how far they were dropped (``changes_trimmed``)."""
    if not rows:
        return
    cur.execute("INSERT INTO changes (kind, payload) VALUES (?, ?)", _rows.change_entry(kind, rows))
    cutoff = (cur.lastrowid or 0) - CHANGES_KEEP
    if cutoff > 0 and cur.execute("DELETE FROM changes WHERE seq <= ?", (cutoff,)).rowcount:
        cur.execute(
            "INSERT INTO store_meta VALUES ('changes_trimmed', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(cutoff),),
        )


def _page(found: list[tuple[Any, ...]], limit: int) -> Page:
    rows = [
        StoredInteraction(
            event_id=r[1],
            user_id=r[2],
            item_id=r[3],
            event_type=r[4],
            value=r[5],
            timestamp=r[6],
            context=_rows.json_object(r[7]),
        )
        for r in found[:limit]
    ]
    return Page(rows, str(found[limit - 1][0]) if len(found) > limit else None)
