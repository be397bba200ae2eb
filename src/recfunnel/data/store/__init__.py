"""Durable stores opened by URL: ``open_store("sqlite:///events.db" | "postgresql://…")``.

Backends register by URL scheme and are imported only when opened, so the PostgreSQL driver
(``psycopg``) is needed only by those who use it. Every backend implements
:class:`recfunnel.core.store.Store` and passes ``tests/contract/test_store.py``.

>>> store = open_store("sqlite:///:memory:")
>>> store.upsert_users([{"user_id": "ana", "attributes": {"country": "PT"}}])
1
>>> store.counts()["users"]
1
>>> store.close()
>>> open_store("mongodb://localhost")
Traceback (most recent call last):
...
recfunnel.core.errors.ConfigError: no store for URL scheme 'mongodb'; known: postgres, \
postgresql, sqlite (e.g. sqlite:///events.db or postgresql://user@host/db)
"""

from __future__ import annotations

import importlib
from typing import Any

from recfunnel.core.errors import ConfigError
from recfunnel.core.schema import Dataset
from recfunnel.core.store import Store

#: URL scheme -> "module:class" of the backend (imported lazily).
REGISTRY: dict[str, str] = {
    "sqlite": "recfunnel.data.store.sqlite:SQLiteStore",
    "postgresql": "recfunnel.data.store.postgres:PostgresStore",
    "postgres": "recfunnel.data.store.postgres:PostgresStore",
}


def open_store(url: str, **options: Any) -> Store:
    """Open (creating its tables if needed) the store at ``url``; ``options`` go to the
    backend (``timeout`` for SQLite, ``connect_timeout`` for PostgreSQL)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in REGISTRY:
        raise ConfigError(
            f"no store for URL scheme {scheme!r}; known: {', '.join(sorted(REGISTRY))} "
            "(e.g. sqlite:///events.db or postgresql://user@host/db)"
        )
    module, _, name = REGISTRY[scheme].partition(":")
    cls = getattr(importlib.import_module(module), name)
    store: Store = cls.from_url(url, **options)
    return store


__all__ = ["REGISTRY", "Store", "open_store"]


def _jsonable(value: Any) -> Any:
    """A plain JSON value for an attribute cell, or None for a missing one."""
    import math

    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def import_dataset(
    store: Store,
    dataset: Dataset,
    *,
    source: str,
    batch_size: int = 20_000,
    progress: bool = False,
) -> dict[str, int]:
    """Write a loaded :class:`~recfunnel.core.schema.Dataset` (users, items, interactions,
    edges) into ``store``, in batches of one transaction each.

    Each interaction gets the event id ``"<source>:<row>"``, so importing the same dataset
    again adds nothing (the store is idempotent on event ids) and an interrupted import can
    simply be run again. Interaction columns beyond the canonical ones go into ``context``;
    user and item columns beyond the ids into ``attributes`` (missing values left out).

    >>> from recfunnel.core.schema import Dataset
    >>> data = Dataset(Dataset.interactions_frame(["u1", "u2"], ["i1", "i1"], timestamp=[1, 2]))
    >>> with open_store("sqlite:///:memory:") as store:
    ...     first = import_dataset(store, data, source="demo")
    ...     again = import_dataset(store, data, source="demo")
    >>> first["accepted"], again["accepted"], again["already_present"]
    (2, 0, 2)
    """
    from recfunnel.core.schema import INTERACTION_COLUMNS

    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dataset.interactions), desc=f"importing {source}", unit="event")
    totals = {"users": 0, "items": 0, "edges": 0, "accepted": 0, "already_present": 0}
    for table, key, method in (("users", "user_id", "upsert_users"),
                               ("items", "item_id", "upsert_items")):  # fmt: skip
        frame = getattr(dataset, table)
        if frame is None:
            continue
        special = {key, "created_at", "expires_at"} if table == "items" else {key}
        extra = [c for c in frame.columns if c not in special]
        rows = []
        for rec in frame.to_dict("records"):
            row: dict[str, Any] = {key: str(rec[key])}
            attrs = {c: _jsonable(rec[c]) for c in extra}
            row["attributes"] = {c: v for c, v in attrs.items() if v is not None}
            if table == "items":
                for c in ("created_at", "expires_at"):
                    if _jsonable(rec.get(c)) is not None:
                        row[c] = float(rec[c])
            rows.append(row)
        for start in range(0, len(rows), batch_size):
            totals[table] += getattr(store, method)(rows[start : start + batch_size])
    inter = dataset.interactions
    context_cols = [c for c in inter.columns if c not in INTERACTION_COLUMNS]
    for start in range(0, len(inter), batch_size):
        part = inter.iloc[start : start + batch_size]
        rows = []
        for i, rec in enumerate(part.to_dict("records"), start):
            row = {
                "event_id": f"{source}:{i}",
                "user_id": str(rec["user_id"]),
                "item_id": str(rec["item_id"]),
                "event_type": str(rec["event_type"]),
                "value": float(rec["value"]),
            }
            if _jsonable(rec["timestamp"]) is not None:
                row["timestamp"] = float(rec["timestamp"])
            context = {c: _jsonable(rec[c]) for c in context_cols}
            row["context"] = {c: v for c, v in context.items() if v is not None}
            rows.append(row)
        result = store.add_interactions(rows)
        totals["accepted"] += result.accepted
        totals["already_present"] += result.duplicates
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.close()
    if dataset.edges is not None and len(dataset.edges):
        edges = [
            {"src_user_id": str(r["src_user_id"]), "dst_user_id": str(r["dst_user_id"]),
             "timestamp": _jsonable(r["timestamp"]), "kind": str(r.get("kind") or "connect")}
            for r in dataset.edges.to_dict("records")
        ]  # fmt: skip
        totals["edges"] = store.add_edges(edges)
    return totals
