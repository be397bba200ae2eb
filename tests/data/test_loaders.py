"""Loaders: MovieLens, RecBole atomic files and generic tables, good and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.schema import Dataset
from recfunnel.data.loaders import (
    load_atomic,
    load_movielens_1m,
    load_movielens_100k,
    load_table,
    read_atomic_file,
    save_atomic,
)

# --------------------------------------------------------------------------------------------
# Tiny GroupLens files

GENRE_FLAGS_ACTION_COMEDY = "0|1|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0"
GENRE_FLAGS_UNKNOWN = "1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0"
GENRE_FLAGS_DRAMA = "0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def ml100k(root: Path, **override: str) -> Path:
    files = {
        "u.data": "1\t10\t4\t881250949\n2\t10\t3\t881250950\n2\t20\t5\t881250951\n",
        "u.item": (
            f"10|Toy Story (1995)|01-Jan-1995||url-x|{GENRE_FLAGS_ACTION_COMEDY}\n"
            f"20|Misérables, Les (1995)|01-Jan-1995||url-y|{GENRE_FLAGS_DRAMA}\n"
            f"30|unknown||||{GENRE_FLAGS_UNKNOWN}\n"
        ),
        "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n",
    }
    files.update(override)
    for name, text in files.items():
        write(root / name, text, encoding="latin-1")
    return root


def ml1m(root: Path, **override: str) -> Path:
    files = {
        "ratings.dat": "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978300000\n",
        "movies.dat": (
            "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
            "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
            "1364::Zero Kelvin (Kjærlighetens kjøtere) (1995)::Action\n"
        ),
        "users.dat": "1::F::1::10::48067\n2::M::56::16::70072\n",
    }
    files.update(override)
    for name, text in files.items():
        write(root / name, text, encoding="latin-1")
    return root


def error_of(excinfo: pytest.ExceptionInfo[DataError]) -> tuple[str, int | None, str | None]:
    exc = excinfo.value
    return (Path(exc.source or "").name, exc.line, exc.field)


# --------------------------------------------------------------------------------------------
# MovieLens 100K


def test_ml100k_tables(tmp_path: Path) -> None:
    ds = load_movielens_100k(ml100k(tmp_path))
    assert ds.name == "ml-100k"
    inter = ds.interactions
    assert inter["user_id"].tolist() == ["1", "2", "2"]
    assert inter["item_id"].tolist() == ["10", "10", "20"]
    assert set(inter["event_type"]) == {"rating"}
    assert inter["value"].tolist() == [4.0, 3.0, 5.0]
    assert inter["timestamp"].dtype == np.float64
    assert inter["timestamp"].tolist() == [881250949.0, 881250950.0, 881250951.0]
    assert ds.items is not None and ds.users is not None
    items = ds.items.set_index("item_id")
    assert items.loc["10", "genres"] == "Action|Comedy"
    assert items.loc["20", "title"] == "Misérables, Les (1995)"  # latin-1 decoded
    assert items.loc["10", "year"] == 1995.0
    assert items["year"].isna().tolist() == [False, False, True]
    assert items.loc["30", "genres"] == "unknown"
    assert items["created_at"].isna().all() and items["expires_at"].isna().all()
    assert list(ds.users.columns) == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert ds.users["age"].tolist() == [24.0, 53.0]
    assert ds.users["zip_code"].tolist() == ["85711", "94043"]


def test_ml100k_wrong_number_of_fields(tmp_path: Path) -> None:
    ml100k(tmp_path, **{"u.data": "1\t10\t4\t881250949\n2\t10\t3\t881250950\n2\t20\t5\n"})
    with pytest.raises(DataError, match="expected 4 fields separated by tab, found 3") as exc:
        load_movielens_100k(tmp_path)
    assert error_of(exc) == ("u.data", 3, None)


def test_ml100k_extra_field(tmp_path: Path) -> None:
    ml100k(tmp_path, **{"u.data": "1\t10\t4\t881250949\t9\n"})
    with pytest.raises(DataError, match="found 5") as exc:
        load_movielens_100k(tmp_path)
    assert error_of(exc) == ("u.data", 1, None)


def test_ml100k_non_numeric_rating(tmp_path: Path) -> None:
    ml100k(tmp_path, **{"u.data": "1\t10\t4\t881250949\n2\t10\tgood\t881250950\n"})
    with pytest.raises(DataError, match="not a number: 'good'") as exc:
        load_movielens_100k(tmp_path)
    assert error_of(exc) == ("u.data", 2, "rating")
    assert "u.data, line 2, field rating" in str(exc.value)


def test_ml100k_non_numeric_timestamp(tmp_path: Path) -> None:
    ml100k(tmp_path, **{"u.data": "1\t10\t4\t881250949\n1\t20\t4\tyesterday\n"})
    with pytest.raises(DataError, match="not a number") as exc:
        load_movielens_100k(tmp_path)
    assert error_of(exc) == ("u.data", 2, "timestamp")


def test_ml100k_missing_rating_and_blank_line(tmp_path: Path) -> None:
    ml100k(tmp_path, **{"u.data": "1\t10\t\t881250949\n"})
    with pytest.raises(DataError, match="missing value") as exc:
        load_movielens_100k(tmp_path)
    assert error_of(exc) == ("u.data", 1, "rating")
    ml100k(tmp_path, **{"u.data": "1\t10\t4\t881250949\n\n2\t10\t3\t881250950\n"})
    with pytest.raises(DataError, match="blank line") as exc:
        load_movielens_100k(tmp_path)
    assert error_of(exc) == ("u.data", 2, None)


def test_ml100k_empty_and_missing_files(tmp_path: Path) -> None:
    ml100k(tmp_path, **{"u.data": ""})
    with pytest.raises(DataError, match="empty") as exc:
        load_movielens_100k(tmp_path)
    assert error_of(exc) == ("u.data", None, None)
    ml100k(tmp_path)
    (tmp_path / "u.user").unlink()
    with pytest.raises(DataError, match="not found") as exc:
        load_movielens_100k(tmp_path)
    assert error_of(exc)[0] == "u.user"


def test_ml100k_bad_genre_flag(tmp_path: Path) -> None:
    flags = GENRE_FLAGS_DRAMA.replace("1", "yes")
    ml100k(
        tmp_path,
        **{"u.item": f"10|Toy Story (1995)|||x|{GENRE_FLAGS_DRAMA}\n20|Heat (1995)|||x|{flags}\n"},
    )
    with pytest.raises(DataError, match="0 or 1") as exc:
        load_movielens_100k(tmp_path)
    assert error_of(exc) == ("u.item", 2, "Drama")


def test_ml100k_unknown_and_duplicate_ids(tmp_path: Path) -> None:
    ml100k(tmp_path, **{"u.data": "1\t10\t4\t881250949\n1\t99\t4\t881250949\n"})
    with pytest.raises(DataError, match=r"'99' is not in u\.item") as exc:
        load_movielens_100k(tmp_path)
    assert error_of(exc) == ("u.data", 2, "item_id")
    ml100k(tmp_path, **{"u.user": "1|24|M|x|1\n2|53|F|y|2\n2|30|F|z|3\n"})
    with pytest.raises(DataError, match="duplicate id '2'") as exc:
        load_movielens_100k(tmp_path)
    assert error_of(exc) == ("u.user", 3, "user_id")


# --------------------------------------------------------------------------------------------
# MovieLens 1M


def test_ml1m_tables(tmp_path: Path) -> None:
    ds = load_movielens_1m(ml1m(tmp_path))
    assert ds.name == "ml-1m"
    assert ds.interactions["item_id"].tolist() == ["1193", "661", "1193"]
    assert ds.interactions["value"].tolist() == [5.0, 3.0, 4.0]
    assert ds.items is not None and ds.users is not None
    items = ds.items.set_index("item_id")
    assert items.loc["661", "genres"] == "Animation|Children's|Musical"
    assert items.loc["1364", "title"] == "Zero Kelvin (Kjærlighetens kjøtere) (1995)"
    assert items.loc["1193", "year"] == 1975.0
    users = ds.users.set_index("user_id")
    assert users.loc["1", "gender"] == "F" and users.loc["1", "age"] == 1.0
    assert users.loc["2", "occupation"] == "16"
    assert ds.summary()["items"] == 2 and ds.summary()["catalog_items"] == 3


def test_ml1m_malformed_row(tmp_path: Path) -> None:
    ml1m(tmp_path, **{"ratings.dat": "1::1193::5::978300760\n1::661::3\n"})
    with pytest.raises(DataError, match="expected 4 fields separated by '::', found 3") as exc:
        load_movielens_1m(tmp_path)
    assert error_of(exc) == ("ratings.dat", 2, None)


def test_ml1m_bad_age(tmp_path: Path) -> None:
    ml1m(tmp_path, **{"users.dat": "1::F::1::10::48067\n2::M::old::16::70072\n"})
    with pytest.raises(DataError, match="not a number: 'old'") as exc:
        load_movielens_1m(tmp_path)
    assert error_of(exc) == ("users.dat", 2, "age")


# --------------------------------------------------------------------------------------------
# RecBole atomic files


def test_read_recbole_style_files(tmp_path: Path) -> None:
    write(
        tmp_path / "toy.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "196\t242\t3\t881250949\n186\t302\t3.5\t891717742\n",
    )
    write(
        tmp_path / "toy.item",
        "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
        "242\tKolya\tComedy\n302\tL.A.  Confidential\tCrime Film-Noir\n",
    )
    ds = load_atomic(tmp_path)
    assert ds.name == "toy"
    inter = ds.interactions
    assert inter["value"].tolist() == [3.0, 3.5]
    assert set(inter["event_type"]) == {"rating"}
    assert ds.items is not None
    assert ds.items["class"].tolist() == ["Comedy", "Crime|Film-Noir"]
    assert ds.items["movie_title"].tolist() == ["Kolya", "L.A.|Confidential"]
    assert ds.items["created_at"].isna().all()
    assert ds.users is None and ds.edges is None


def test_atomic_defaults_without_rating_or_time(tmp_path: Path) -> None:
    write(
        tmp_path / "clicks.inter", "user_id:token\titem_id:token\tpos:float\nu1\ti1\t\nu1\ti2\t3\n"
    )
    inter = load_atomic(tmp_path, "clicks").interactions
    assert inter["value"].tolist() == [1.0, 1.0]
    assert inter["timestamp"].isna().all()
    assert set(inter["event_type"]) == {"interaction"}
    assert np.isnan(inter["pos"].iloc[0]) and inter["pos"].iloc[1] == 3.0  # context column


@pytest.mark.parametrize(
    ("text", "match", "where"),
    [
        (
            "user_id:token\titem_id:token\trating:int\nu\ti\t1\n",
            "unknown type 'int'",
            (1, "rating:int"),
        ),
        (
            "user_id:token\titem_id:token\tuser_id:token\nu\ti\tv\n",
            "duplicate field",
            (1, "user_id"),
        ),
        (
            "uid:token\titem_id:token\nu\ti\n",
            r"no user id field user_id:token; the header has",
            (1, None),
        ),
        (
            "user_id:token\titem_id:token\trating:float\nu\ti\t1\nu\tj\tfive\n",
            "not a number",
            (3, "rating"),
        ),
        ("user_id:token\titem_id:token\trating:float\nu\ti\t1\nu\tj\n", "found 2", (3, None)),
        ("user_id:token\titem_id:token\trating:float\nu\ti\t\n", "missing value", (2, "rating")),
        ("user_id:token\titem_id:token\nu\t\n", "empty id", (2, "item_id")),
        ("user_id\titem_id:token\nu\ti\n", "not 'name:type'", (1, "user_id")),
        ("user_id:float\titem_id:token\n1\ti\n", "must be of type token", (1, "user_id")),
    ],
)
def test_atomic_bad_input(
    tmp_path: Path, text: str, match: str, where: tuple[int | None, str | None]
) -> None:
    write(tmp_path / "bad.inter", text)
    with pytest.raises(DataError, match=match) as exc:
        load_atomic(tmp_path)
    assert error_of(exc) == ("bad.inter", *where)


def test_atomic_bad_float_seq(tmp_path: Path) -> None:
    write(
        tmp_path / "x.inter",
        "user_id:token\titem_id:token\temb:float_seq\nu\ti\t1 2.5\nu\tj\t1 x\n",
    )
    with pytest.raises(DataError, match="'x'") as exc:
        load_atomic(tmp_path)
    assert error_of(exc) == ("x.inter", 3, "emb")
    write(tmp_path / "x.inter", "user_id:token\titem_id:token\temb:float_seq\nu\ti\t1  2.5\n")
    assert load_atomic(tmp_path).interactions["emb"].tolist() == ["1|2.5"]


def test_atomic_directory_problems(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="directory not found"):
        load_atomic(tmp_path / "nope")
    with pytest.raises(DataError, match=r"no \.inter file"):
        load_atomic(tmp_path)
    write(tmp_path / "a.inter", "user_id:token\titem_id:token\n")
    with pytest.raises(DataError, match="only a header") as exc:
        load_atomic(tmp_path)
    assert error_of(exc)[0] == "a.inter"
    write(tmp_path / "b.inter", "user_id:token\titem_id:token\nu\ti\n")
    with pytest.raises(DataError, match=r"several \.inter files"):
        load_atomic(tmp_path)
    assert len(load_atomic(tmp_path, "b")) == 1
    write(tmp_path / "b.user", "")
    with pytest.raises(DataError, match="empty") as exc:
        load_atomic(tmp_path, "b")
    assert error_of(exc)[0] == "b.user"


def full_dataset() -> Dataset:
    inter = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["i1", "i2", "i1"],
            "event_type": ["click", "purchase", "click"],
            "value": [1.0, 29.99, 1.0],
            "timestamp": [1.5e9, np.nan, 1700000000.25],
            "device": ["ios", "web", "ios"],
            "position": [1.0, 2.0, np.nan],
        }
    )
    users = pd.DataFrame({"user_id": ["u1", "u2"], "age": [31.0, np.nan], "country": ["FR", ""]})
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i2"],
            "created_at": [1.0e9, np.nan],
            "expires_at": [np.nan, 2.0e9],
            "title": ['Big "quoted" title, with: colons', "Café"],
            "genres": ["Action|Sci-Fi", ""],
        }
    )
    edges = pd.DataFrame({"src_user_id": ["u1"], "dst_user_id": ["u2"], "timestamp": [3.0]})
    return Dataset(interactions=inter, users=users, items=items, edges=edges, name="shop")


def assert_same(a: Dataset, b: Dataset) -> None:
    assert a.name == b.name
    for table in ("interactions", "users", "items", "edges"):
        left, right = getattr(a, table), getattr(b, table)
        assert (left is None) == (right is None), table
        if left is not None:
            pd.testing.assert_frame_equal(left, right, check_dtype=False)


def test_atomic_round_trip(tmp_path: Path) -> None:
    ds = full_dataset()
    out = save_atomic(ds, tmp_path / "cache" / "shop")
    assert sorted(p.name for p in out.iterdir()) == [
        "shop.inter",
        "shop.item",
        "shop.net",
        "shop.user",
    ]
    head = (out / "shop.inter").read_text().splitlines()[0].split("\t")
    assert head[:5] == [
        "user_id:token",
        "item_id:token",
        "event_type:token",
        "value:float",
        "timestamp:float",
    ]
    assert "genres:token_seq" in (out / "shop.item").read_text().splitlines()[0]
    back = load_atomic(out)
    assert_same(ds, back)
    assert back.interactions["timestamp"].iloc[2] == 1700000000.25  # exact float text
    frame, types = read_atomic_file(out / "shop.item")
    assert types["genres"] == "token_seq" and frame["genres"].tolist() == ["Action|Sci-Fi", ""]


def test_atomic_ratings_written_as_rating_field(tmp_path: Path) -> None:
    ds = load_movielens_100k(ml100k(tmp_path / "gl"))
    out = save_atomic(ds, tmp_path / "atomic")
    lines = (out / "ml-100k.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    assert lines[1] == "1\t10\t4\t881250949"  # whole numbers without ".0", as RecBole writes
    assert (out / "ml-100k.item").read_text().splitlines()[1].endswith("1995\tAction Comedy")
    assert_same(ds, load_atomic(out))


def test_save_atomic_replaces_files_and_leaves_no_temp(tmp_path: Path) -> None:
    ds = full_dataset()
    out = save_atomic(ds, tmp_path / "d")
    smaller = Dataset(interactions=ds.interactions, name="shop")
    save_atomic(smaller, out)
    assert sorted(p.name for p in out.iterdir()) == ["shop.inter"]  # stale tables removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert_same(smaller, load_atomic(out))


def test_save_atomic_refuses_unwritable_values(tmp_path: Path) -> None:
    ds = full_dataset()
    ds.interactions.loc[1, "device"] = "we\tb"
    with pytest.raises(DataError, match="tab or newline") as exc:
        save_atomic(ds, tmp_path / "d")
    assert exc.value.field == "device"
    assert not (tmp_path / "d").exists() and list(tmp_path.iterdir()) == []
    ds = full_dataset()
    assert ds.items is not None
    ds.items.loc[0, "genres"] = "Science Fiction|Action"
    with pytest.raises(DataError, match="holds a space"):
        save_atomic(ds, tmp_path / "d")
    save_atomic(ds, tmp_path / "d", seq_columns=())  # as a plain token it is fine
    assert_same(ds, load_atomic(tmp_path / "d"))


# --------------------------------------------------------------------------------------------
# Generic tables


def test_csv_with_iso_and_epoch_times(tmp_path: Path) -> None:
    path = write(
        tmp_path / "events.csv",
        "user,item,stars,when,device,dwell\n"
        'a,x,4,2015-03-01T12:00:00Z,"ios, phone",1.5\n'
        "b,y,3.5,1425211200,web,\n",
    )
    ds = load_table(
        path,
        user_col="user",
        item_col="item",
        rating_col="stars",
        time_col="when",
        event_type="rating",
    )
    inter = ds.interactions
    assert ds.name == "events"
    assert inter["value"].tolist() == [4.0, 3.5]
    assert inter["timestamp"].tolist() == [1425211200.0, 1425211200.0]
    assert set(inter["event_type"]) == {"rating"}
    assert inter["device"].tolist() == ["ios, phone", "web"]
    assert inter["dwell"].iloc[0] == 1.5 and np.isnan(inter["dwell"].iloc[1])


def test_tsv_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "e.tsv", "u\ti\n1\t2\n1\t3\n")
    inter = load_table(path, user_col="u", item_col="i").interactions
    assert inter["user_id"].tolist() == ["1", "1"]
    assert inter["value"].tolist() == [1.0, 1.0] and inter["timestamp"].isna().all()
    assert set(inter["event_type"]) == {"interaction"}


def test_table_missing_column_lists_present(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "user,item,rating\na,x,4\n")
    with pytest.raises(
        DataError,
        match=r"no column 'stars' \(given as rating_col\); "
        r"columns present: \['user', 'item', 'rating'\]",
    ):
        load_table(path, user_col="user", item_col="item", rating_col="stars")


def test_table_bad_values_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "user,item,rating,t\na,x,4,1\nb,y,four,2\n")
    with pytest.raises(DataError, match="not a number: 'four'") as exc:
        load_table(path, user_col="user", item_col="item", rating_col="rating")
    assert error_of(exc) == ("e.csv", 3, "rating")
    path = write(tmp_path / "e.csv", "user,item,t\na,x,1\nb,y,2\nc,z,last tuesday\n")
    with pytest.raises(DataError, match="ISO 8601") as exc:
        load_table(path, user_col="user", item_col="item", time_col="t")
    assert error_of(exc) == ("e.csv", 4, "t")
    path = write(tmp_path / "e.csv", "user,item\na,x\nb\n")
    with pytest.raises(DataError, match="expected 2 fields") as exc:
        load_table(path, user_col="user", item_col="item")
    assert error_of(exc) == ("e.csv", 3, None)
    path = write(tmp_path / "e.csv", "user,item\na,x\n,y\n")
    with pytest.raises(DataError, match="empty id") as exc:
        load_table(path, user_col="user", item_col="item")
    assert error_of(exc) == ("e.csv", 3, "user")


def test_table_header_problems(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "user,item,user\na,x,b\n")
    with pytest.raises(DataError, match="duplicate column name 'user'") as exc:
        load_table(path, user_col="user", item_col="item")
    assert error_of(exc) == ("e.csv", 1, "user")
    path = write(tmp_path / "e.csv", "user,item,timestamp\na,x,1\n")
    with pytest.raises(DataError, match="not mapped"):
        load_table(path, user_col="user", item_col="item")
    with pytest.raises(ConfigError):
        load_table(path, user_col="user", item_col="user")
    with pytest.raises(DataError, match="empty"):
        load_table(write(tmp_path / "empty.csv", ""), user_col="u", item_col="i")
    with pytest.raises(DataError, match="only a header"):
        load_table(write(tmp_path / "h.csv", "u,i\n"), user_col="u", item_col="i")
    with pytest.raises(DataError, match="pass sep="):
        load_table(write(tmp_path / "e.dat", "u,i\n1,2\n"), user_col="u", item_col="i")
    assert len(load_table(tmp_path / "e.dat", user_col="u", item_col="i", sep=",")) == 1


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    table = pa.table(
        {
            "uid": pa.array([7, 8], pa.int64()),
            "iid": pa.array(["a", "b"]),
            "score": pa.array([0.5, 1.0]),
            "ts": pa.array([pd.Timestamp("2015-03-01T12:00:00Z"), None], pa.timestamp("ms", "UTC")),
            "country": pa.array(["FR", None]),
        }
    )
    pq.write_table(table, path)
    ds = load_table(path, user_col="uid", item_col="iid", rating_col="score", time_col="ts")
    inter = ds.interactions
    assert inter["user_id"].tolist() == ["7", "8"]
    assert inter["value"].tolist() == [0.5, 1.0]
    assert inter["timestamp"].iloc[0] == 1425211200.0 and np.isnan(inter["timestamp"].iloc[1])
    assert inter["country"].iloc[0] == "FR"
    with pytest.raises(DataError, match=r"no column 'user'.*present: \['uid', 'iid'"):
        load_table(path, user_col="user", item_col="iid")
    bad = table.set_column(2, "score", pa.array(["0.5", "lots"]))
    pq.write_table(bad, path)
    with pytest.raises(DataError, match="row 2: not a number: 'lots'") as exc:
        load_table(path, user_col="uid", item_col="iid", rating_col="score")
    assert exc.value.field == "score"
    write(path, "not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_table(path, user_col="uid", item_col="iid")
