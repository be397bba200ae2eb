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
