"""What every feature step shares: the output block and the step contract.

A step is fitted on a frame of candidate rows (one row per (request, candidate)) and, where it
needs history, on the event log; ``transform`` then turns any frame of the same columns into a
:class:`FeatureBlock`. Hyper-parameters are the ``__init__`` keyword arguments, stored unchanged
(scikit-learn conventions); learned state ends in ``_`` and is persisted as arrays only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

from recfunnel.core.errors import ConfigError, DataError, NotFittedError
from recfunnel.core.params import Params

if TYPE_CHECKING:
    from recfunnel.core.ranker import RankerFeatures


class Columns:
    """Candidate rows as named numpy columns of equal length: a read-only stand-in for a
    DataFrame on the serving path.

    Scoring a request's few hundred candidates, building a DataFrame and a Series per column
    read costs more than computing the features; steps that declare ``reads_columns = True``
    read these arrays directly (through :func:`column` / :func:`numeric_column`), and a
    :class:`~recfunnel.features.pipeline.FeaturePipeline` hands the others ``to_frame()``.
    ``len()`` is the number of rows, as for a DataFrame.

    >>> c = Columns({"item_id": ["a", "b"], "score": [0.5, 1.5]})
    >>> len(c), c.columns, c["score"].tolist(), "x" in c
    (2, ('item_id', 'score'), [0.5, 1.5], False)
    >>> c.to_frame().shape
    (2, 2)
    """

    __slots__ = ("_data", "_n")

    def __init__(self, data: dict[str, Any]) -> None:
        arrays = {str(k): np.asarray(v) for k, v in data.items()}
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) > 1:
            raise ConfigError(f"Columns of unequal lengths {sorted(lengths)}")
        self._data = arrays
        self._n = lengths.pop() if lengths else 0

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self._data[name]

    def __contains__(self, name: object) -> bool:
        return name in self._data

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self._data)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self._data)

    def __repr__(self) -> str:
        return f"Columns({self._n} rows: {', '.join(self._data)})"


#: What feature steps read: a DataFrame, or :class:`Columns` when the step reads columns.
Frame = pd.DataFrame | Columns


def column(frame: Frame, name: str) -> npt.NDArray[Any]:
    """Column ``name`` of ``frame`` as a numpy array (no copy from :class:`Columns`)."""
    if isinstance(frame, Columns):
        return frame[name]
    return frame[name].to_numpy()


def numeric_column(frame: Frame, name: str) -> npt.NDArray[np.float64]:
    """Column ``name`` as float64; values that are not numbers become NaN (as
    ``pd.to_numeric(errors="coerce")``)."""
    if isinstance(frame, Columns):
        arr = frame[name]
        if arr.dtype.kind in "fiub":
            return arr.astype(np.float64)
        series: Any = pd.Series(arr)
    else:
        series = frame[name]
    return pd.to_numeric(series, errors="coerce").to_numpy(np.float64, na_value=np.nan)


@dataclass(frozen=True)
class FeatureBlock:
    """Features of ``B`` rows: ``dense`` float32 ``B x Fd``, ``sparse`` int64 ``B x Fs``.

    ``sparse`` holds bucket ids in ``0 .. n_buckets[j] - 1`` for column ``j``. The fields are
    those of :class:`recfunnel.core.ranker.RankerFeatures` (see :meth:`to_ranker_features`).

    >>> a = FeatureBlock.empty(2)
    >>> b = FeatureBlock(np.ones((2, 1), np.float32), np.zeros((2, 1), np.int64), ("x",),
    ...                  ("c",), (4,))
    >>> c = FeatureBlock.concat([a, b.prefixed("s")])
    >>> c.dense.shape, c.sparse.shape, c.dense_names, c.sparse_names, c.n_buckets
    ((2, 1), (2, 1), ('s.x',), ('s.c',), (4,))
    """

    dense: npt.NDArray[np.float32]
    sparse: npt.NDArray[np.int64]
    dense_names: tuple[str, ...] = ()
    sparse_names: tuple[str, ...] = ()
    n_buckets: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.dense.shape[1] != len(self.dense_names):
            raise ConfigError(f"{self.dense.shape[1]} dense columns, {len(self.dense_names)} names")
        if not (self.sparse.shape[1] == len(self.sparse_names) == len(self.n_buckets)):
            raise ConfigError(
                f"{self.sparse.shape[1]} sparse columns, {len(self.sparse_names)} names, "
                f"{len(self.n_buckets)} bucket counts"
            )

    @classmethod
    def empty(cls, n_rows: int) -> FeatureBlock:
        return cls(np.zeros((n_rows, 0), np.float32), np.zeros((n_rows, 0), np.int64))

    def __len__(self) -> int:
        return int(self.dense.shape[0])

    def prefixed(self, prefix: str) -> FeatureBlock:
        """The same block with ``prefix.`` in front of every name."""
        return FeatureBlock(
            self.dense,
            self.sparse,
            tuple(f"{prefix}.{n}" for n in self.dense_names),
            tuple(f"{prefix}.{n}" for n in self.sparse_names),
            self.n_buckets,
        )

    @classmethod
    def concat(cls, blocks: Sequence[FeatureBlock]) -> FeatureBlock:
        """Blocks of the same rows side by side, in order."""
        if not blocks:
            raise ConfigError("nothing to concatenate")
        return cls(
            np.concatenate([b.dense for b in blocks], axis=1).astype(np.float32, copy=False),
            np.concatenate([b.sparse for b in blocks], axis=1).astype(np.int64, copy=False),
            tuple(n for b in blocks for n in b.dense_names),
            tuple(n for b in blocks for n in b.sparse_names),
            tuple(int(k) for b in blocks for k in b.n_buckets),
        )

    def to_ranker_features(self) -> RankerFeatures:
        """This block as the ranker contract's input type."""
        from recfunnel.core.ranker import RankerFeatures

        return RankerFeatures(
            self.dense, self.sparse, self.dense_names, self.sparse_names, self.n_buckets
        )


def fitted_index(step: object, attribute: str) -> pd.Index:
    """``getattr(step, attribute)`` (a fitted array of keys) as a hashed ``pd.Index``, built
    once per array and kept on the step (not saved): transforms of a few hundred rows, as at
    serving time, would otherwise spend most of their time rebuilding it."""
    keys = getattr(step, attribute)
    slot = f"_{attribute}index_cache"
    cached = step.__dict__.get(slot)
    if cached is None or cached[0] is not keys:
        cached = step.__dict__[slot] = (keys, pd.Index(keys))
    return cached[1]


def lookup_codes(step: object, attribute: str, values: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Position of each of ``values`` (as strings) in the fitted key array
    ``getattr(step, attribute)``, ``-1`` where absent, as ``pd.Index.get_indexer`` gives.

    A few hundred rows (one request's candidates) are looked up in a dict built once per array
    (the pandas index costs ~0.1 ms per call in conversions alone); larger batches go through
    :func:`fitted_index`.
    """
    if len(values) > _DICT_LOOKUP_ROWS:
        return fitted_index(step, attribute).get_indexer(np.asarray(values).astype(str))
    keys = getattr(step, attribute)
    slot = f"_{attribute}dict_cache"
    cached = step.__dict__.get(slot)
    if cached is None or cached[0] is not keys:
        cached = step.__dict__[slot] = (keys, {str(k): i for i, k in enumerate(keys.tolist())})
    get = cached[1].get
    return np.fromiter(
        (get(v if type(v) is str else str(v), -1) for v in np.asarray(values).tolist()),
        dtype=np.intp,
        count=len(values),
    )


#: Up to this many rows, :func:`lookup_codes` uses a dict.
_DICT_LOOKUP_ROWS = 4096


class FeatureStep(Params, ABC):
    """One named part of a :class:`~recfunnel.features.pipeline.FeaturePipeline`.

    Implementations provide ``fit``, ``transform`` and their learned arrays (``_state`` /
    ``_set_state``); parameters and the fitted check live here.
    """

    #: Registry name, used in saved pipelines (``"hashed_categorical"``, ...).
    name: ClassVar[str]
    #: Whether ``fit`` needs the event log (``events=``), not only the candidate rows.
    needs_events: ClassVar[bool] = False
    #: Whether ``transform`` reads :class:`Columns` as well as DataFrames (through
    #: :func:`column` / :func:`numeric_column`, ``len`` and ``.columns`` only).
    reads_columns: ClassVar[bool] = False

    @abstractmethod
    def fit(self, frame: pd.DataFrame, events: pd.DataFrame | None = None) -> Self:
        """Learn from candidate rows (and the event log, for steps that need history)."""

    @abstractmethod
    def transform(self, frame: pd.DataFrame) -> FeatureBlock:
        """Features of each row of ``frame``."""

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        """Learned arrays to persist (default: none)."""
        return {}

    def _set_state(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        """Restore what :meth:`_state` returned (default: nothing to restore)."""

    def fit_transform(
        self, frame: pd.DataFrame, events: pd.DataFrame | None = None
    ) -> FeatureBlock:
        return self.fit(frame, events).transform(frame)

    def _check_fitted(self, attribute: str) -> None:
        if not hasattr(self, attribute):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")


def require_columns(frame: Frame, columns: Sequence[str], who: str) -> None:
    """Raise a located :class:`DataError` when ``frame`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"missing column(s) {missing}; present: {list(frame.columns)}", source=f"{who} input"
        )
