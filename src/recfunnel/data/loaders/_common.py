"""Reading delimited text fast and reporting bad input by file, line and field.

The loaders parse whole files with pyarrow's CSV reader (multi-threaded, C++) and only when it
fails, or when validation finds a bad value, do they go back to find the first offending line,
so a million-row file loads in well under a second and a bad one still gets a precise message.

Line numbers are 1-based physical lines of the file as a text editor shows them; they assume one
record per line (a quoted field spanning lines in a CSV file shifts the later numbers).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recfunnel.core.errors import DataError

#: Single characters that can stand in for a multi-character separator such as MovieLens' "::"
#: (pyarrow wants one byte); the first absent from the text is used.
_SUBSTITUTE_SEPARATORS = ("\t", "\x1f", "\x1e", "\x1d")
_BLANK_LINE = re.compile(r"\A\r?\n|\n\r?\n")


def read_text(path: Path, *, encoding: str, what: str = "file") -> str:
    """The text of ``path``; a missing, unreadable, undecodable or empty file is a DataError.

    >>> read_text(Path("/nonexistent/u.data"), encoding="latin-1")
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DataError: /nonexistent/u.data: file not found
    """
    source = str(path)
    if not path.exists():
        raise DataError(f"{what} not found", source=source)
    if path.is_dir():
        raise DataError(f"expected a {what}, found a directory", source=source)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {what}: {exc.strerror or exc}", source=source) from exc
    # utf-8-sig drops a byte-order mark that would otherwise glue itself to the first field.
    codec = "utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"byte 0x{raw[exc.start]:02x} is not valid {encoding} text; "
            "pass the right encoding (MovieLens files are latin-1)",
            source=source,
            line=line,
        ) from exc
    if not text.strip():
        raise DataError(f"{what} is empty", source=source)
    return text


def split_header(text: str) -> tuple[str, str]:
    """``(first line, rest)`` with the line terminator removed from the first line.

    >>> split_header("a\\tb\\r\\n1\\t2\\n")
    ('a\\tb', '1\\t2\\n')
    """
    head, _, body = text.partition("\n")
    return head.rstrip("\r"), body


def parse_header(line: str, *, sep: str, quoted: bool, source: str) -> list[str]:
    """The field names of a header line; empty or duplicate names are DataErrors (line 1).

    >>> parse_header("a,b,a", sep=",", quoted=True, source="x.csv")
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DataError: x.csv, line 1, field a: duplicate column name 'a'
    """
    if quoted:
        names = next(csv.reader([line], delimiter=sep), [])
    else:
        names = line.split(sep)
    names = [n.strip() for n in names]
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not name:
            raise DataError(f"header field {i + 1} is empty", source=source, line=1)
        if name in seen:
            raise DataError(f"duplicate column name {name!r}", source=source, line=1, field=name)
        seen.add(name)
    return names


def read_rows(
    body: str,
    *,
    sep: str,
    names: Sequence[str],
    source: str,
    first_line: int,
    quoted: bool = False,
    infer: Collection[str] = (),
) -> pa.Table:
    """Parse ``body`` (the data lines, the first being file line ``first_line``) into a table.

    Every record must have exactly ``len(names)`` fields. Columns are strings (empty fields are
    ``""``, never null) except those named in ``infer``, whose type pyarrow infers (empty is
    null there). ``quoted`` honours CSV double quotes; otherwise quotes are ordinary characters.
    """
    n = len(names)
    shown = "tab" if sep == "\t" else repr(sep)
    # Trailing newlines would read as empty records; blank lines inside stay and are reported.
    body = body.rstrip("\r\n")
    if not body:
        return pa.table({name: pa.array([], type=pa.string()) for name in names})
    blank = _BLANK_LINE.search(body)
    if blank is not None:  # pyarrow would read it as a record of empty fields
        # At 0 the first line is blank; elsewhere the match starts at the previous line's end.
        index = 0 if blank.start() == 0 else body.count("\n", 0, blank.start()) + 1
        raise DataError("blank line", source=source, line=first_line + index)
    if len(sep) > 1:
        body, sep = _single_char_separator(body, sep, source)
    data = body.encode("utf-8")
    column_types = {name: pa.string() for name in names if name not in infer}
    tmp_names = [f"f{i}" for i in range(n)]  # real names may repeat or clash; checked elsewhere
    convert = pacsv.ConvertOptions(
        column_types={f"f{i}": t for i, name in enumerate(names) if (t := column_types.get(name))},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    parse = pacsv.ParseOptions(
        delimiter=sep,
        quote_char='"' if quoted else False,
        ignore_empty_lines=False,
        newlines_in_values=False,
    )
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=tmp_names, use_threads=True),
            parse_options=parse,
            convert_options=convert,
        )
    except pa.ArrowInvalid as exc:
        _locate_shape_error(
            data,
            body,
            sep=sep,
            shown=shown,
            n=n,
            quoted=quoted,
            source=source,
            first_line=first_line,
            cause=exc,
        )
        raise DataError(f"cannot parse: {exc}", source=source) from exc
    return table.rename_columns(list(names))


def _single_char_separator(body: str, sep: str, source: str) -> tuple[str, str]:
    for ch in _SUBSTITUTE_SEPARATORS:
        if ch not in body:
            return body.replace(sep, ch), ch
    raise DataError(f"cannot split fields on {sep!r}: the text uses every stand-in", source=source)


def _locate_shape_error(
    data: bytes,
    body: str,
    *,
    sep: str,
    shown: str,
    n: int,
    quoted: bool,
    source: str,
    first_line: int,
    cause: Exception,
) -> None:
    """Raise a DataError naming the first record without ``n`` fields, if there is one."""
    found: list[tuple[int | None, int]] = []

    def handler(row: pacsv.InvalidRow) -> str:
        found.append((row.number, row.actual_columns))
        return "error"

    # Single-threaded so that pyarrow knows the row number of the bad record.
    try:
        pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(
                column_names=[f"f{i}" for i in range(n)], use_threads=False
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=sep,
                quote_char='"' if quoted else False,
                ignore_empty_lines=False,
                invalid_row_handler=handler,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(n)}
            ),
        )
    except pa.ArrowInvalid:
        pass
    if found and found[0][0] is not None:
        number, actual = found[0]
        assert number is not None
        _raise_shape(actual, n, shown=shown, source=source, line=first_line + number - 1)
    # pyarrow did not say where: count fields line by line (slow, but only on this error path).
    for i, line in enumerate(body.split("\n")):
        line = line.rstrip("\r")
        fields = next(csv.reader([line], delimiter=sep), []) if quoted else line.split(sep)
        actual = len(fields) if line else 0
        if actual != n:
            _raise_shape(actual, n, shown=shown, source=source, line=first_line + i)
    raise DataError(f"cannot parse: {cause}", source=source) from cause


def _raise_shape(actual: int, n: int, *, shown: str, source: str, line: int) -> None:
    if actual <= 1 and n > 1:
        detail = "a blank line" if actual == 0 else "a single field"
        raise DataError(
            f"expected {n} fields separated by {shown}, found {detail}", source=source, line=line
        )
    raise DataError(
        f"expected {n} fields separated by {shown}, found {actual}", source=source, line=line
    )


def strings(column: pa.ChunkedArray | pa.Array) -> pd.Series:
    """A string column as a pandas ``str`` Series (Arrow-backed, no copy), as the tables hold."""
    series: pd.Series = column.to_pandas()
    if not pd.api.types.is_string_dtype(series.dtype):  # dictionary-encoded, ...
        series = series.astype("str")
    return series


def constant(value: str, n: int) -> pd.Series:
    """``n`` copies of ``value`` as a ``str`` Series (built by Arrow, not by a Python list)."""
    series: pd.Series = pa.repeat(pa.scalar(value, pa.string()), n).to_pandas()
    return series


def require_nonempty(
    values: pa.ChunkedArray, *, field: str, source: str, first_line: int, what: str = "id"
) -> None:
    """Raise naming the first line whose ``field`` is empty."""
    empty = pc.equal(pc.utf8_length(values), 0)
    if pc.any(empty).as_py():
        row = int(np.flatnonzero(empty.to_numpy(zero_copy_only=False))[0])
        raise DataError(f"empty {what}", source=source, line=first_line + row, field=field)


def parse_floats(
    values: pa.ChunkedArray,
    *,
    field: str,
    source: str,
    first_line: int,
    allow_empty: bool,
) -> npt.NDArray[np.float64]:
    """A string column as float64; empty is NaN when ``allow_empty``, else an error.

    Anything else that is not a finite number raises a DataError naming the line.
    """
    is_empty = pc.equal(pc.utf8_length(values), 0)
    empty = is_empty.to_numpy(zero_copy_only=False)
    cleaned = pc.if_else(is_empty, pa.scalar(None, pa.string()), values)
    try:
        out = np.asarray(
            pc.cast(cleaned, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # pyarrow is strict (no surrounding blanks, ...); pandas tells us which value failed.
        out = pd.to_numeric(strings(values), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    bad = ~np.isfinite(out)
    if allow_empty:
        bad &= ~empty
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raw = values[row].as_py()
        if raw == "":
            message = "missing value (expected a number)"
        elif np.isnan(out[row]):
            message = f"not a number: {raw!r}"
        else:
            message = f"not a finite number: {raw!r}"
        raise DataError(message, source=source, line=first_line + row, field=field)
    return out


def require_unique(ids: pd.Series, *, field: str, source: str, first_line: int) -> None:
    """Raise naming the line of the first repeated id."""
    dup = pd.Index(ids).duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(
            f"duplicate id {ids.iloc[row]!r}", source=source, line=first_line + row, field=field
        )


def require_known(
    ids: pd.Series,
    known: pd.Series,
    *,
    field: str,
    source: str,
    first_line: int,
    table: str,
) -> None:
    """Raise naming the first line whose id is not among ``known`` (the ids of ``table``)."""
    missing = ~pd.Index(ids).isin(known)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(
            f"id {ids.iloc[row]!r} is not in {table}",
            source=source,
            line=first_line + row,
            field=field,
        )
