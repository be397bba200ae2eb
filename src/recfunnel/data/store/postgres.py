"""The server store: PostgreSQL through ``psycopg`` 3.

A batch of events is copied (``COPY … FROM STDIN``) into a per-connection temporary table
and moved into ``interactions`` with one ``INSERT … SELECT … ON CONFLICT (event_id) DO
NOTHING``, so a batch costs a few round trips whatever its size. Rows are inserted in
``event_id`` order, so concurrent batches that share ids take their locks in the same order
and cannot deadlock; their arrival order (``seq``) is drawn in input order before that sort.
Users, items and edges go through ``unnest`` of arrays, sorted by key for the same reason.
Reads stream through a server-side cursor on a private connection in one ``REPEATABLE READ``
snapshot.

Durability is the server's: with ``fsync=on`` and ``synchronous_commit=on`` (the defaults) a
commit returns after its WAL record is on disk.

Use a database (or a schema, through ``?options=-csearch_path%3Dname`` in the URL) of its own:
the tables are called ``users``, ``items``, ``interactions``, ``edges`` and ``store_meta``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

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
    import psycopg
    import pyarrow as pa

#: Version 2 added ``edges.kind``; a version-1 database is migrated when opened.
SCHEMA_VERSION = "2"
#: pg_advisory_xact_lock key taken while creating tables, so concurrent opens do not race.
_DDL_LOCK = 0x7265_6366_756E  # "recfun"
#: Attempts for a write that the server aborted to break a deadlock or serialisation conflict.
_ATTEMPTS = 5

_EDGE_KIND = "TEXT NOT NULL DEFAULT 'connect' CHECK (kind IN ('connect', 'block'))"

DDL = (
    "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    'CREATE TABLE IF NOT EXISTS users (user_id TEXT COLLATE "C" PRIMARY KEY, '
    "attributes TEXT NOT NULL DEFAULT '{}')",
    'CREATE TABLE IF NOT EXISTS items (item_id TEXT COLLATE "C" PRIMARY KEY, '
    "attributes TEXT NOT NULL DEFAULT '{}', created_at DOUBLE PRECISION, "
    "expires_at DOUBLE PRECISION)",
    "CREATE INDEX IF NOT EXISTS items_expires_at ON items (expires_at)",
    "CREATE SEQUENCE IF NOT EXISTS interactions_seq",
    "CREATE TABLE IF NOT EXISTS interactions ("
    "seq BIGINT PRIMARY KEY DEFAULT nextval('interactions_seq'), "
    'event_id TEXT COLLATE "C" NOT NULL UNIQUE, user_id TEXT COLLATE "C" NOT NULL, '
    'item_id TEXT COLLATE "C" NOT NULL, event_type TEXT NOT NULL, '
    "value DOUBLE PRECISION NOT NULL, timestamp DOUBLE PRECISION, "
    "context TEXT NOT NULL DEFAULT '{}')",
    "CREATE INDEX IF NOT EXISTS interactions_user ON interactions (user_id, seq)",
    'CREATE TABLE IF NOT EXISTS edges (src_user_id TEXT COLLATE "C" NOT NULL, '
    'dst_user_id TEXT COLLATE "C" NOT NULL, timestamp DOUBLE PRECISION, '
    f"kind {_EDGE_KIND}, PRIMARY KEY (src_user_id, dst_user_id))",
    "CREATE INDEX IF NOT EXISTS edges_dst ON edges (dst_user_id)",
    # Added after version 2 without a version change (only added; older readers ignore them).
    "CREATE TABLE IF NOT EXISTS served_requests (seq BIGSERIAL PRIMARY KEY, request_id TEXT "
    'COLLATE "C" NOT NULL UNIQUE, user_id TEXT COLLATE "C" NOT NULL, '
    "model_version TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS served_requests_user ON served_requests (user_id)",
    "CREATE TABLE IF NOT EXISTS user_deletions (seq BIGSERIAL PRIMARY KEY, "
    'user_id TEXT COLLATE "C" NOT NULL, deleted_at DOUBLE PRECISION NOT NULL)',
    "CREATE TABLE IF NOT EXISTS changes (seq BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, "
    "payload TEXT NOT NULL)",
)

#: Version 1 -> 2, run under the DDL lock: edges get their kind (every stored edge was a
#: connect). The constant default makes it a catalogue change; the CHECK reads the table once.
MIGRATIONS = {"1": (f"ALTER TABLE edges ADD COLUMN IF NOT EXISTS kind {_EDGE_KIND}",)}

_STAGE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS stage_interactions (ord INT, event_id TEXT, "
    "user_id TEXT, item_id TEXT, event_type TEXT, value DOUBLE PRECISION, "
    "timestamp DOUBLE PRECISION, context TEXT) ON COMMIT DELETE ROWS"
)
_COPY = (
    "COPY stage_interactions (ord, event_id, user_id, item_id, event_type, value, timestamp, "
    "context) FROM STDIN"
)
# nextval runs after the inner ORDER BY (volatile target-list functions are evaluated above
# the sort), so seq follows input order while the insert itself goes in event_id order.
_MOVE = (
    "INSERT INTO interactions (seq, event_id, user_id, item_id, event_type, value, timestamp, "
    "context) SELECT seq, event_id, user_id, item_id, event_type, value, timestamp, context "
    "FROM (SELECT nextval('interactions_seq') AS seq, s.* FROM "
    "(SELECT * FROM stage_interactions ORDER BY ord) s) numbered "
    'ORDER BY event_id COLLATE "C", ord ON CONFLICT (event_id) DO NOTHING'
)

SELECTS = {
    "interactions": "SELECT event_id, user_id, item_id, event_type, value, timestamp, context "
    "FROM interactions ORDER BY seq",
    "users": "SELECT user_id, attributes FROM users ORDER BY user_id",
    "items": "SELECT item_id, attributes, created_at, expires_at FROM items ORDER BY item_id",
    "edges": "SELECT src_user_id, dst_user_id, timestamp, kind FROM edges "
    "ORDER BY src_user_id, dst_user_id",
}

T = TypeVar("T")


class PostgresStore(Store):
    """A :class:`~recfunnel.core.store.Store` in a PostgreSQL database (``psycopg`` 3)."""

    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        super().__init__()
        self.url = url
        self.connect_timeout = connect_timeout
        self._lock = threading.RLock()
        self._conn = self._connect()
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            for statement in DDL:
                self._conn.execute(statement)
            self._conn.execute(
                "INSERT INTO store_meta VALUES ('schema_version', %s) ON CONFLICT DO NOTHING",
                (SCHEMA_VERSION,),
            )
            row = self._conn.execute(
                "SELECT value FROM store_meta WHERE key = 'schema_version'"
            ).fetchone()
            if row is not None and row[0] in MIGRATIONS:
                for statement in MIGRATIONS[row[0]]:
                    self._conn.execute(statement)
                self._conn.execute(
                    "UPDATE store_meta SET value = %s WHERE key = 'schema_version'",
                    (SCHEMA_VERSION,),
                )
                row = (SCHEMA_VERSION,)
        if row is None or row[0] != SCHEMA_VERSION:
            self._conn.close()
            raise ArtifactError(
                f"store schema version {row and row[0]}, this recfunnel reads {SCHEMA_VERSION}"
            )
        self._conn.execute(_STAGE)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        return cls(url, **options)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            import psycopg
        except ImportError as exc:
            raise ConfigError(
                "the PostgreSQL store needs psycopg 3: pip install 'psycopg[binary]'"
            ) from exc
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=self.connect_timeout)
        except psycopg.Error as exc:
            raise ConfigError(f"cannot connect to PostgreSQL store: {exc}".strip()) from exc

    def _write(self, work: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """Run ``work`` in one transaction, again if the server aborted it to break a deadlock
        or a serialisation conflict (nothing of an aborted attempt remains)."""
        import psycopg.errors as pge

        with self._lock:
            for attempt in range(_ATTEMPTS):
                try:
                    with self._conn.transaction(), self._conn.cursor() as cur:
                        return work(cur)
                except (pge.DeadlockDetected, pge.SerializationFailure):
                    if attempt == _ATTEMPTS - 1:
                        raise
            raise AssertionError("unreachable")

    # -- writes ------------------------------------------------------------------------------

    def add_interactions(self, interactions: Iterable[Any] | pd.DataFrame) -> IngestResult:
        rows = _rows.interaction_rows(interactions)

        def work(cur: psycopg.Cursor[Any]) -> int:
            with cur.copy(_COPY) as copy:
                write = copy.write_row
                for i, row in enumerate(rows):
                    write((i, *row))
            cur.execute(_MOVE)
            return cur.rowcount

        accepted = self._write(work) if rows else 0
        return IngestResult(accepted, len(rows) - accepted, [r[0] for r in rows])

    def upsert_users(self, users: Iterable[Any]) -> int:
        rows = sorted(_rows.user_rows(users))
        if rows:
            self._write(
                lambda cur: _log_change(
                    cur.execute(
                        "INSERT INTO users (user_id, attributes) "
                        "SELECT * FROM unnest(%s::text[], %s::text[]) "
                        "ON CONFLICT (user_id) DO UPDATE SET attributes = EXCLUDED.attributes",
                        _columns(rows, 2),
                    ),
                    "users",
                    rows,
                )
            )
        return len(rows)

    def upsert_items(self, items: Iterable[Any]) -> int:
        rows = sorted(_rows.item_rows(items), key=lambda r: r[0])
        if rows:
            self._write(
                lambda cur: _log_change(
                    cur.execute(
                        "INSERT INTO items (item_id, attributes, created_at, expires_at) "
                        "SELECT * FROM unnest(%s::text[], %s::text[], %s::float8[], "
                        "%s::float8[]) ON CONFLICT (item_id) DO UPDATE SET "
                        "attributes = EXCLUDED.attributes, created_at = EXCLUDED.created_at, "
                        "expires_at = EXCLUDED.expires_at",
                        _columns(rows, 4),
                    ),
                    "items",
                    rows,
                )
            )
        return len(rows)

    def add_edges(self, edges: Iterable[Any]) -> int:
        rows = sorted(_rows.edge_rows(edges), key=lambda r: r[:2])
        if not rows:
            return 0
        columns = _columns(rows, 4)

        def work(cur: psycopg.Cursor[Any]) -> int:
            added = cur.execute(
                "INSERT INTO edges (src_user_id, dst_user_id, timestamp, kind) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::float8[], %s::text[]) "
                "ON CONFLICT DO NOTHING",
                columns,
            ).rowcount
            # Pairs stored before keep their timestamp and take the new kind (not counted).
            # A statement of its own (READ COMMITTED) also sees a pair that a concurrent batch
            # inserted first, so the later batch's kind wins there too.
            cur.execute(
                "UPDATE edges e SET kind = p.kind "
                "FROM unnest(%s::text[], %s::text[], %s::text[]) AS p(src, dst, kind) "
                "WHERE e.src_user_id = p.src AND e.dst_user_id = p.dst AND e.kind <> p.kind",
                [columns[0], columns[1], columns[3]],
            )
            _log_change(cur, "edges", rows)
            return added

        return self._write(work)

    def remove_edges(self, edges: Iterable[Any]) -> int:
        pairs = sorted(_rows.edge_pairs(edges))
        if not pairs:
            return 0

        def work(cur: psycopg.Cursor[Any]) -> int:
            removed = cur.execute(
                "DELETE FROM edges e USING unnest(%s::text[], %s::text[]) AS p(src, dst) "
                "WHERE e.src_user_id = p.src AND e.dst_user_id = p.dst",
                _columns(pairs, 2),
            ).rowcount
            _log_change(cur, "edges_removed", pairs)
            return removed

        return self._write(work)

    def _delete_users(self, user_ids: list[str]) -> dict[str, int]:
        given = _rows.check_ids(user_ids, "user_id")
        ids = sorted(given)

        def work(cur: psycopg.Cursor[Any]) -> dict[str, int]:
            # Deletions take turns (readers are not blocked), so the deletion log's positions
            # are committed in order: a reader that saw position p never misses one below it.
            cur.execute("LOCK TABLE user_deletions IN EXCLUSIVE MODE")
            # Lock the user rows (in id order) so deletes and upserts of one user serialise.
            cur.execute(
                "SELECT 1 FROM users WHERE user_id = ANY(%s) ORDER BY user_id FOR UPDATE", (ids,)
            )
            removed = {}
            for table, sql in (
                ("interactions", "DELETE FROM interactions WHERE user_id = ANY(%(ids)s)"),
                (
                    "edges",
                    "DELETE FROM edges WHERE src_user_id = ANY(%(ids)s) "
                    "OR dst_user_id = ANY(%(ids)s)",
                ),
                ("users", "DELETE FROM users WHERE user_id = ANY(%(ids)s)"),
            ):
                removed[table] = cur.execute(sql, {"ids": ids}).rowcount
            cur.execute("DELETE FROM served_requests WHERE user_id = ANY(%s)", (ids,))
            cur.execute(
                "INSERT INTO user_deletions (user_id, deleted_at) "
                "SELECT u, %s FROM unnest(%s::text[]) WITH ORDINALITY AS d(u, o) ORDER BY o",
                (time.time(), given),
            )
            _log_change(cur, "users_deleted", [(u,) for u in given])
            return removed

        return self._write(work)

    def record_requests(self, requests: Iterable[Any], *, keep: int) -> None:
        rows = sorted(_rows.served_rows(requests))  # key order: concurrent batches cannot deadlock
        _rows.check_keep(keep)
        if not rows:
            return

        def work(cur: psycopg.Cursor[Any]) -> None:
            cur.execute("SET LOCAL synchronous_commit TO OFF")  # not an acknowledged write
            cur.execute(
                "INSERT INTO served_requests (request_id, user_id, model_version) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]) "
                "ON CONFLICT (request_id) DO NOTHING",
                _columns(rows, 3),
            )
            cur.execute(
                "DELETE FROM served_requests "
                "WHERE seq <= (SELECT max(seq) FROM served_requests) - %s",
                (keep,),
            )

        self._write(work)

    def served_requests(self, request_ids: Iterable[str]) -> dict[str, ServedRequest]:
        ids = _rows.check_ids(request_ids, "request_id")
        if not ids:
            return {}
        with self._lock:
            rows = self._conn.execute(
                "SELECT request_id, user_id, model_version FROM served_requests "
                "WHERE request_id = ANY(%s)",
                (ids,),
            ).fetchall()
        return {r[0]: ServedRequest(*r) for r in rows}

    def deletions_since(self, position: int = 0) -> Deletions:
        after = _rows.check_position(position)
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, user_id FROM user_deletions WHERE seq > %s ORDER BY seq", (after,)
            ).fetchall()
        return Deletions([r[1] for r in rows], int(rows[-1][0]) if rows else after)

    def changes_since(self, position: int = 0, *, limit: int = 1000) -> Changes:
        after = _rows.check_position(position)
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, kind, payload, (SELECT value FROM store_meta "
                "WHERE key = 'changes_trimmed') FROM changes WHERE seq > %s ORDER BY seq LIMIT %s",
                (after, _rows.check_limit(limit)),
            ).fetchall()
        if not rows:
            return Changes([], after, True)
        trimmed = int(rows[0][3]) if rows[0][3] is not None else 0
        entries = [Change(int(r[0]), r[1], _rows.change_rows(r[2])) for r in rows]
        return Changes(entries, int(rows[-1][0]), after >= trimmed)

    def purge_expired(self, at: float | None = None) -> int:
        when = _rows.moment(at, "purge_expired")
        return self._write(
            lambda cur: cur.execute("DELETE FROM items WHERE expires_at <= %s", (when,)).rowcount
        )

    # -- reads -------------------------------------------------------------------------------

    def user_interactions(
        self, user_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page:
        _rows.text_id(user_id, "user_interactions", "user_id")
        after = _rows.check_page(limit, cursor)
        with self._lock:
            found = self._conn.execute(
                "SELECT seq, event_id, user_id, item_id, event_type, value, timestamp, context "
                "FROM interactions WHERE user_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (user_id, after, limit + 1),
            ).fetchall()
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

    def live_items(self, at: float | None = None) -> list[str]:
        when = _rows.moment(at, "live_items")
        with self._lock:
            found = self._conn.execute(
                "SELECT item_id FROM items WHERE (created_at IS NULL OR created_at <= %(at)s) "
                "AND (expires_at IS NULL OR expires_at > %(at)s)",
                {"at": when},
            ).fetchall()
        return sorted(r[0] for r in found)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                t: self._conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                for t in TABLES
            }

    def iter_batches(self, table: str, *, batch_size: int = 65_536) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        _rows.check_table(table, SELECTS)
        _rows.check_batch_size(batch_size)
        schema = table_schema(table)
        conn = self._connect()
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            with conn.cursor(name="recfunnel_read") as cur:
                cur.itersize = batch_size
                cur.execute(SELECTS[table])
                while rows := cur.fetchmany(batch_size):
                    columns = zip(*rows, strict=True)
                    yield pa.RecordBatch.from_arrays(
                        [pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)],
                        schema=schema,
                    )
            conn.execute("COMMIT")
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _log_change(cur: psycopg.Cursor[Any], kind: str, rows: Sequence[Any]) -> None:
    """Append a change-log entry at the end of a write's transaction and drop all but the
    newest ``CHANGES_KEEP`` entries (recording how far: ``changes_trimmed``).

    The exclusive table lock (readers are not blocked) is held until commit, so positions are
    committed in order: a reader that saw position p never misses one below it. It is taken
    last, after the write's row locks, and nothing waits on a row lock after it, so it cannot
    deadlock; two writes of one row serialise on the row lock first, so their entries are in
    the order of their effects."""
    if not rows:
        return
    cur.execute("LOCK TABLE changes IN EXCLUSIVE MODE")
    row = cur.execute(
        "INSERT INTO changes (kind, payload) VALUES (%s, %s) RETURNING seq",
        _rows.change_entry(kind, rows),
    ).fetchone()
    assert row is not None
    cutoff = int(row[0]) - CHANGES_KEEP
    if cutoff > 0 and cur.execute("DELETE FROM changes WHERE seq <= %s", (cutoff,)).rowcount:
        cur.execute(
            "INSERT INTO store_meta VALUES ('changes_trimmed', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (str(cutoff),),
        )


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists (the parameters of an ``unnest``)."""
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]
