"""The encoded, columnar interaction log every model and split works on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from recfunnel.core.errors import DataError
from recfunnel.core.ids import IdIndex
from recfunnel.core.schema import Dataset


@dataclass(frozen=True)
class InteractionMatrix:
    """Interactions as parallel arrays over shared user and item indexes.

    Train, validation and test parts of a split share the same ``users`` and ``items`` indexes,
    so a model fitted on one part scores the others in the same coordinates.

    >>> m = InteractionMatrix.from_arrays(["a", "a", "b"], ["x", "y", "x"])
    >>> m.to_csr().toarray().tolist()
    [[1.0, 1.0], [1.0, 0.0]]
    """

    users: IdIndex
    items: IdIndex
    user: npt.NDArray[np.int32]
    item: npt.NDArray[np.int32]
    value: npt.NDArray[np.float32]
    timestamp: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        n = len(self.user)
        for name in ("item", "value", "timestamp"):
            if len(getattr(self, name)) != n:
                raise DataError(f"array {name!r} has {len(getattr(self, name))} rows, user has {n}")
        if n and (self.user.min() < 0 or self.user.max() >= len(self.users)):
            raise DataError("user indices out of range of the user index")
        if n and (self.item.min() < 0 or self.item.max() >= len(self.items)):
            raise DataError("item indices out of range of the item index")

    @classmethod
    def from_arrays(
        cls,
        user_ids: npt.ArrayLike,
        item_ids: npt.ArrayLike,
        value: npt.ArrayLike | None = None,
        timestamp: npt.ArrayLike | None = None,
        *,
        users: IdIndex | None = None,
        items: IdIndex | None = None,
    ) -> InteractionMatrix:
        """Encode external ids; indexes are built in order of first appearance unless given."""
        u_ids = np.asarray(user_ids).astype(str)
        i_ids = np.asarray(item_ids).astype(str)
        users = users if users is not None else IdIndex.from_values(u_ids, kind="user")
        items = items if items is not None else IdIndex.from_values(i_ids, kind="item")
        n = len(u_ids)
        return cls(
            users=users,
            items=items,
            user=users.encode(u_ids).astype(np.int32),
            item=items.encode(i_ids).astype(np.int32),
            value=np.ones(n, np.float32) if value is None else np.asarray(value, np.float32),
            timestamp=(
                np.full(n, np.nan) if timestamp is None else np.asarray(timestamp, np.float64)
            ),
        )

    @classmethod
    def from_dataset(cls, dataset: Dataset, *, include_catalog: bool = True) -> InteractionMatrix:
        """Encode a :class:`Dataset`. With ``include_catalog`` the item index also holds catalog
        items (and the user index users) that have no interaction, as RecBole does."""
        inter = dataset.interactions
        users = IdIndex.from_values(
            _concat(inter["user_id"], dataset.users, "user_id", include_catalog), kind="user"
        )
        items = IdIndex.from_values(
            _concat(inter["item_id"], dataset.items, "item_id", include_catalog), kind="item"
        )
        return cls.from_arrays(
            inter["user_id"].to_numpy(),
            inter["item_id"].to_numpy(),
            inter["value"].to_numpy(),
            inter["timestamp"].to_numpy(),
            users=users,
            items=items,
        )

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_items)

    def subset(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.integer]) -> InteractionMatrix:
        """The rows selected by a boolean mask or index array, over the same indexes."""
        return InteractionMatrix(
            users=self.users,
            items=self.items,
            user=self.user[rows],
            item=self.item[rows],
            value=self.value[rows],
            timestamp=self.timestamp[rows],
        )

    def to_csr(self, *, binary: bool = True) -> sp.csr_matrix:
        """Users x items sparse matrix; duplicates collapse to 1 (``binary``) or sum their value."""
        data = np.ones(len(self), np.float32) if binary else self.value.astype(np.float32)
        m = sp.csr_matrix((data, (self.user, self.item)), shape=self.shape, dtype=np.float32)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        m.sort_indices()
        return m

    def user_counts(self) -> npt.NDArray[np.int64]:
        return np.bincount(self.user, minlength=self.n_users)

    def item_counts(self) -> npt.NDArray[np.int64]:
        return np.bincount(self.item, minlength=self.n_items)


def _concat(ids: object, table: object, column: str, include_catalog: bool) -> npt.NDArray[np.str_]:
    first = np.asarray(ids).astype(str)
    if not include_catalog or table is None:
        return first
    extra = np.asarray(table[column]).astype(str)  # type: ignore[index]
    return np.concatenate([first, extra])
