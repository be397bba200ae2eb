"""Interactions from a generic table: a CSV, TSV or Parquet file with one row per event.

You name the user and item columns (and optionally the time and rating columns); the other
columns become context columns of the interactions, with the types pyarrow infers for them
(numbers, times, else strings). CSV/TSV files need a header line and use double quotes for
fields holding the separator; errors name the file line (the header is line 1, so data row
``i``, 0-based, is line ``i + 2``). Parquet errors name the row (1-based).

Times may be epoch seconds or ISO 8601 strings (``2015-03-01T12:00:00Z``; without an offset
they are taken as UTC); both become float epoch seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.schema import INTERACTION_COLUMNS, Dataset
from recfunnel.data.loaders._common import (
    parse_floats,
    parse_header,
    read_rows,
    read_text,
    require_nonempty,
    split_header,
    strings,
)

_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_PARQUET = (".parquet", ".pq")


def load_table(
    path: str | Path,
    *,
    user_col: str,
    item_col: str,
    time_col: str | None = None,
    rating_col: str | None = None,
    event_type: str = "interaction",
    sep: str | None = None,
    encoding: str = "utf-8",
) -> Dataset:
    """Interactions from ``path`` (``.csv``, ``.tsv`` or ``.parquet``; ``sep`` for other text).

    ``value`` is the rating column, or 1.0 for every row without one; ``timestamp`` the time
    column, or NaN. Every row gets ``event_type``. A missing rating or id is an error; a missing
    time is NaN.

    >>> load_table("/nonexistent/events.csv", user_col="user", item_col="item")
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DataError: /nonexistent/events.csv: file not found
    """
    path = Path(path)
    mapped = {
        "user_col": user_col,
        "item_col": item_col,
        "time_col": time_col,
        "rating_col": rating_col,
    }
    given = [c for c in mapped.values() if c is not None]
    if len(set(given)) < len(given):
        raise ConfigError(f"user_col, item_col, time_col and rating_col must differ: {mapped}")
    if path.suffix.lower() in _PARQUET and sep is None:
        return _load_parquet(path, mapped, event_type)
    sep = sep if sep is not None else _SEPARATORS.get(path.suffix.lower())
    if sep is None:
        raise DataError(
            f"cannot tell the format from the suffix {path.suffix!r}: use .csv, .tsv or "
            ".parquet, or pass sep=",
            source=str(path),
        )
    return _load_text(path, mapped, event_type, sep, encoding)


def _check_columns(
    names: list[str], mapped: dict[str, str | None], source: str, line: int | None
) -> list[str]:
    for arg, col in mapped.items():
        if col is not None and col not in names:
            raise DataError(
                f"no column {col!r} (given as {arg}); columns present: {names}",
                source=source,
                line=line,
                field=col,
            )
    others = [c for c in names if c not in mapped.values()]
    for col in others:
        if col in INTERACTION_COLUMNS:
            raise DataError(
                f"column {col!r} has the name of a canonical interactions column but is not "
                "mapped; pass it as user_col/item_col/time_col/rating_col or rename it",
                source=source,
                line=line,
                field=col,
            )
    return others


def _load_text(
    path: Path, mapped: dict[str, str | None], event_type: str, sep: str, encoding: str
) -> Dataset:
    source = str(path)
    head, body = split_header(read_text(path, encoding=encoding))
    names = parse_header(head, sep=sep, quoted=True, source=source)
    others = _check_columns(names, mapped, source, 1)
    table = read_rows(
        body, sep=sep, names=names, source=source, first_line=2, quoted=True, infer=others
    )
    if table.num_rows == 0:
        raise DataError("no data rows (only a header)", source=source)
    user_col, item_col = mapped["user_col"], mapped["item_col"]
    assert user_col is not None and item_col is not None
    for col in (user_col, item_col):
        require_nonempty(table[col], field=col, source=source, first_line=2)
    values = times = None
    if (rating_col := mapped["rating_col"]) is not None:
        values = parse_floats(
            table[rating_col], field=rating_col, source=source, first_line=2, allow_empty=False
        )
    if (time_col := mapped["time_col"]) is not None:
        times = parse_times(table[time_col], field=time_col, source=source, first_line=2)
    return _dataset(
        path,
        strings(table[user_col]),
        strings(table[item_col]),
        values,
        times,
        event_type,
        table.select(others),
    )


def _load_parquet(path: Path, mapped: dict[str, str | None], event_type: str) -> Dataset:
    source = str(path)
    if not path.is_file():
        raise DataError("file not found" if not path.exists() else "expected a file", source=source)
    try:
        names = list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet file: {exc}", source=source) from exc
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"duplicate column name {dup[0]!r}", source=source, field=dup[0])
    others = _check_columns(names, mapped, source, None)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read Parquet file: {exc}", source=source) from exc
    if table.num_rows == 0:
        raise DataError("no rows", source=source)
    user_col, item_col = mapped["user_col"], mapped["item_col"]
    assert user_col is not None and item_col is not None
    try:
        users = _parquet_ids(table[user_col], user_col, source)
        items = _parquet_ids(table[item_col], item_col, source)
        values = times = None
        if (rating_col := mapped["rating_col"]) is not None:
            col = table[rating_col]
            if _is_text(col.type):
                values = parse_floats(
                    col.cast(pa.string()),
                    field=rating_col,
                    source=source,
                    first_line=1,
                    allow_empty=False,
                )
            else:
                values = _numeric(col, rating_col, source, allow_null=False)
        if (time_col := mapped["time_col"]) is not None:
            col = table[time_col]
            if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
                times = _epoch_seconds(col.cast(pa.timestamp("us", tz="UTC")))
            elif _is_text(col.type):
                times = parse_times(
                    col.cast(pa.string()), field=time_col, source=source, first_line=1
                )
            else:
                times = _numeric(col, time_col, source, allow_null=True)
    except DataError as exc:
        if exc.line is None:
            raise
        # The helpers count lines; a Parquet file has rows.
        raise DataError(
            f"row {exc.line}: {exc.message}", source=exc.source, field=exc.field
        ) from None
    return _dataset(path, users, items, values, times, event_type, table.select(others))


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t))


def _parquet_ids(col: pa.ChunkedArray, field: str, source: str) -> pd.Series:
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError("missing id", source=source, line=row + 1, field=field)
    if pa.types.is_floating(col.type):
        values = col.to_numpy()
        if np.all(values == np.trunc(values)):  # ids stored as floats: 7.0 means "7"
            col = pa.chunked_array([pa.array(values.astype(np.int64))])
    text = col.cast(pa.string()) if not pa.types.is_string(col.type) else col
    require_nonempty(text, field=field, source=source, first_line=1)
    return strings(text)


def _numeric(
    col: pa.ChunkedArray, field: str, source: str, *, allow_null: bool
) -> npt.NDArray[np.float64]:
    try:
        values = np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(
            f"column of type {col.type} is not numeric", source=source, field=field
        ) from exc
    bad = ~np.isfinite(values)
    if allow_null:
        bad &= ~col.is_null().to_numpy(zero_copy_only=False)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = "missing value" if np.isnan(values[row]) else "not a finite number"
        raise DataError(what, source=source, line=row + 1, field=field)
    return values


def _epoch_seconds(col: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    """Seconds of a timestamp column (any unit); null is NaN."""
    micros = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return np.asarray(micros.to_numpy(zero_copy_only=False), dtype=np.float64) / 1e6


def parse_times(
    values: pa.ChunkedArray, *, field: str, source: str, first_line: int
) -> npt.NDArray[np.float64]:
    """Epoch seconds from strings holding numbers or ISO 8601 times; empty is NaN.

    >>> parse_times(pa.chunked_array([["0", "1970-01-02", "1970-01-01T01:00:00+01:00", ""]]),
    ...             field="t", source="x.csv", first_line=2).tolist()
    [0.0, 86400.0, 0.0, nan]
    >>> parse_times(pa.chunked_array([["yesterday"]]), field="t", source="x.csv", first_line=2)
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DataError: x.csv, line 2, field t: not epoch seconds nor an ISO 8601 time: 'yesterday'
    """  # noqa: E501
    empty = pc.equal(pc.utf8_length(values), 0)
    cleaned = pc.if_else(empty, pa.scalar(None, pa.string()), values)
    try:
        out = np.asarray(
            pc.cast(cleaned, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out = _iso_seconds(cleaned)
    is_empty = empty.to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(out) & ~is_empty
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"not epoch seconds nor an ISO 8601 time: {values[row].as_py()!r}",
            source=source,
            line=first_line + row,
            field=field,
        )
    return out


def _iso_seconds(values: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    """Epoch seconds of ISO 8601 (or numeric) strings; NaN where neither parses."""
    # Arrow parses a column of one style fast: all with an offset ("Z", "+01:00"), or none.
    for unit in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            return _epoch_seconds(pc.cast(values, unit))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    # Mixed styles or numbers among times: value by value through pandas.
    text = strings(values).astype(object)
    out = np.array(pd.to_numeric(text, errors="coerce"), dtype=np.float64)  # writable
    need = np.isnan(out) & text.notna().to_numpy(bool)
    if need.any():
        stamps = pd.to_datetime(text[need], format="ISO8601", utc=True, errors="coerce")
        seconds = (stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        out[need] = seconds.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _dataset(
    path: Path,
    users: pd.Series,
    items: pd.Series,
    values: npt.NDArray[np.float64] | None,
    times: npt.NDArray[np.float64] | None,
    event_type: str,
    context: pa.Table,
) -> Dataset:
    n = len(users)
    frame = pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "event_type": np.full(n, event_type, dtype=object),
            "value": np.ones(n) if values is None else values,
            "timestamp": np.full(n, np.nan) if times is None else times,
        }
    )
    for name in context.column_names:
        col = context[name]
        frame[name] = strings(col) if _is_text(col.type) else col.to_pandas()
    return Dataset(interactions=frame, name=path.stem)
