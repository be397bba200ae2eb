"""GroupLens MovieLens 100K and 1M, read from the files of their archives.

The MovieLens datasets are collected and distributed by GroupLens Research (University of
Minnesota); please cite F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets:
History and Context. ACM TiiS 5(4), and follow the usage license in the archive's README.

Both loaders give the same tables:

* interactions: ``user_id``, ``item_id`` (the GroupLens ids, as strings), ``event_type``
  ``"rating"``, ``value`` (the 1..5 star rating) and ``timestamp`` (float epoch seconds), in the
  order of the ratings file;
* users: ``user_id``, ``age`` (float; in 1M an age-group code: 1, 18, 25, 35, 45, 50, 56),
  ``gender``, ``occupation`` (a name in 100K, a code "0".."20" in 1M) and ``zip_code``;
* items: ``item_id``, ``created_at`` and ``expires_at`` (NaN: movies do not expire), ``title``,
  ``year`` (float, from the last "(1995)" in the title, NaN if none) and ``genres`` (the genre
  names joined by "|", e.g. ``"Action|Comedy"``).

Every rating must name a user and a movie of the side files; ids there must be unique.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recfunnel.core.errors import DataError
from recfunnel.core.schema import Dataset
from recfunnel.data.loaders._common import (
    constant,
    parse_floats,
    read_rows,
    read_text,
    require_known,
    require_nonempty,
    require_unique,
    strings,
)

#: The 19 genre flags of ``u.item``, in file order.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip

USER_ATTRIBUTES = ("age", "gender", "occupation", "zip_code")
ITEM_ATTRIBUTES = ("title", "year", "genres")

# The last "(YYYY)" of a title: "Land Before Time III: ... (1995) (V)" is from 1995.
_YEAR = re.compile(r".*\((\d{4})\)")
_ENCODING = "latin-1"  # GroupLens wrote these files in ISO-8859-1


def title_years(titles: pd.Series) -> npt.NDArray[np.float64]:
    """Release years: the last "(YYYY)" in each title; NaN where there is none.

    >>> title_years(pd.Series(["Toy Story (1995)", "Big Hit (1995) (V)", "unknown"])).tolist()
    [1995.0, 1995.0, nan]
    """
    years = pd.Series(titles).str.extract(_YEAR, expand=False)
    return pd.to_numeric(years, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _ratings(path: Path, sep: str) -> tuple[pd.DataFrame, str]:
    source = str(path)
    names = ["user_id", "item_id", "rating", "timestamp"]
    table = read_rows(
        read_text(path, encoding=_ENCODING), sep=sep, names=names, source=source, first_line=1
    )
    for field in ("user_id", "item_id"):
        require_nonempty(table[field], field=field, source=source, first_line=1)
    values = parse_floats(
        table["rating"], field="rating", source=source, first_line=1, allow_empty=False
    )
    times = parse_floats(
        table["timestamp"], field="timestamp", source=source, first_line=1, allow_empty=False
    )
    n = len(values)
    frame = pd.DataFrame(
        {
            "user_id": strings(table["user_id"]),
            "item_id": strings(table["item_id"]),
            "event_type": constant("rating", n),
            "value": values,
            "timestamp": times,
        }
    )
    return frame, source


def _items_frame(item_ids: pd.Series, titles: pd.Series, genres: pd.Series) -> pd.DataFrame:
    n = len(item_ids)
    return pd.DataFrame(
        {
            "item_id": item_ids,
            "created_at": np.full(n, np.nan),
            "expires_at": np.full(n, np.nan),
            "title": titles,
            "year": title_years(titles),
            "genres": genres,
        }
    )


def _users_frame(table: pa.Table, source: str, first_line: int = 1) -> pd.DataFrame:
    require_nonempty(table["user_id"], field="user_id", source=source, first_line=first_line)
    user_ids = strings(table["user_id"])
    require_unique(user_ids, field="user_id", source=source, first_line=first_line)
    return pd.DataFrame(
        {
            "user_id": user_ids,
            "age": parse_floats(
                table["age"], field="age", source=source, first_line=first_line, allow_empty=True
            ),
            "gender": strings(table["gender"]),
            "occupation": strings(table["occupation"]),
            "zip_code": strings(table["zip_code"]),
        }
    )


def _check_references(
    inter: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    source: str,
    side: tuple[str, str],
) -> None:
    require_known(
        inter["user_id"],
        users["user_id"],
        field="user_id",
        source=source,
        first_line=1,
        table=side[0],
    )
    require_known(
        inter["item_id"],
        items["item_id"],
        field="item_id",
        source=source,
        first_line=1,
        table=side[1],
    )


def load_movielens_100k(directory: str | Path) -> Dataset:
    """MovieLens 100K from the directory of ``u.data``, ``u.item`` and ``u.user``.

    ``u.data`` is tab separated ``user item rating timestamp``; ``u.item`` is ``|`` separated
    ``movie id|title|release date|video release date|IMDb URL|`` + 19 genre flags (0/1);
    ``u.user`` is ``user id|age|gender|occupation|zip code``.

    >>> load_movielens_100k("/nonexistent")
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DataError: /nonexistent/u.data: file not found
    """
    root = Path(directory)
    inter, inter_source = _ratings(root / "u.data", "\t")

    item_path = root / "u.item"
    item_source = str(item_path)
    flags = [f"genre:{g}" for g in ML100K_GENRES]
    table = read_rows(
        read_text(item_path, encoding=_ENCODING),
        sep="|",
        names=["item_id", "title", "release_date", "video_release_date", "imdb_url", *flags],
        source=item_source,
        first_line=1,
    )
    require_nonempty(table["item_id"], field="item_id", source=item_source, first_line=1)
    item_ids = strings(table["item_id"])
    require_unique(item_ids, field="item_id", source=item_source, first_line=1)
    on = np.zeros((len(item_ids), len(flags)), dtype=bool)
    for j, (flag, genre) in enumerate(zip(flags, ML100K_GENRES, strict=True)):
        col = table[flag]
        bad = pc.invert(pc.is_in(col, value_set=pa.array(["0", "1"])))
        if pc.any(bad).as_py():
            row = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
            raise DataError(
                f"genre flag must be 0 or 1, got {col[row].as_py()!r}",
                source=item_source,
                line=row + 1,
                field=genre,
            )
        on[:, j] = pc.equal(col, "1").to_numpy(zero_copy_only=False)
    names = np.array(ML100K_GENRES, dtype=object)
    genre_lists = pd.Series(["|".join(names[row]) for row in on], dtype="str")
    items = _items_frame(item_ids, strings(table["title"]), genre_lists)

    user_path = root / "u.user"
    users_table = read_rows(
        read_text(user_path, encoding=_ENCODING),
        sep="|",
        names=["user_id", *USER_ATTRIBUTES],
        source=str(user_path),
        first_line=1,
    )
    users = _users_frame(users_table, str(user_path))
    _check_references(inter, users, items, inter_source, ("u.user", "u.item"))
    return Dataset(interactions=inter, users=users, items=items, name="ml-100k")


def load_movielens_1m(directory: str | Path) -> Dataset:
    """MovieLens 1M from the directory of ``ratings.dat``, ``movies.dat`` and ``users.dat``.

    Fields are separated by ``::``: ``UserID::MovieID::Rating::Timestamp``,
    ``MovieID::Title::Genres`` (genres already ``|``-joined) and
    ``UserID::Gender::Age::Occupation::Zip-code``.

    >>> load_movielens_1m("/nonexistent")
    Traceback (most recent call last):
    ...
    recfunnel.core.errors.DataError: /nonexistent/ratings.dat: file not found
    """
    root = Path(directory)
    inter, inter_source = _ratings(root / "ratings.dat", "::")

    movie_path = root / "movies.dat"
    movie_source = str(movie_path)
    table = read_rows(
        read_text(movie_path, encoding=_ENCODING),
        sep="::",
        names=["item_id", "title", "genres"],
        source=movie_source,
        first_line=1,
    )
    require_nonempty(table["item_id"], field="item_id", source=movie_source, first_line=1)
    item_ids = strings(table["item_id"])
    require_unique(item_ids, field="item_id", source=movie_source, first_line=1)
    items = _items_frame(item_ids, strings(table["title"]), strings(table["genres"]))

    user_path = root / "users.dat"
    users_table = read_rows(
        read_text(user_path, encoding=_ENCODING),
        sep="::",
        names=["user_id", "gender", "age", "occupation", "zip_code"],
        source=str(user_path),
        first_line=1,
    )
    users = _users_frame(users_table, str(user_path))
    _check_references(inter, users, items, inter_source, ("users.dat", "movies.dat"))
    return Dataset(interactions=inter, users=users, items=items, name="ml-1m")
