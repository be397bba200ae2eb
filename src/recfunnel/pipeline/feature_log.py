"""Feature logging: what the funnel saw when it ranked, written to date-partitioned Parquet.

"Log and wait": at serving time the funnel logs, per request and stage, the features of the
candidates it scored; once outcomes (clicks, watches) arrive they are joined on
``(request_id, item_id)`` and a ranker is trained on exactly the features serving computed, so
training and serving share one feature code path.

**What is logged.** Every shown candidate (``shown=True``, ``logging_probability = 1``) and a
sample of the others (what earlier stages dropped, ``shown=False``): each is kept with
probability ``sample_rate`` and logged with ``logging_probability = sample_rate``, so a
training set that weights rows by ``1 / logging_probability`` estimates the full population.
The draw is a seeded hash, not a random stream: row ``(request_id, stage, item_id)`` is kept iff
``stable_hash64(request_id + "\\x1f" + stage + "\\x1f" + item_id, seed) / 2**64 < sample_rate``,
the same in every process and whatever the call order.

**Layout.** ``root/date=YYYY-MM-DD/part-<uuid>.parquet``, the date being the UTC date of the
request ``timestamp`` (epoch seconds). Columns: ``request_id``, ``user_id``, ``item_id``,
``stage``, ``position`` (0-based rank within that stage's list), ``score``, ``shown``,
``logging_probability``, ``model_versions`` (a JSON object as text), ``timestamp``, then one
float32 column ``d:<name>`` per dense feature and one int64 column ``s:<name>`` per sparse
feature of the :class:`~recfunnel.features.FeatureBlock`; the feature names, their order and
the sparse bucket counts are in the file's schema metadata. Feature columns are written without
dictionary encoding, so :func:`read_feature_log` returns them bit for bit.

**Atomic files.** A file is written under a hidden temporary name in its partition
(``.part-<uuid>.parquet.tmp``), flushed to disk and renamed into place: a reader (which only
lists ``part-*.parquet``) sees a whole file or none. A failed write removes its temporary
file and keeps the rows buffered, so the next :meth:`FeatureLogger.flush` writes them once.
:func:`delete_user` rewrites affected files the same way, replacing each under its own name.

>>> import tempfile
>>> from recfunnel.features import FeatureBlock
>>> block = FeatureBlock(np.array([[0.5], [1.5], [2.5]], np.float32),
...                      np.array([[3], [1], [0]], np.int64), ("price",), ("genre",), (8,))
>>> root = tempfile.mkdtemp()
>>> with FeatureLogger(root, sample_rate=1.0, seed=0) as log:
...     log.log(request_id="r1", user_id="u1", stage="rank", item_ids=["a", "b", "c"],
...             features=block, shown=[True, True, False], timestamp=86_400.0)
3
>>> got, meta = read_feature_log(root)
>>> bool((got.dense == block.dense).all()), got.sparse_names, got.n_buckets
(True, ('genre',), (8,))
>>> print(meta[["item_id", "shown", "logging_probability", "date"]].to_string(index=False))
item_id  shown  logging_probability       date
      a   True                  1.0 1970-01-02
      b   True                  1.0 1970-01-02
      c  False                  1.0 1970-01-02
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.features.base import FeatureBlock
from recfunnel.features.hashing import stable_hash64

#: Schema metadata key holding the feature layout of a file.
META_KEY = b"recfunnel.feature_log"
FORMAT_VERSION = 1
#: The non-feature columns, in file order.
META_COLUMNS = (
    "request_id",
    "user_id",
    "item_id",
    "stage",
    "position",
    "score",
    "shown",
    "logging_probability",
    "model_versions",
    "timestamp",
)
_STRING_COLUMNS = ["request_id", "user_id", "item_id", "stage", "model_versions"]
_SEP = "\x1f"

#: (dense names, sparse names, bucket counts): the feature layout; one file holds one layout.
Layout = tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]


def utc_date(timestamp: float) -> str:
    """The UTC date (``YYYY-MM-DD``) of epoch seconds ``timestamp``.

    >>> utc_date(0.0), utc_date(86_399.9)
    ('1970-01-01', '1970-01-01')
    """
    return dt.datetime.fromtimestamp(float(timestamp), tz=dt.UTC).date().isoformat()


def sample_keep(
    request_id: str, stage: str, item_ids: Sequence[str], rate: float, seed: int | str
) -> npt.NDArray[np.bool_]:
    """Which rows the seeded hash keeps at ``rate`` (see the module docstring)."""
    if rate >= 1.0:
        return np.ones(len(item_ids), bool)
    if rate <= 0.0 or not len(item_ids):
        return np.zeros(len(item_ids), bool)
    keys = [f"{request_id}{_SEP}{stage}{_SEP}{i}" for i in item_ids]
    u = stable_hash64(keys, seed=seed).astype(np.float64) / 2.0**64
    keep: npt.NDArray[np.bool_] = u < rate
    return keep


class FeatureLogger:
    """Buffer candidate features per request and write them as date-partitioned Parquet.

    ``sample_rate``: probability of keeping a candidate that was not shown; ``seed``: the seed
    of that draw; ``max_buffered_rows``: flush automatically past this many buffered rows.
    Use as a context manager (flushes on exit) or call :meth:`flush`. Thread-safe.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        sample_rate: float = 0.01,
        seed: int | str = 0,
        max_buffered_rows: int = 100_000,
    ) -> None:
        self.root = root
        self.sample_rate = sample_rate
        self.seed = seed
        self.max_buffered_rows = max_buffered_rows
        self._lock = threading.RLock()
        # (date, layout) -> list of column chunks, in logging order.
        self._buffer: dict[tuple[str, Layout], list[dict[str, Any]]] = {}
        self._n_buffered = 0
        # Users deleted through this logger: rows for them logged later (a request that was
        # already running when the deletion came) are dropped, not written.
        self._deleted: set[str] = set()

    def _check_params(self) -> None:
        if not 0.0 <= float(self.sample_rate) <= 1.0:
            raise ConfigError(f"sample_rate must be in [0, 1], got {self.sample_rate}")
        if int(self.max_buffered_rows) < 1:
            raise ConfigError(f"max_buffered_rows must be >= 1, got {self.max_buffered_rows}")

    @property
    def n_buffered(self) -> int:
        """Rows logged but not yet written."""
        return self._n_buffered

    def log(
        self,
        *,
        request_id: str,
        user_id: str | None,
        stage: str,
        item_ids: Sequence[str],
        features: FeatureBlock | None,
        timestamp: float,
        shown: Sequence[bool] | npt.ArrayLike | None = None,
        scores: npt.ArrayLike | None = None,
        positions: npt.ArrayLike | None = None,
        model_versions: Mapping[str, str] | None = None,
    ) -> int:
        """Log one stage of one request: one row per candidate; returns the rows kept.

        ``features`` has one row per item (``None``: no feature columns). ``shown`` marks the
        items of the served slate (default: none shown, so every row is sampled);
        ``positions`` default to ``0 .. n-1`` (the order given); ``scores`` to ``NaN``.
        """
        self._check_params()
        ids = [str(i) for i in item_ids]
        n = len(ids)
        block = FeatureBlock.empty(n) if features is None else features
        if len(block) != n:
            raise ConfigError(f"features have {len(block)} rows for {n} item ids")
        shown_arr = np.zeros(n, bool) if shown is None else np.asarray(shown, dtype=bool)
        score_arr = np.full(n, np.nan) if scores is None else np.asarray(scores, np.float64)
        pos_arr = np.arange(n, dtype=np.int64) if positions is None else np.asarray(positions)
        for label, arr in (("shown", shown_arr), ("scores", score_arr), ("positions", pos_arr)):
            if arr.shape != (n,):
                raise ConfigError(f"{label} has shape {arr.shape}; expected ({n},)")
        rate = float(self.sample_rate)
        keep = shown_arr | sample_keep(str(request_id), str(stage), ids, rate, self.seed)
        rows = np.flatnonzero(keep)
        if not len(rows):
            return 0
        layout: Layout = (
            tuple(block.dense_names),
            tuple(block.sparse_names),
            tuple(int(b) for b in block.n_buckets),
        )
        k = len(rows)
        versions = json.dumps(dict(model_versions or {}), sort_keys=True)
        chunk = {
            "request_id": [str(request_id)] * k,
            "user_id": [None if user_id is None else str(user_id)] * k,
            "item_id": [ids[i] for i in rows],
            "stage": [str(stage)] * k,
            "position": pos_arr[rows].astype(np.int64),
            "score": score_arr[rows],
            "shown": shown_arr[rows],
            "logging_probability": np.where(shown_arr[rows], 1.0, rate),
            "model_versions": [versions] * k,
            "timestamp": np.full(k, float(timestamp)),
            "dense": block.dense[rows],
            "sparse": block.sparse[rows],
        }
        with self._lock:
            if user_id is not None and str(user_id) in self._deleted:
                return 0
            self._buffer.setdefault((utc_date(timestamp), layout), []).append(chunk)
            self._n_buffered += k
            if self._n_buffered >= int(self.max_buffered_rows):
                self.flush()
        return k

    def flush(self) -> list[Path]:
        """Write every buffered row; returns the files written (one per date and layout)."""
        written = []
        with self._lock:
            for key in sorted(self._buffer):
                date, layout = key
                chunks = self._buffer[key]
                path = _write_atomic(Path(self.root), date, _to_table(chunks, layout))
                written.append(path)
                # Only now: a failed write leaves these rows buffered for the next flush.
                del self._buffer[key]
                self._n_buffered -= sum(len(c["item_id"]) for c in chunks)
        return written

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.flush()

    def delete_user(self, user_id: str) -> int:
        """Remove ``user_id``'s rows from the buffer and from every file under ``root``.

        Returns the number of rows removed. From then on this logger drops rows logged for the
        user (e.g. by a request that was running when the deletion came). Rows another process
        still buffers are not reached: run this where no logger of that user is live, or again
        after they flush.
        """
        removed = 0
        with self._lock:
            self._deleted.add(str(user_id))
            for key, chunks in list(self._buffer.items()):
                kept = []
                for c in chunks:
                    if c["user_id"] and c["user_id"][0] == str(user_id):
                        removed += len(c["item_id"])
                        self._n_buffered -= len(c["item_id"])
                    else:
                        kept.append(c)
                if kept:
                    self._buffer[key] = kept
                else:
                    del self._buffer[key]
            return removed + delete_user(self.root, user_id)


def _to_table(chunks: list[dict[str, Any]], layout: Layout) -> pa.Table:
    dense_names, sparse_names, n_buckets = layout

    def strings(col: str) -> list[Any]:
        return [v for c in chunks for v in c[col]]

    columns: dict[str, pa.Array] = {
        "request_id": pa.array(strings("request_id"), pa.string()),
        "user_id": pa.array(strings("user_id"), pa.string()),
        "item_id": pa.array(strings("item_id"), pa.string()),
        "stage": pa.array(strings("stage"), pa.string()),
        "position": pa.array(np.concatenate([c["position"] for c in chunks]), pa.int64()),
        "score": pa.array(np.concatenate([c["score"] for c in chunks]), pa.float64()),
        "shown": pa.array(np.concatenate([c["shown"] for c in chunks]), pa.bool_()),
        "logging_probability": pa.array(
            np.concatenate([c["logging_probability"] for c in chunks]), pa.float64()
        ),
        "model_versions": pa.array(strings("model_versions"), pa.string()),
        "timestamp": pa.array(np.concatenate([c["timestamp"] for c in chunks]), pa.float64()),
    }
    dense = np.concatenate([c["dense"] for c in chunks]).astype(np.float32, copy=False)
    sparse = np.concatenate([c["sparse"] for c in chunks]).astype(np.int64, copy=False)
    for j, name in enumerate(dense_names):
        columns[f"d:{name}"] = pa.array(np.ascontiguousarray(dense[:, j]), pa.float32())
    for j, name in enumerate(sparse_names):
        columns[f"s:{name}"] = pa.array(np.ascontiguousarray(sparse[:, j]), pa.int64())
    meta = {
        "format_version": FORMAT_VERSION,
        "dense_names": list(dense_names),
        "sparse_names": list(sparse_names),
        "n_buckets": list(n_buckets),
        "written_at_ns": time.time_ns(),
    }
    table = pa.table(columns)
    return table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})


def _write_atomic(root: Path, date: str, table: pa.Table, name: str | None = None) -> Path:
    """Write ``table`` to ``root/date=<date>/<name>`` through a temporary file and a rename."""
    folder = root / f"date={date}"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / (name or f"part-{uuid.uuid4().hex}.parquet")
    tmp = folder / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        writer = pq.ParquetWriter(
            tmp, table.schema, compression="zstd", use_dictionary=_STRING_COLUMNS
        )
        try:
            writer.write_table(table)
        finally:
            writer.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _files(root: Path, start: str | None = None, end: str | None = None) -> list[Path]:
    """Visible log files with a partition date in ``[start, end]``, partition by partition."""
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.glob("date=*")):
        date = folder.name.removeprefix("date=")
        if (start is not None and date < start) or (end is not None and date > end):
            continue
        out.extend(sorted(folder.glob("part-*.parquet")))
    return out


def _file_meta(path: Path) -> dict[str, Any]:
    raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    if raw is None:
        raise DataError("not a recfunnel feature log file (no layout metadata)", source=str(path))
    meta: dict[str, Any] = json.loads(raw)
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"feature log format version {meta.get('format_version')} is not supported "
            f"(this recfunnel reads version {FORMAT_VERSION})",
            source=str(path),
        )
    return meta


def _iso(day: str | dt.date | None) -> str | None:
    if day is None:
        return None
    if isinstance(day, dt.date):
        return day.isoformat()
    try:
        return dt.date.fromisoformat(str(day)).isoformat()
    except ValueError:
        raise ConfigError(f"dates are YYYY-MM-DD, got {day!r}") from None


def read_feature_log(
    root: str | os.PathLike[str],
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    *,
    stage: str | None = None,
) -> tuple[FeatureBlock, pd.DataFrame]:
    """The logged rows with request dates in ``[start, end]`` (inclusive; UTC dates).

    Returns the features as the :class:`~recfunnel.features.FeatureBlock` that was logged (same
    names, bucket counts and bits) and a frame of the other columns plus ``date``, row for row.
    Rows come partition by partition (dates ascending), files in the order they were written,
    rows within a file in logging order. ``stage`` keeps one stage's rows. All selected rows
    must share one feature layout (a ``DataError`` names two files that differ; select a
    ``stage`` or a date range).
    """
    paths = _files(Path(root), _iso(start), _iso(end))
    entries = [(p, _file_meta(p)) for p in paths]
    # Order files by write time within a partition (uuid names carry no order).
    entries.sort(key=lambda e: (e[0].parent.name, e[1].get("written_at_ns", 0), e[0].name))
    layout: Layout | None = None
    first: Path | None = None
    frames, dense, sparse = [], [], []
    for path, meta in entries:
        table = pq.read_table(path)
        if stage is not None:
            table = table.filter(pc.equal(table["stage"], stage))
        if table.num_rows == 0:
            continue
        this: Layout = (
            tuple(meta["dense_names"]),
            tuple(meta["sparse_names"]),
            tuple(int(b) for b in meta["n_buckets"]),
        )
        if layout is None:
            layout, first = this, path
        elif this != layout:
            raise DataError(
                f"feature layout differs from {first} ({list(layout[0])} dense, "
                f"{list(layout[1])} sparse vs {list(this[0])}, {list(this[1])}); "
                "read one stage or date range at a time",
                source=str(path),
            )
        n = table.num_rows
        dense.append(
            np.column_stack([_column(table, f"d:{c}", np.float32) for c in this[0]])
            if this[0]
            else np.zeros((n, 0), np.float32)
        )
        sparse.append(
            np.column_stack([_column(table, f"s:{c}", np.int64) for c in this[1]])
            if this[1]
            else np.zeros((n, 0), np.int64)
        )
        frame = table.select(list(META_COLUMNS)).to_pandas()
        frame["date"] = path.parent.name.removeprefix("date=")
        frames.append(frame)
    if layout is None:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in (*META_COLUMNS, "date")})
        return FeatureBlock.empty(0), empty
    block = FeatureBlock(
        np.ascontiguousarray(np.concatenate(dense), dtype=np.float32),
        np.ascontiguousarray(np.concatenate(sparse), dtype=np.int64),
        *layout,
    )
    return block, pd.concat(frames, ignore_index=True)


def _column(table: pa.Table, name: str, dtype: type[np.generic]) -> npt.NDArray[Any]:
    col = table[name]
    if col.null_count:
        raise DataError(f"column {name!r} has missing values", field=name)
    return np.asarray(col.to_numpy(), dtype=dtype)


def delete_user(root: str | os.PathLike[str], user_id: str) -> int:
    """Remove every logged row of ``user_id`` under ``root``; returns how many were removed.

    Each affected file is rewritten without those rows (or deleted when none remain) through a
    temporary file renamed over it, so readers see the old file or the new one, never a mix.
    """
    removed = 0
    for path in _files(Path(root)):
        table = pq.read_table(path)
        keep = pc.fill_null(pc.not_equal(table["user_id"], str(user_id)), True)
        n_keep = pc.sum(keep).as_py() or 0
        if n_keep == table.num_rows:
            continue
        removed += table.num_rows - n_keep
        if n_keep == 0:
            path.unlink()
        else:
            date = path.parent.name.removeprefix("date=")
            _write_atomic(Path(root), date, table.filter(keep), name=path.name)
    for folder in Path(root).glob("date=*"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed
