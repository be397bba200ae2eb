"""RecBole atomic files: read them into a Dataset and write a Dataset as them.

A dataset ``NAME`` is a directory holding ``NAME.inter`` and optionally ``NAME.user``,
``NAME.item`` and ``NAME.net`` (social edges). Each is UTF-8, tab separated, with a header of
``field:type`` where type is ``token`` (a string), ``token_seq`` (space-separated strings),
``float`` or ``float_seq`` (space-separated numbers), e.g.::

    user_id:token	item_id:token	rating:float	timestamp:float

Mapping to :class:`~recfunnel.core.schema.Dataset`: ``user_id``/``item_id`` are the ids;
``rating`` (or ``value``) becomes ``value`` (1.0 when absent); ``timestamp`` stays (NaN when
absent); an ``event_type`` token field is kept, otherwise it is ``"rating"`` when there is a
rating field and ``"interaction"`` when not. Other ``.inter`` fields are context columns.
``token_seq`` and ``float_seq`` values are kept as one string joined by ``"|"`` (the list
convention of the Dataset tables, e.g. ``genres``); an empty ``float`` is NaN.

:func:`save_atomic` writes the inverse, so ``load_atomic(save_atomic(ds, d))`` gives back ``ds``
(numeric columns come back as float64 and strings as ``str``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recfunnel.core.errors import DataError
from recfunnel.core.schema import EDGE_COLUMNS, INTERACTION_COLUMNS, ITEM_COLUMNS, Dataset
from recfunnel.data.loaders._common import (
    constant,
    parse_floats,
    read_rows,
    read_text,
    require_unique,
    split_header,
    strings,
)

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
SUFFIXES = (".inter", ".user", ".item", ".net")
#: Always written as tokens, even when a caller built them as numbers.
_TOKEN_COLUMNS = frozenset({"user_id", "item_id", "event_type", "src_user_id", "dst_user_id"})


# --------------------------------------------------------------------------------------------
# Reading


def read_atomic_file(
    path: str | Path, *, encoding: str = "utf-8"
) -> tuple[pd.DataFrame, dict[str, str]]:
    """One atomic file as ``(frame, {field: type})``; columns are named without the type.

    ``token`` columns hold ``str``, ``float`` columns float64 (empty is NaN), ``token_seq`` and
    ``float_seq`` columns the items joined by ``"|"``. Data row ``i`` (0-based) is file line
    ``i + 2``, which is what errors name.
    """
    path = Path(path)
    source = str(path)
    head, body = split_header(read_text(path, encoding=encoding))
    types = _parse_header(head, source)
    names = list(types)
    table = read_rows(body, sep="\t", names=names, source=source, first_line=2)
    columns: dict[str, pd.Series | npt.NDArray[np.float64]] = {}
    for name, ftype in types.items():
        col = table[name]
        if ftype == "token":
            columns[name] = strings(col)
        elif ftype == "token_seq":
            columns[name] = strings(_join_seq(col))
        elif ftype == "float":
            columns[name] = parse_floats(
                col, field=name, source=source, first_line=2, allow_empty=True
            )
        else:
            columns[name] = _float_seq(col, field=name, source=source)
    frame = pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))
    return frame, types


def _parse_header(line: str, source: str) -> dict[str, str]:
    types: dict[str, str] = {}
    for raw in line.split("\t"):
        raw = raw.strip()
        name, colon, ftype = raw.rpartition(":")
        if not colon or not name:
            raise DataError(
                f"header field {raw!r} is not 'name:type' (type one of {', '.join(FIELD_TYPES)})",
                source=source,
                line=1,
                field=raw or None,
            )
        if ftype not in FIELD_TYPES:
            raise DataError(
                f"unknown type {ftype!r}; expected one of {', '.join(FIELD_TYPES)}",
                source=source,
                line=1,
                field=raw,
            )
        if name in types:
            raise DataError(f"duplicate field {name!r}", source=source, line=1, field=name)
        types[name] = ftype
    return types


def _join_seq(col: pa.ChunkedArray) -> pa.ChunkedArray:
    # RecBole splits sequences on single spaces and drops empty items.
    trimmed = pc.utf8_trim(col, characters=" ")
    return pc.replace_substring_regex(trimmed, pattern=" +", replacement="|")


def _float_seq(col: pa.ChunkedArray, *, field: str, source: str) -> pd.Series:
    joined = _join_seq(col)
    items = pc.list_flatten(pc.split_pattern(joined, pattern="|"))
    items = pc.filter(items, pc.not_equal(items, ""))
    try:
        ok = pc.all(pc.is_finite(pc.cast(items, pa.float64()))).as_py() in (True, None)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        ok = False
    if not ok:  # find the line, item by item (error path only)
        for row, value in enumerate(joined.to_pylist()):
            for item in filter(None, value.split("|")):
                try:
                    good = np.isfinite(float(item))
                except ValueError:
                    good = False
                if not good:
                    raise DataError(
                        f"not a finite number in a float_seq: {item!r}",
                        source=source,
                        line=row + 2,
                        field=field,
                    )
    return strings(joined)


def load_atomic(
    directory: str | Path,
    name: str | None = None,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    rating_field: str = "rating",
    time_field: str = "timestamp",
) -> Dataset:
    """The dataset ``name`` (default: the only ``*.inter`` file) of a directory of atomic files.

    The ``*_field`` arguments name the fields to map when a file uses other names (RecBole's
    ``USER_ID_FIELD``, ``ITEM_ID_FIELD``, ``RATING_FIELD``, ``TIME_FIELD``).

    >>> load_atomic("/nonexistent")
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DataError: /nonexistent: directory not found
    """
    root = Path(directory)
    if not root.exists():
        raise DataError("directory not found", source=str(root))
    if not root.is_dir():
        raise DataError("expected a directory of RecBole atomic files", source=str(root))
    name = name if name is not None else _infer_name(root)

    inter_path = root / f"{name}.inter"
    interactions = _interactions(inter_path, user_field, item_field, rating_field, time_field)
    users = items = edges = None
    if (path := root / f"{name}.user").exists():
        users = _side_table(path, user_field, "user_id", ("user_id",))
    if (path := root / f"{name}.item").exists():
        items = _side_table(path, item_field, "item_id", ITEM_COLUMNS, floats=ITEM_COLUMNS[1:])
    if (path := root / f"{name}.net").exists():
        edges = _edges(path, time_field)
    return Dataset(interactions=interactions, users=users, items=items, edges=edges, name=name)


def _infer_name(root: Path) -> str:
    inters = sorted(p.name for p in root.glob("*.inter"))
    if len(inters) == 1:
        return inters[0][: -len(".inter")]
    if (root / f"{root.name}.inter").exists():
        return root.name
    if not inters:
        raise DataError("no .inter file in the directory", source=str(root))
    raise DataError(
        f"several .inter files ({', '.join(inters)}); pass the dataset name", source=str(root)
    )


def _require_field(
    types: dict[str, str], field: str, source: str, *, ftype: str, role: str
) -> None:
    if field not in types:
        raise DataError(
            f"no {role} field {field}:{ftype}; the header has "
            f"{[f'{n}:{t}' for n, t in types.items()]}",
            source=source,
            line=1,
        )
    if types[field] != ftype:
        raise DataError(
            f"{role} field must be of type {ftype}, not {types[field]}",
            source=source,
            line=1,
            field=field,
        )


def _interactions(
    path: Path, user_field: str, item_field: str, rating_field: str, time_field: str
) -> pd.DataFrame:
    source = str(path)
    frame, types = read_atomic_file(path)
    if frame.empty:
        raise DataError("no interactions (only a header)", source=source)
    _require_field(types, user_field, source, ftype="token", role="user id")
    _require_field(types, item_field, source, ftype="token", role="item id")
    for field in (user_field, item_field):
        _require_nonempty(frame[field], field, source)

    value_fields = [f for f in dict.fromkeys((rating_field, "value")) if f in types]
    if len(value_fields) > 1:
        raise DataError(
            f"both {rating_field!r} and 'value' fields; keep one",
            source=source,
            line=1,
            field="value",
        )
    n = len(frame)
    if value_fields:
        field = value_fields[0]
        _require_field(types, field, source, ftype="float", role="rating")
        values = frame[field].to_numpy(dtype=np.float64)
        if np.isnan(values).any():
            row = int(np.flatnonzero(np.isnan(values))[0])
            raise DataError(
                "missing value (expected a number)", source=source, line=row + 2, field=field
            )
    else:
        values = np.ones(n)
    if "event_type" in types:
        _require_field(types, "event_type", source, ftype="token", role="event type")
        events = frame["event_type"]
    else:
        events = constant("rating" if rating_field in types else "interaction", n)
    if time_field in types:
        _require_field(types, time_field, source, ftype="float", role="timestamp")
        times = frame[time_field].to_numpy(dtype=np.float64)
    else:
        times = np.full(n, np.nan)

    mapped = {user_field, item_field, time_field, "event_type", *value_fields}
    out = pd.DataFrame(
        {
            "user_id": frame[user_field],
            "item_id": frame[item_field],
            "event_type": events,
            "value": values,
            "timestamp": times,
        }
    )
    for col in frame.columns:
        if col in mapped:
            continue
        if col in INTERACTION_COLUMNS:
            raise DataError(
                "a context field may not take the name of a canonical column",
                source=source,
                line=1,
                field=col,
            )
        out[col] = frame[col]
    return out


def _require_nonempty(ids: pd.Series, field: str, source: str) -> None:
    empty = (ids == "").to_numpy(dtype=bool)
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise DataError("empty id", source=source, line=row + 2, field=field)


def _side_table(
    path: Path,
    id_field: str,
    canonical_id: str,
    canonical: tuple[str, ...],
    floats: tuple[str, ...] = (),
) -> pd.DataFrame:
    source = str(path)
    frame, types = read_atomic_file(path)
    _require_field(types, id_field, source, ftype="token", role="id")
    ids = frame[id_field]
    _require_nonempty(ids, id_field, source)
    require_unique(ids, field=id_field, source=source, first_line=2)
    out = pd.DataFrame({canonical_id: ids})
    for col in floats:
        if col in types:
            _require_field(types, col, source, ftype="float", role=col)
            out[col] = frame[col].to_numpy(dtype=np.float64)
        else:
            out[col] = np.full(len(frame), np.nan)
    for col in frame.columns:
        if col == id_field or col in floats:
            continue
        if col in canonical:
            raise DataError(
                "an attribute may not take the name of a canonical column",
                source=source,
                line=1,
                field=col,
            )
        out[col] = frame[col]
    return out


def _edges(path: Path, time_field: str) -> pd.DataFrame:
    source = str(path)
    frame, types = read_atomic_file(path)
    for field in EDGE_COLUMNS[:2]:
        _require_field(types, field, source, ftype="token", role="edge end")
        _require_nonempty(frame[field], field, source)
    out = pd.DataFrame({c: frame[c] for c in EDGE_COLUMNS[:2]})
    if time_field in types:
        _require_field(types, time_field, source, ftype="float", role="timestamp")
        out["timestamp"] = frame[time_field].to_numpy(dtype=np.float64)
    else:
        out["timestamp"] = np.full(len(frame), np.nan)
    for col in frame.columns:
        if col not in (*EDGE_COLUMNS[:2], time_field):
            out[col] = frame[col]
    return out


# --------------------------------------------------------------------------------------------
# Writing


def save_atomic(
    dataset: Dataset,
    directory: str | Path,
    name: str | None = None,
    *,
    seq_columns: Iterable[str] = ("genres",),
) -> Path:
    """Write ``dataset`` as atomic files ``<directory>/<name>.inter`` (``.user``, ``.item``,
    ``.net`` when the dataset has those tables); returns the directory.

    ``name`` defaults to ``dataset.name``. Columns in ``seq_columns`` (``"|"``-joined lists, as
    the MovieLens loaders' ``genres``) are written as ``token_seq``; other string columns as
    ``token``, numeric ones as ``float`` (shortest text that reads back as the same float64,
    whole numbers without ".0"; NaN as an empty field). Interactions whose ``event_type`` is
    ``"rating"`` throughout get a ``rating`` field (what RecBole expects); otherwise
    ``event_type`` and ``value`` fields. Rows keep their order.

    Atomic: a new directory is written under a temporary name and renamed into place; into an
    existing directory each file is written aside and renamed over the old one (and the files
    of tables the dataset lacks are removed), so no file is ever half-written.
    """
    name = dataset.name if name is None else name
    if not name or name.startswith(".") or any(c in name for c in "/\\\t\n"):
        raise DataError(f"invalid dataset name {name!r}", source="save_atomic")
    seq = set(seq_columns)
    # Render everything first: a table that cannot be written fails before the disk is touched.
    files = {f"{name}.inter": _render(_inter_fields(dataset.interactions), seq, "interactions")}
    if dataset.users is not None:
        files[f"{name}.user"] = _render(_fields(dataset.users), seq, "users")
    if dataset.items is not None:
        files[f"{name}.item"] = _render(_fields(dataset.items), seq, "items")
    if dataset.edges is not None:
        files[f"{name}.net"] = _render(_fields(dataset.edges), seq, "edges")

    target = Path(directory)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
        try:
            _write_files(stage, files)
            stage.chmod(0o755)  # mkdtemp makes it private
            os.rename(stage, target)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        return target
    stage = Path(tempfile.mkdtemp(dir=target, prefix=f".{name}.tmp-"))
    try:
        _write_files(stage, files)
        for fname in files:
            os.replace(stage / fname, target / fname)
        for suffix in SUFFIXES:
            if f"{name}{suffix}" not in files:
                (target / f"{name}{suffix}").unlink(missing_ok=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return target


def _write_files(directory: Path, files: dict[str, bytes]) -> None:
    for fname, data in files.items():
        with open(directory / fname, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def _inter_fields(inter: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    fields: list[tuple[str, pd.Series]] = [
        ("user_id", inter["user_id"]),
        ("item_id", inter["item_id"]),
    ]
    if (inter["event_type"] == "rating").all():
        fields.append(("rating", inter["value"]))
    else:
        fields += [("event_type", inter["event_type"]), ("value", inter["value"])]
    fields.append(("timestamp", inter["timestamp"]))
    fields += [(str(c), inter[c]) for c in inter.columns if c not in INTERACTION_COLUMNS]
    return fields


def _fields(frame: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    return [(str(c), frame[c]) for c in frame.columns]


def _render(fields: list[tuple[str, pd.Series]], seq: set[str], table: str) -> bytes:
    """The file's bytes; the rows are assembled by Arrow, not line by line in Python."""
    header: list[str] = []
    columns: list[pa.ChunkedArray] = []
    for name, series in fields:
        if not name or any(c in name for c in ":\t\n\r"):
            raise DataError(
                "a column name may not be empty or hold ':', tabs or newlines",
                source=f"{table} table",
                field=name,
            )
        ftype, text = _column_text(name, series, name in seq, table, name in _TOKEN_COLUMNS)
        header.append(f"{name}:{ftype}")
        columns.append(text)
    head = ("\t".join(header) + "\n").encode("utf-8")
    if not len(columns[0]):
        return head
    tab, newline, empty = (pa.scalar(c, pa.large_string()) for c in ("\t", "\n", ""))
    lines = pc.binary_join_element_wise(*columns, tab) if len(columns) > 1 else columns[0]
    lines = pc.binary_join_element_wise(lines, empty, newline)  # append the line terminator
    # One list holding every line, joined with "": the whole body as a single string.
    flat = lines.combine_chunks().cast(pa.large_string())
    whole = pa.LargeListArray.from_arrays(pa.array([0, len(flat)], pa.int64()), flat)
    body: bytes = pc.binary_join(whole, empty)[0].as_buffer().to_pybytes()
    return head + body


def _column_text(
    name: str, series: pd.Series, as_seq: bool, table: str, as_token: bool
) -> tuple[str, pa.ChunkedArray]:
    dtype = series.dtype
    if not as_token and pd.api.types.is_datetime64_any_dtype(dtype):
        stamps = pd.to_datetime(series, utc=True)
        seconds = (stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        return "float", _format_floats(np.asarray(seconds, dtype=np.float64), name, table)
    if not as_token and (pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype)):
        values = np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan), np.float64)
        return "float", _format_floats(values, name, table)
    text = _arrow_strings(series)
    if pc.any(pc.match_substring_regex(text, r"[\t\n\r]")).as_py():
        bad = pc.match_substring_regex(text, r"[\t\n\r]").to_numpy(zero_copy_only=False)
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"row {row} (0-based): {text[row].as_py()!r} holds a tab or newline, which atomic "
            "files cannot",
            source=f"{table} table",
            field=name,
        )
    if not as_seq:
        return "token", text
    if pc.any(pc.match_substring(text, " ")).as_py():
        row = int(np.flatnonzero(pc.match_substring(text, " ").to_numpy(zero_copy_only=False))[0])
        raise DataError(
            f"row {row} (0-based): an item of the list {text[row].as_py()!r} holds a space, "
            "which a token_seq cannot; leave the column out of seq_columns",
            source=f"{table} table",
            field=name,
        )
    return "token_seq", pc.replace_substring(text, "|", " ")


def _arrow_strings(series: pd.Series) -> pa.ChunkedArray:
    """A column as Arrow strings with missing values as ""; free for Arrow-backed columns."""
    try:
        arr = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed objects: let Python spell them
        arr = None
    if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        as_text = [("" if pd.isna(v) else str(v)) for v in series.astype(object).tolist()]
        arr = pa.array(as_text, type=pa.string())
    chunked = arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])
    return pc.fill_null(chunked.cast(pa.large_string()), "")


def _format_floats(values: npt.NDArray[np.float64], name: str, table: str) -> pa.ChunkedArray:
    """Arrow prints the shortest text that reads back as the same float64 ("3", "0.1")."""
    if np.isinf(values).any():
        row = int(np.flatnonzero(np.isinf(values))[0])
        raise DataError(f"row {row} (0-based): infinite value", source=f"{table} table", field=name)
    text = pc.cast(pa.array(values, type=pa.float64(), from_pandas=True), pa.large_string())
    return pa.chunked_array([pc.fill_null(text, "")])
