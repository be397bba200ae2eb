"""The data model: users, items (possibly ephemeral), interactions with context, social edges.

Row types are plain frozen dataclasses (what the service and stores exchange); the columnar
:class:`Dataset` holds whole tables as pandas DataFrames with the canonical column names below.
External ids are always strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recfunnel.core.errors import DataError

#: Canonical columns of each table. Other columns are attributes (users, items) or context
#: (interactions).
INTERACTION_COLUMNS = ("user_id", "item_id", "event_type", "value", "timestamp")
USER_COLUMNS = ("user_id",)
ITEM_COLUMNS = ("item_id", "created_at", "expires_at")
EDGE_COLUMNS = ("src_user_id", "dst_user_id", "timestamp")
#: What a social edge says (``SocialEdge.kind``); an edges table without a ``kind`` column is
#: all ``"connect"``.
EDGE_KINDS = ("connect", "block")


@dataclass(frozen=True)
class User:
    user_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Item:
    """An item. ``created_at``/``expires_at`` are epoch seconds; ``None`` means unbounded.

    >>> Item("news-1", created_at=100.0, expires_at=200.0).is_live(150.0)
    True
    >>> Item("news-1", created_at=100.0, expires_at=200.0).is_live(200.0)
    False
    """

    item_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    created_at: float | None = None
    expires_at: float | None = None

    def is_live(self, at: float) -> bool:
        """Whether the item can be shown at time ``at`` (created <= at < expires)."""
        if self.created_at is not None and at < self.created_at:
            return False
        return self.expires_at is None or at < self.expires_at


@dataclass(frozen=True)
class Interaction:
    """One event: ``user_id`` did ``event_type`` on ``item_id`` (e.g. rating 4.0, click 1.0)."""

    user_id: str
    item_id: str
    event_type: str = "interaction"
    value: float = 1.0
    timestamp: float | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SocialEdge:
    """A directed user-user edge; ``kind`` says what it means (one of :data:`EDGE_KINDS`).

    * ``"connect"`` (the default): ``src_user_id`` sent ``dst_user_id`` a friend request (or
      follows them). ``connect`` edges in **both** directions make a friendship; one
      direction only is a pending request.
    * ``"block"``: ``src_user_id`` blocked ``dst_user_id``; the pair is never suggested to
      either side, whatever other edges they have.

    A store holds at most one edge per ordered pair: adding a pair again keeps its first
    ``timestamp`` and takes the new ``kind`` (a block replaces a request, and a later
    ``connect`` replaces a block); removing the pair undoes either.

    >>> SocialEdge("ana", "bo")
    SocialEdge(src_user_id='ana', dst_user_id='bo', timestamp=None, kind='connect')
    """

    src_user_id: str
    dst_user_id: str
    timestamp: float | None = None
    kind: str = "connect"


def _require(df: pd.DataFrame, columns: tuple[str, ...], table: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"missing column(s) {missing}; present: {list(df.columns)}", source=f"{table} table"
        )
    dup = df.columns[df.columns.duplicated()].tolist()
    if dup:
        raise DataError(f"duplicate column(s) {dup}", source=f"{table} table")


@dataclass
class Dataset:
    """Whole tables of one product, with canonical column names.

    ``interactions``: ``user_id``, ``item_id`` (str), ``event_type`` (str), ``value`` (float),
    ``timestamp`` (float epoch seconds, NaN if unknown) and any context columns.
    ``users``: ``user_id`` + attribute columns. ``items``: ``item_id``, ``created_at``,
    ``expires_at`` + attribute columns. ``edges``: ``src_user_id``, ``dst_user_id``,
    ``timestamp``, optionally ``kind`` (:data:`EDGE_KINDS`; all ``"connect"`` when absent, as
    in a plain friendship list) and any other columns (e.g. ``layer`` of a multilayer graph).
    """

    interactions: pd.DataFrame
    users: pd.DataFrame | None = None
    items: pd.DataFrame | None = None
    edges: pd.DataFrame | None = None
    name: str = "dataset"

    def __post_init__(self) -> None:
        _require(self.interactions, INTERACTION_COLUMNS, "interactions")
        if self.users is not None:
            _require(self.users, USER_COLUMNS, "users")
        if self.items is not None:
            _require(self.items, ITEM_COLUMNS, "items")
        if self.edges is not None:
            _require(self.edges, EDGE_COLUMNS, "edges")

    @staticmethod
    def interactions_frame(
        user_id: Any,
        item_id: Any,
        value: Any = 1.0,
        timestamp: Any = np.nan,
        event_type: str = "interaction",
        **context: Any,
    ) -> pd.DataFrame:
        """Build an interactions table with canonical names and dtypes.

        >>> Dataset.interactions_frame(["u1"], ["i1"], [4.0], [10]).columns.tolist()
        ['user_id', 'item_id', 'event_type', 'value', 'timestamp']
        """
        users = pd.Series(np.asarray(user_id).astype(str))
        n = len(users)
        frame = pd.DataFrame(
            {
                "user_id": users,
                "item_id": pd.Series(np.asarray(item_id).astype(str)),
                "event_type": pd.Series([event_type] * n, dtype=users.dtype),
                "value": np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy(),
                "timestamp": np.broadcast_to(np.asarray(timestamp, dtype=np.float64), (n,)).copy(),
            }
        )
        for key, col in context.items():
            frame[key] = col
        return frame

    def __len__(self) -> int:
        return len(self.interactions)

    def summary(self) -> dict[str, Any]:
        inter = self.interactions
        return {
            "name": self.name,
            "interactions": len(inter),
            "users": int(inter["user_id"].nunique()),
            "items": int(inter["item_id"].nunique()),
            "catalog_items": None if self.items is None else len(self.items),
            "edges": None if self.edges is None else len(self.edges),
        }
