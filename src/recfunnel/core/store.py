"""The ``Store`` contract: the durable home of users, items, interactions and social edges.

Backends are opened by URL through ``recfunnel.data.store.open_store`` (``sqlite:///…`` or
``postgresql://…``) and all pass one conformance suite (``tests/contract/test_store.py``).
The contract, for every backend:

* **Batch-first.** Every write takes a batch; a single row is a batch of one. A batch is one
  transaction: a bad row rejects the whole batch with a :class:`~recfunnel.core.errors.DataError`
  naming the row and the field, and nothing of it is written.
* **Durable.** A write is acknowledged (the method returns) only after its transaction has
  committed with the backend's durability on (SQLite: WAL with ``synchronous=FULL``; PostgreSQL:
  ``fsync`` and ``synchronous_commit``), so an acknowledged write survives a crash.
* **Users and items are upserted**: a later row for the same id replaces its attributes
  (and, for items, its ``created_at``/``expires_at``). Within one batch the last row wins.
* **Interactions are append-only and idempotent by event id.** A row may carry a client-supplied
  ``event_id``; a row whose id is already stored (or repeated earlier in the batch) is counted
  as a duplicate and not written again, so a retried batch is never double-counted. Rows
  without an id get a random UUID, which makes them *not* idempotent: clients that retry must
  send their own ids (or reuse the ids returned in :attr:`IngestResult.event_ids`).
* **Social edges are directed and keyed by the ordered pair** ``(src_user_id, dst_user_id)``,
  with a ``kind`` (see :class:`~recfunnel.core.schema.SocialEdge`): ``"connect"`` (the
  default; a friend request or follow, and a friendship once both directions exist) or
  ``"block"`` (``src`` blocked ``dst``: never suggest the pair to either side). Adding a pair
  that is already stored keeps its ``timestamp`` and sets its ``kind`` to the new one (a block
  replaces a connect, and a connect replaces a block); within one batch that is the first
  row's timestamp and the last row's kind. ``add_edges`` counts only pairs that were not
  stored before, so a retried batch adds 0 and a kind change is not counted. ``remove_edges``
  removes a pair whatever its kind (unblocking is removing the block).
* **Deleting a user** removes their row, their interactions, every edge that touches them and
  their served requests, and appends their id to the **deletion log**, all in one
  transaction; then it calls each registered deletion hook (feature logs, served caches, …)
  with the ids. Processes that share a store (the workers of ``recfunnel serve --workers N``)
  read the log with :meth:`Store.deletions_since` to forget, in their own memory, users
  deleted through another process. The log keeps the ids (and nothing else about the user) so
  that a process started later, or a model trained before the deletion, stops using them too.
* **The change log.** Every write of users, items or edges, and every user deletion, also
  appends one entry to the store's change log in the same transaction (``kind`` and the
  written rows, normalised: see :class:`Change`), so processes sharing the store (the
  workers of ``recfunnel serve --workers N``) apply each other's writes to their in-memory
  state by reading :meth:`Store.changes_since`. Entries are in commit order: a reader that
  saw position ``p`` never later finds a new entry below it. The log is a bounded window:
  each logged write drops all but the newest ``CHANGES_KEEP`` entries, and a batch larger
  than ``CHANGE_ROWS_MAX`` rows is logged as a ``"reset"`` entry without rows (bulk loads).
  A reader that fell behind the window (``complete`` is False) or meets a ``reset`` rebuilds
  what it holds from the tables. Interactions are not logged (they are read per request).
* **Served requests** (request id → user, model version) are remembered for feedback
  attribution across processes: :meth:`Store.record_requests` keeps the most recent ``keep``
  of them. Unlike the rest they are not acknowledged writes (SQLite commits them without an
  fsync, PostgreSQL with ``synchronous_commit = off``): a power loss may drop the last few,
  which costs only the ``model_version`` of feedback about them.
* Timestamps are epoch seconds (UTC) on the way out; on the way in they may also be ISO 8601
  strings (a string without an offset is read as UTC) or ``datetime`` objects.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Self

import pandas as pd

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.schema import Dataset

if TYPE_CHECKING:
    import pyarrow as pa

    from recfunnel.core.matrix import InteractionMatrix

#: Tables a store holds, in the order ``to_dataset`` reads them.
TABLES = ("interactions", "users", "items", "edges")

#: A hook run after users are deleted from the store, with their ids.
DeletionHook = Callable[[Sequence[str]], None]


@dataclass(frozen=True)
class StoredInteraction:
    """One stored event: an :class:`~recfunnel.core.schema.Interaction` plus its ``event_id``.

    ``context`` is the JSON object sent with the event, decoded.
    """

    event_id: str
    user_id: str
    item_id: str
    event_type: str = "interaction"
    value: float = 1.0
    timestamp: float | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestResult:
    """What ``add_interactions`` did: ``accepted`` new rows and ``duplicates`` skipped ones.

    ``event_ids`` lists the event id of every input row, in input order (generated ones
    included), so a client can retry with the same ids.
    """

    accepted: int
    duplicates: int
    event_ids: list[str]


class Page(NamedTuple):
    """One page of a keyset-paginated read; ``next_cursor`` is ``None`` on the last page."""

    rows: list[StoredInteraction]
    next_cursor: str | None


class ServedRequest(NamedTuple):
    """A served recommendation list: who got it and which model version produced it."""

    request_id: str
    user_id: str
    model_version: str


class Deletions(NamedTuple):
    """Users deleted after a position of the deletion log (oldest first, an id again if it was
    deleted again) and the position to read on from next time."""

    user_ids: list[str]
    position: int


#: Entries the change log keeps (older ones are dropped by later writes): with
#: ``CHANGE_ROWS_MAX`` at most a million rows, usually far fewer (most writes are small).
CHANGES_KEEP = 1000
#: A logged batch with more rows than this is logged as a ``"reset"`` entry without rows (the
#: service's largest batch, so only bulk loads are resets).
CHANGE_ROWS_MAX = 1000
#: Kinds of change-log entries and the rows each carries (JSON arrays):
#: ``edges`` ``[src, dst, timestamp, kind]``, ``edges_removed`` ``[src, dst]``, ``users``
#: ``[user_id, attributes]``, ``items`` ``[item_id, attributes, created_at, expires_at]``
#: (attributes decoded to objects), ``users_deleted`` ``[user_id]``, ``reset`` none.
CHANGE_KINDS = ("edges", "edges_removed", "users", "items", "users_deleted", "reset")


class Change(NamedTuple):
    """One entry of the change log: its position, kind and rows (see ``CHANGE_KINDS``)."""

    seq: int
    kind: str
    rows: list[list[Any]]


class Changes(NamedTuple):
    """Change-log entries after a position (oldest first), the position to read on from, and
    whether they are all there is after it (False: older entries were dropped meanwhile, the
    reader must rebuild its state from the tables)."""

    entries: list[Change]
    position: int
    complete: bool


class Store(ABC):
    """Base class of every store backend.

    Backends implement the abstract methods; reading into pandas / ``InteractionMatrix``,
    the context-manager protocol and the deletion hooks are derived here. A store object may be
    shared between threads (each backend serialises its own connection).
    """

    def __init__(self) -> None:
        self._deletion_hooks: list[DeletionHook] = []

    # -- writes ------------------------------------------------------------------------------

    @abstractmethod
    def upsert_users(self, users: Iterable[Any]) -> int:
        """Insert or replace users (``User`` objects or mappings with ``user_id``,
        ``attributes``). Returns the number of distinct users written."""

    @abstractmethod
    def upsert_items(self, items: Iterable[Any]) -> int:
        """Insert or replace items (``Item`` objects or mappings with ``item_id``,
        ``attributes``, ``created_at``, ``expires_at``). Returns the number written."""

    @abstractmethod
    def add_interactions(self, interactions: Iterable[Any] | pd.DataFrame) -> IngestResult:
        """Append events (mappings, ``Interaction``/``StoredInteraction`` objects, or a
        DataFrame with the same columns); idempotent on ``event_id``."""

    @abstractmethod
    def add_edges(self, edges: Iterable[Any]) -> int:
        """Add directed social edges (``SocialEdge`` objects or mappings with ``src_user_id``,
        ``dst_user_id`` and optional ``timestamp``, ``kind``). A pair already present keeps its
        timestamp and takes the new kind. Returns the number of pairs that were not stored
        before (kind changes are not counted)."""

    @abstractmethod
    def remove_edges(self, edges: Iterable[Any]) -> int:
        """Remove edges given as ``(src, dst)`` pairs, ``SocialEdge`` objects or mappings.
        Returns the number removed."""

    def delete_users(self, user_ids: Iterable[str]) -> dict[str, int]:
        """Remove users everywhere: their row, interactions, edges (both directions) and served
        requests, and log the deletion, in one transaction; then run every deletion hook.
        Returns what the store removed from ``interactions``, ``edges`` and ``users``.

        Deleting is idempotent, so when a hook fails (the store part is already committed and
        the other hooks have still run) the caller can simply call ``delete_users`` again; the
        failures are raised together as an ``ExceptionGroup``.
        """
        if isinstance(user_ids, str):
            raise DataError(f"expected a list of user ids, got the string {user_ids!r}")
        ids = list(dict.fromkeys(user_ids))
        removed = self._delete_users(ids)
        errors: list[Exception] = []
        for hook in list(self._deletion_hooks):
            try:
                hook(ids)
            except Exception as exc:  # one failing hook must not stop the others
                errors.append(exc)
        if errors:
            raise ExceptionGroup(f"{len(errors)} user-deletion hook(s) failed", errors)
        return removed

    def add_deletion_hook(self, hook: DeletionHook) -> DeletionHook:
        """Register ``hook(user_ids)`` to run after users are deleted (usable as a decorator)."""
        self._deletion_hooks.append(hook)
        return hook

    @abstractmethod
    def _delete_users(self, user_ids: list[str]) -> dict[str, int]:
        """Delete the store's part of ``user_ids`` and append them to the deletion log (one
        transaction); counts per table."""

    @abstractmethod
    def record_requests(self, requests: Iterable[Any], *, keep: int) -> None:
        """Remember served requests (:class:`ServedRequest` objects, ``(request_id, user_id,
        model_version)`` tuples or mappings), then drop all but the ``keep`` most recent ones.
        A request id already recorded keeps its first record. Not an acknowledged write (see
        the module docstring)."""

    @abstractmethod
    def served_requests(self, request_ids: Iterable[str]) -> dict[str, ServedRequest]:
        """The recorded requests among ``request_ids``, by id (ids not recorded, dropped or
        deleted with their user are left out)."""

    @abstractmethod
    def deletions_since(self, position: int = 0) -> Deletions:
        """Users deleted after ``position`` of the deletion log (0: from the start), oldest
        first. Positions only grow, and every process sees deletions in one order: pass the
        returned ``position`` next time to read only newer ones."""

    @abstractmethod
    def changes_since(self, position: int = 0, *, limit: int = 1000) -> Changes:
        """Up to ``limit`` change-log entries after ``position`` (0: from the start), oldest
        first; pass the returned ``position`` next time. One indexed read when there is
        nothing new."""

    @abstractmethod
    def purge_expired(self, at: float | None = None) -> int:
        """Delete items whose ``expires_at <= at`` (default: now); their interactions stay,
        for training. Returns the number deleted."""

    # -- reads -------------------------------------------------------------------------------

    @abstractmethod
    def user_interactions(
        self, user_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """A user's events in arrival order, ``limit`` at a time; pass the previous page's
        ``next_cursor`` to continue. Rows arriving while a client pages appear on later pages,
        never twice."""

    @abstractmethod
    def live_items(self, at: float | None = None) -> list[str]:
        """Ids (sorted) of items live at ``at`` (default: now): ``created_at <= at <
        expires_at``, an unset bound being unbounded (as ``core.schema.Item.is_live``)."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Row count of each table (``interactions``, ``users``, ``items``, ``edges``)."""

    @abstractmethod
    def iter_batches(self, table: str, *, batch_size: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Stream a table as Arrow record batches (interactions in arrival order, the others
        by id). Attributes and context are JSON text columns."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; further calls fail."""

    # -- derived -----------------------------------------------------------------------------

    def to_arrow(self, table: str = "interactions", *, batch_size: int = 65_536) -> pa.Table:
        """A whole table as one Arrow table, read in streamed batches."""
        import pyarrow as pa

        schema = table_schema(table)
        return pa.Table.from_batches(self.iter_batches(table, batch_size=batch_size), schema)

    def to_dataset(self, *, name: str = "store") -> Dataset:
        """All tables as a :class:`~recfunnel.core.schema.Dataset` for training.

        Interactions keep ``event_id`` and their ``context`` as a JSON text column; user and
        item attributes are spread into columns.
        """
        frames = {t: self.to_arrow(t).to_pandas() for t in TABLES}
        return Dataset(
            interactions=frames["interactions"],
            users=_spread_attributes(frames["users"]),
            items=_spread_attributes(frames["items"]),
            edges=frames["edges"],
            name=name,
        )

    def users_frame(self) -> pd.DataFrame:
        """The users table with attributes spread into columns (``user_id`` first)."""
        return _spread_attributes(self.to_arrow("users").to_pandas())

    def to_matrix(self, *, include_catalog: bool = True) -> InteractionMatrix:
        """The interaction log encoded for models (see ``InteractionMatrix.from_dataset``)."""
        from recfunnel.core.matrix import InteractionMatrix

        return InteractionMatrix.from_dataset(self.to_dataset(), include_catalog=include_catalog)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _spread_attributes(frame: pd.DataFrame) -> pd.DataFrame:
    attrs = pd.DataFrame.from_records(
        [json.loads(a) for a in frame["attributes"].tolist()], index=frame.index
    )
    base = frame.drop(columns="attributes")
    clash = [c for c in attrs.columns if c in base.columns]
    return pd.concat([base, attrs.drop(columns=clash)], axis=1)


def _schema(*columns: tuple[str, str]) -> Callable[[], pa.Schema]:
    def build() -> pa.Schema:
        import pyarrow as pa

        types = {"str": pa.string(), "f64": pa.float64()}
        return pa.schema([pa.field(n, types[t]) for n, t in columns])

    return build


#: The Arrow schema of each table, as backends must produce it.
_EMPTY_SCHEMAS: Mapping[str, Callable[[], pa.Schema]] = {
    "interactions": _schema(
        ("event_id", "str"),
        ("user_id", "str"),
        ("item_id", "str"),
        ("event_type", "str"),
        ("value", "f64"),
        ("timestamp", "f64"),
        ("context", "str"),
    ),
    "users": _schema(("user_id", "str"), ("attributes", "str")),
    "items": _schema(
        ("item_id", "str"), ("attributes", "str"), ("created_at", "f64"), ("expires_at", "f64")
    ),
    "edges": _schema(
        ("src_user_id", "str"), ("dst_user_id", "str"), ("timestamp", "f64"), ("kind", "str")
    ),
}


def table_schema(table: str) -> pa.Schema:
    """The Arrow schema of ``table`` (``interactions``, ``users``, ``items`` or ``edges``)."""
    if table not in _EMPTY_SCHEMAS:
        raise ConfigError(f"unknown table {table!r}; a store holds {list(TABLES)}")
    return _EMPTY_SCHEMAS[table]()
