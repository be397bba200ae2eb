"""Checking and normalising write batches into plain tuples, shared by every backend.

All checks run before a backend opens its transaction, so a bad row rejects the whole batch
with a :class:`DataError` that names the batch, the row index and the field.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from recfunnel.core.errors import DataError
from recfunnel.core.schema import EDGE_KINDS

InteractionRow = tuple[str, str, str, str, float, float | None, str]
_INTERACTION_FIELDS = frozenset(
    ("event_id", "user_id", "item_id", "event_type", "value", "timestamp", "context")
)
_USER_FIELDS = frozenset(("user_id", "attributes"))
_ITEM_FIELDS = frozenset(("item_id", "attributes", "created_at", "expires_at"))
_EDGE_FIELDS = frozenset(("src_user_id", "dst_user_id", "timestamp", "kind"))
EdgeRow = tuple[str, str, float | None, str]
_EMPTY_JSON = "{}"


def _fields(row: Any, allowed: frozenset[str], where: str) -> Mapping[str, Any]:
    if isinstance(row, Mapping):
        fields = row
    elif hasattr(row, "__dict__"):  # the dataclasses of core.schema / core.store
        fields = vars(row)
    else:
        raise DataError(
            f"expected a mapping or a record object, got {type(row).__name__}", source=where
        )
    if not allowed.issuperset(fields):
        unknown = sorted(set(fields) - allowed)
        raise DataError(
            f"unknown field(s) {unknown}; allowed: {sorted(allowed)} "
            "(extra event data belongs in 'context', extra user/item data in 'attributes')",
            source=where,
            field=str(unknown[0]),
        )
    return fields


def _where(batch: str, i: int) -> str:
    return f"{batch} batch row {i}"


def text_id(value: Any, where: str, name: str) -> str:
    """A non-empty id string without NUL characters (PostgreSQL text cannot hold them)."""
    if type(value) is not str:
        raise DataError(
            f"must be a string, got {type(value).__name__} {value!r}", source=where, field=name
        )
    if not value or "\x00" in value:
        raise DataError(
            f"must be a non-empty string without NUL characters, got {value!r}",
            source=where,
            field=name,
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"is not valid Unicode text: {value!r}", source=where, field=name) from None
    return value


def to_epoch(value: Any, where: str, name: str) -> float | None:
    """Epoch seconds from epoch seconds, an ISO 8601 string (naive = UTC) or a datetime.

    ``None`` and NaN mean unknown.

    >>> to_epoch("1970-01-02T00:00:00Z", "x", "timestamp")
    86400.0
    >>> to_epoch("yesterday", "events batch row 2", "timestamp")
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DataError: events batch row 2, field timestamp: expected epoch \
seconds or an ISO 8601 string such as '2024-05-01T12:00:00Z', got 'yesterday'
    """
    if value is None:
        return None
    t = type(value)
    if t is float or t is int:
        seconds = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise DataError(
                "expected epoch seconds or an ISO 8601 string such as "
                f"'2024-05-01T12:00:00Z', got {value!r}",
                source=where,
                field=name,
            ) from None
        return _datetime_epoch(parsed)
    elif isinstance(value, datetime):
        return _datetime_epoch(value)
    elif isinstance(value, np.integer | np.floating | float | int) and not isinstance(value, bool):
        seconds = float(value)  # numpy scalars, int/float subclasses
    else:
        raise DataError(
            f"expected epoch seconds or an ISO 8601 string, got {type(value).__name__} {value!r}",
            source=where,
            field=name,
        )
    if math.isnan(seconds):
        return None
    if math.isinf(seconds):
        raise DataError(f"must be finite, got {value!r}", source=where, field=name)
    return seconds


def moment(at: Any, where: str) -> float:
    """``at`` as epoch seconds; ``None`` is now."""
    when = to_epoch(at, where, "at")
    return time.time() if when is None else when


def _datetime_epoch(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _number(value: Any, where: str, name: str) -> float:
    t = type(value)
    if t is float or t is int:
        number = float(value)
    elif isinstance(value, np.integer | np.floating | float | int) and not isinstance(value, bool):
        number = float(value)
    else:
        raise DataError(
            f"must be a number, got {type(value).__name__} {value!r}", source=where, field=name
        )
    if not math.isfinite(number):
        raise DataError(f"must be finite, got {value!r}", source=where, field=name)
    return number


def to_json(value: Any, where: str, name: str) -> str:
    """A JSON object as compact text; ``None`` is ``{}``."""
    if not value:
        if value is None or isinstance(value, Mapping):
            return _EMPTY_JSON
    if not isinstance(value, Mapping):
        raise DataError(
            f"must be a JSON object (a mapping), got {type(value).__name__}",
            source=where,
            field=name,
        )
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise DataError(f"is not JSON-serialisable: {exc}", source=where, field=name) from None


def json_object(text: str) -> dict[str, Any]:
    """Decode a stored JSON object."""
    return {} if text == _EMPTY_JSON else dict(json.loads(text))


def _records(batch: Iterable[Any] | pd.DataFrame) -> Iterable[Any]:
    if isinstance(batch, pd.DataFrame):
        return batch.to_dict("records")
    if isinstance(batch, str | bytes | Mapping):
        raise DataError(
            f"expected a batch (a list of rows), got a single {type(batch).__name__}; "
            "wrap one row in a list"
        )
    return batch


def interaction_rows(batch: Iterable[Any] | pd.DataFrame) -> list[InteractionRow]:
    """Check a batch of events; rows are ``(event_id, user_id, item_id, event_type, value,
    timestamp, context_json)``, with generated ids where none was given.

    The loop is the ingest hot path: it tests the common shape (a dict of ASCII ids, float
    value and epoch timestamp) in a few expressions and sends anything else (ISO timestamps,
    numpy numbers, Unicode ids, mistakes) through :func:`_interaction_row`, which converts or
    raises the located error.
    """
    out: list[InteractionRow] = []
    append = out.append
    allowed = _INTERACTION_FIELDS
    numeric = _NUMERIC
    empty = _EMPTY_JSON
    ids = _EventIds()
    for i, row in enumerate(_records(batch)):
        if type(row) is dict and allowed.issuperset(row):
            get = row.get
            event_id = get("event_id")
            if event_id is None:
                event_id = ids.next()
            user_id = get("user_id")
            item_id = get("item_id")
            event_type = get("event_type", "interaction")
            value = get("value", 1.0)
            ts = get("timestamp")
            context = get("context")
            if (
                type(event_id) is str
                and type(user_id) is str
                and type(item_id) is str
                and type(event_type) is str
                and event_id
                and user_id
                and item_id
                and event_type
                and type(value) in numeric
                and value - value == 0  # finite
                and (ts is None or (type(ts) in numeric and ts - ts == 0))
                and not context
                and (plain := event_id + user_id + item_id + event_type).isascii()
                and "\x00" not in plain
            ):
                append(
                    (
                        event_id,
                        user_id,
                        item_id,
                        event_type,
                        float(value),
                        None if ts is None else float(ts),
                        empty,
                    )
                )
                continue
        append(_interaction_row(row, i, ids))
    return out


_NUMERIC = frozenset((float, int))


class _EventIds:
    """Ids for events sent without one: time-ordered (milliseconds first), then 64 random
    bits drawn once per batch, then the row's position, so they are unique across processes
    and append to the end of the event-id index instead of landing at random places in it."""

    def __init__(self) -> None:
        self.prefix = ""
        self.n = 0

    def next(self) -> str:
        if not self.prefix:
            self.prefix = f"{time.time_ns() // 1_000_000:012x}{secrets.randbits(64):016x}"
        self.n += 1
        return f"{self.prefix}{self.n:08x}"


def _interaction_row(row: Any, i: int, ids: _EventIds) -> InteractionRow:
    try:
        get = _fields(row, _INTERACTION_FIELDS, "").get
        event_id = get("event_id")
        event_id = ids.next() if event_id is None else text_id(event_id, "", "event_id")
        user_id = text_id(get("user_id"), "", "user_id")
        item_id = text_id(get("item_id"), "", "item_id")
        event_type = text_id(get("event_type", "interaction"), "", "event_type")
        value = _number(get("value", 1.0), "", "value")
        ts = to_epoch(get("timestamp"), "", "timestamp")
        context = to_json(get("context"), "", "context")
    except DataError as exc:
        raise _located(exc, "interactions", i) from None
    return (event_id, user_id, item_id, event_type, value, ts, context)


def _located(exc: DataError, batch: str, i: int) -> DataError:
    return DataError(exc.message, source=_where(batch, i), field=exc.field)


def user_rows(batch: Iterable[Any] | pd.DataFrame) -> list[tuple[str, str]]:
    """``(user_id, attributes_json)``, one per id (the last row of an id wins)."""
    out: dict[str, tuple[str, str]] = {}
    for i, row in enumerate(_records(batch)):
        try:
            f = _fields(row, _USER_FIELDS, "")
            uid = text_id(f.get("user_id"), "", "user_id")
            out[uid] = (uid, to_json(f.get("attributes"), "", "attributes"))
        except DataError as exc:
            raise _located(exc, "users", i) from None
    return list(out.values())


def item_rows(
    batch: Iterable[Any] | pd.DataFrame,
) -> list[tuple[str, str, float | None, float | None]]:
    """``(item_id, attributes_json, created_at, expires_at)``, the last row of an id wins."""
    out: dict[str, tuple[str, str, float | None, float | None]] = {}
    for i, row in enumerate(_records(batch)):
        try:
            f = _fields(row, _ITEM_FIELDS, "")
            iid = text_id(f.get("item_id"), "", "item_id")
            created = to_epoch(f.get("created_at"), "", "created_at")
            expires = to_epoch(f.get("expires_at"), "", "expires_at")
            if created is not None and expires is not None and expires <= created:
                raise DataError(
                    f"expires_at ({expires}) must be after created_at ({created})",
                    field="expires_at",
                )
            out[iid] = (iid, to_json(f.get("attributes"), "", "attributes"), created, expires)
        except DataError as exc:
            raise _located(exc, "items", i) from None
    return list(out.values())


def edge_rows(batch: Iterable[Any] | pd.DataFrame) -> list[EdgeRow]:
    """``(src_user_id, dst_user_id, timestamp, kind)``, one per pair: the first row's
    timestamp and the last row's kind, as if the rows were added one by one.

    >>> edge_rows([("a", "b"), {"src_user_id": "a", "dst_user_id": "b", "kind": "block"}])
    [('a', 'b', None, 'block')]
    >>> edge_rows([{"src_user_id": "a", "dst_user_id": "b", "kind": "mute"}])
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DataError: edges batch row 0, field kind: must be one of \
['connect', 'block'], got 'mute'
    """
    out: dict[tuple[str, str], EdgeRow] = {}
    for i, row in enumerate(_records(batch)):
        try:
            src, dst, f = _edge(row)
            ts = to_epoch(f.get("timestamp"), "", "timestamp")
            kind = _edge_kind(f.get("kind", "connect"))
        except DataError as exc:
            raise _located(exc, "edges", i) from None
        first = out.get((src, dst))
        out[(src, dst)] = (src, dst, ts if first is None else first[2], kind)
    return list(out.values())


def _edge_kind(value: Any) -> str:
    if value is None:
        return "connect"
    if type(value) is not str or value not in EDGE_KINDS:
        raise DataError(f"must be one of {list(EDGE_KINDS)}, got {value!r}", field="kind")
    return value


def edge_pairs(batch: Iterable[Any] | pd.DataFrame) -> list[tuple[str, str]]:
    """Distinct ``(src_user_id, dst_user_id)`` pairs from pairs, edges or mappings."""
    out: dict[tuple[str, str], None] = {}
    for i, row in enumerate(_records(batch)):
        try:
            src, dst, _ = _edge(row)
        except DataError as exc:
            raise _located(exc, "edges", i) from None
        out[(src, dst)] = None
    return list(out)


def _edge(row: Any) -> tuple[str, str, Mapping[str, Any]]:
    if isinstance(row, tuple) and len(row) == 2:
        f: Mapping[str, Any] = {"src_user_id": row[0], "dst_user_id": row[1]}
    else:
        f = _fields(row, _EDGE_FIELDS, "")
    src = text_id(f.get("src_user_id"), "", "src_user_id")
    dst = text_id(f.get("dst_user_id"), "", "dst_user_id")
    if src == dst:
        raise DataError(f"a user cannot follow themselves ({src!r})", field="dst_user_id")
    return src, dst, f


def check_ids(ids: Iterable[str], name: str) -> list[str]:
    """Distinct ids, checked, in first-seen order."""
    if isinstance(ids, str):
        raise DataError(f"expected a list of ids, got the single string {ids!r}", field=name)
    out: dict[str, None] = {}
    for i, value in enumerate(ids):
        try:
            out[text_id(value, "", name)] = None
        except DataError as exc:
            raise DataError(exc.message, source=f"{name} {i}", field=name) from None
    return list(out)


def check_page(limit: int, cursor: str | None) -> int:
    """The position after which a page starts (0 for the first page)."""
    if type(limit) is not int or not 1 <= limit <= 10_000:
        raise DataError(f"must be an integer in [1, 10000], got {limit!r}", field="limit")
    if cursor is None:
        return 0
    if not isinstance(cursor, str) or not cursor.isdigit() or len(cursor) > 19:
        raise DataError(
            f"is not a cursor this store returned: {cursor!r}; pass next_cursor of the previous "
            "page, or None for the first page",
            field="cursor",
        )
    return int(cursor)


def check_table(table: str, known: Iterable[str]) -> None:
    from recfunnel.core.errors import ConfigError

    if table not in known:
        raise ConfigError(f"unknown table {table!r}; a store holds {sorted(known)}")


def check_batch_size(batch_size: int) -> None:
    from recfunnel.core.errors import ConfigError

    if type(batch_size) is not int or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")


ServedRow = tuple[str, str, str]
_SERVED_FIELDS = ("request_id", "user_id", "model_version")


def served_rows(batch: Iterable[Any]) -> list[ServedRow]:
    """``(request_id, user_id, model_version)`` from served requests, tuples or mappings.

    >>> served_rows([("r1", "ana", "v1"), {"request_id": "r2", "user_id": "bo",
    ...                                      "model_version": "v1"}])
    [('r1', 'ana', 'v1'), ('r2', 'bo', 'v1')]
    """
    if isinstance(batch, str):
        raise DataError(f"expected a list of served requests, got the string {batch!r}")
    out = []
    for i, row in enumerate(batch):
        where = _where("served requests", i)
        values: tuple[Any, ...]
        if isinstance(row, tuple) and len(row) == 3:
            values = row
        elif isinstance(row, Mapping):
            values = tuple(row.get(f) for f in _SERVED_FIELDS)
        else:
            raise DataError(
                f"expected a (request_id, user_id, model_version) tuple or a mapping, got "
                f"{type(row).__name__}",
                source=where,
            )
        request_id, user_id, version = (
            text_id(v, where, f) for v, f in zip(values, _SERVED_FIELDS, strict=True)
        )
        out.append((request_id, user_id, version))
    return out


def check_keep(keep: int) -> int:
    """How many served requests to keep: a positive integer."""
    from recfunnel.core.errors import ConfigError

    if type(keep) is not int or keep < 1:
        raise ConfigError(f"keep must be a positive integer, got {keep!r}")
    return keep


def check_position(position: int) -> int:
    """A position of the deletion log: an integer >= 0."""
    from recfunnel.core.errors import ConfigError

    if type(position) is not int or position < 0:
        raise ConfigError(f"position must be an integer >= 0, got {position!r}")
    return position


def change_entry(kind: str, rows: Sequence[Sequence[Any]]) -> tuple[str, str]:
    """``(kind, payload)`` of a change-log entry for rows already normalised (``*_rows``);
    attributes (JSON text) are stored decoded, a batch over ``CHANGE_ROWS_MAX`` rows is a
    ``reset`` entry without rows."""
    from recfunnel.core.store import CHANGE_ROWS_MAX

    if len(rows) > CHANGE_ROWS_MAX:
        return "reset", "[]"
    if kind in ("users", "items"):
        rows = [[r[0], json.loads(r[1]), *r[2:]] for r in rows]
    return kind, json.dumps([list(r) for r in rows], separators=(",", ":"))


def change_rows(payload: str) -> list[list[Any]]:
    rows: list[list[Any]] = json.loads(payload)
    return rows


def check_limit(limit: int) -> int:
    """How many change-log entries to read at most: a positive integer."""
    from recfunnel.core.errors import ConfigError

    if type(limit) is not int or limit < 1:
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    return limit
