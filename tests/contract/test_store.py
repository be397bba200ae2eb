"""The Store conformance suite: every backend (SQLite, PostgreSQL) gives the same answers.

PostgreSQL runs against the server named by ``RECFUNNEL_TEST_PG_URL`` (start one with
``scripts/ci_postgres.sh``), each test in a schema of its own. Without the variable those cases
are skipped locally and fail under ``CI=true``, so CI cannot pass by silently skipping them.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recfunnel.core.errors import ConfigError, DataError
from recfunnel.core.schema import Interaction, Item, SocialEdge, User
from recfunnel.core.store import (
    Change,
    Changes,
    Deletions,
    IngestResult,
    ServedRequest,
    Store,
    StoredInteraction,
)
from recfunnel.data.store import open_store

BACKENDS = ["sqlite", "postgresql"]


def _pg_admin_url() -> str:
    url = os.environ.get("RECFUNNEL_TEST_PG_URL")
    problem = None
    if not url:
        problem = "RECFUNNEL_TEST_PG_URL is not set (start a server: scripts/ci_postgres.sh)"
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            problem = "psycopg is not installed (pip install 'psycopg[binary]')"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL store tests cannot run under CI: {problem}")
        pytest.skip(problem)
    assert url is not None
    return url


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
        return
    import psycopg

    admin = _pg_admin_url()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in admin else "?"
    try:
        yield f"{admin}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as s:
        yield s


def events(n: int, *, prefix: str = "e", user: str = "u", start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{prefix}{i}",
            "user_id": f"{user}{i % 3}",
            "item_id": f"i{i % 7}",
            "event_type": "click",
            "value": float(i),
            "timestamp": 1_700_000_000.0 + i,
        }
        for i in range(start, start + n)
    ]


def stored_ids(store: Store) -> list[str]:
    return store.to_arrow()["event_id"].to_pylist()


# -- idempotent ingestion -----------------------------------------------------------------------


def test_retried_batch_is_not_double_counted(store: Store) -> None:
    batch = events(100)
    first = store.add_interactions(batch)
    retry = store.add_interactions(batch)
    assert (first.accepted, first.duplicates) == (100, 0)
    assert (retry.accepted, retry.duplicates) == (0, 100)
    assert retry.event_ids == [f"e{i}" for i in range(100)]
    assert store.counts()["interactions"] == 100


def test_partial_overlap_and_in_batch_duplicates_count_exactly(store: Store) -> None:
    a = {"event_id": "a", "user_id": "u", "item_id": "first"}
    a_again = {"event_id": "a", "user_id": "u", "item_id": "second"}
    b = {"event_id": "b", "user_id": "u", "item_id": "x"}
    c = {"event_id": "c", "user_id": "u", "item_id": "y"}
    assert store.add_interactions([a, b, a_again]) == IngestResult(2, 1, ["a", "b", "a"])
    assert store.add_interactions([b, c]) == IngestResult(1, 1, ["b", "c"])
    table = store.to_arrow().to_pydict()
    assert table["event_id"] == ["a", "b", "c"]
    assert table["item_id"] == ["first", "x", "y"]  # the first copy of an id wins


def test_generated_ids_are_unique_and_returned(store: Store) -> None:
    rows = [Interaction("u", "i"), {"user_id": "u", "item_id": "i"}]
    first = store.add_interactions(rows)
    again = store.add_interactions(rows)  # no client ids: a resend is new events (documented)
    assert (first.accepted, again.accepted) == (2, 2)
    ids = first.event_ids + again.event_ids
    assert len(set(ids)) == 4
    assert sorted(stored_ids(store)) == sorted(ids)
    # Retrying with the returned ids is idempotent.
    with_ids = [{"event_id": e, "user_id": "u", "item_id": "i"} for e in first.event_ids]
    assert store.add_interactions(with_ids).duplicates == 2


def test_empty_batch_and_dataframe_input(store: Store) -> None:
    assert store.add_interactions([]) == IngestResult(0, 0, [])
    frame = pd.DataFrame(events(5))
    assert store.add_interactions(frame).accepted == 5
    assert store.add_interactions(frame).duplicates == 5


# -- bad input rejects the whole batch ----------------------------------------------------------

BAD_EVENTS = [
    ({"user_id": "u"}, "item_id"),
    ({"user_id": 7, "item_id": "i"}, "user_id"),
    ({"user_id": "", "item_id": "i"}, "user_id"),
    ({"user_id": "u", "item_id": "a\x00b"}, "item_id"),
    ({"user_id": "u", "item_id": "i", "value": "4 stars"}, "value"),
    ({"user_id": "u", "item_id": "i", "value": float("inf")}, "value"),
    ({"user_id": "u", "item_id": "i", "timestamp": "yesterday"}, "timestamp"),
    ({"user_id": "u", "item_id": "i", "context": ["not", "a", "map"]}, "context"),
    ({"user_id": "u", "item_id": "i", "context": {"x": object()}}, "context"),
    ({"user_id": "u", "item_id": "i", "timestmap": 5}, "timestmap"),
    ({"user_id": "u", "item_id": "i", "event_id": 12}, "event_id"),
    ({"user_id": "u\ud800", "item_id": "i"}, "user_id"),
]


@pytest.mark.parametrize(("bad", "field"), BAD_EVENTS, ids=[f for _, f in BAD_EVENTS])
def test_a_bad_row_rejects_the_whole_batch(store: Store, bad: dict[str, Any], field: str) -> None:
    store.add_interactions(events(2, prefix="old"))
    before = store.to_arrow()
    batch = [*events(3), bad, *events(2, start=3)]
    with pytest.raises(DataError) as err:
        store.add_interactions(batch)
    assert err.value.field == field
    assert "row 3" in str(err.value) and field in str(err.value)
    assert store.to_arrow().equals(before)


def test_bad_users_items_edges_are_located(store: Store) -> None:
    with pytest.raises(DataError, match=r"users batch row 1, field attributes"):
        store.upsert_users([User("a"), {"user_id": "b", "attributes": "tall"}])
    with pytest.raises(DataError, match=r"items batch row 0, field expires_at"):
        store.upsert_items([{"item_id": "x", "created_at": 10, "expires_at": 5}])
    with pytest.raises(DataError, match=r"edges batch row 1, field dst_user_id"):
        store.add_edges([("a", "b"), ("c", "c")])
    with pytest.raises(DataError, match="list of user ids"):
        store.delete_users("ana")
    with pytest.raises(DataError, match="single dict"):
        store.add_interactions({"user_id": "u", "item_id": "i"})  # type: ignore[arg-type]
    assert store.counts() == {"interactions": 0, "users": 0, "items": 0, "edges": 0}


# -- upserts ------------------------------------------------------------------------------------


def test_upserts_replace_attributes(store: Store) -> None:
    assert store.upsert_users([User("ana", {"age": 30, "tags": ["a"]}), User("bo", {"age": 5})])
    assert store.upsert_users([{"user_id": "ana", "attributes": {"age": 31}}]) == 1
    # Within one batch the last row of an id wins.
    assert store.upsert_items([Item("x", {"c": "old"}), Item("x", {"c": "new"}, 1.0, 9.0)]) == 1
    data = store.to_dataset()
    users = data.users.set_index("user_id")
    assert users.loc["ana", "age"] == 31 and "tags" not in users.columns  # replaced, not merged
    assert users.loc["bo", "age"] == 5
    items = data.items.set_index("item_id")
    assert (items.loc["x", "c"], items.loc["x", "created_at"], items.loc["x", "expires_at"]) == (
        "new",
        1.0,
        9.0,
    )


# -- pagination ---------------------------------------------------------------------------------


def test_pagination_covers_every_row_once_in_order(store: Store) -> None:
    batch = [
        {"event_id": f"e{i}", "user_id": "ana" if i % 3 else "bo", "item_id": f"i{i}"}
        for i in range(250)
    ]
    for start in range(0, 250, 40):
        store.add_interactions(batch[start : start + 40])
    expected = [e["event_id"] for e in batch if e["user_id"] == "ana"]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.user_interactions("ana", limit=7, cursor=cursor)
        assert len(page.rows) <= 7
        seen += [r.event_id for r in page.rows]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected
    assert pages == -(-len(expected) // 7)
    assert store.user_interactions("nobody").rows == []


def test_pagination_sees_rows_that_arrive_while_paging(store: Store) -> None:
    store.add_interactions(events(6, user="v"))  # v0, v1, v2 get two each
    first = store.user_interactions("v0", limit=1)
    store.add_interactions([{"event_id": "late", "user_id": "v0", "item_id": "z"}])
    rest = store.user_interactions("v0", limit=10, cursor=first.next_cursor)
    assert [r.event_id for r in first.rows + rest.rows] == ["e0", "e3", "late"]
    assert rest.next_cursor is None


def test_pagination_rejects_bad_arguments(store: Store) -> None:
    with pytest.raises(DataError, match="field cursor"):
        store.user_interactions("u", cursor="abc")
    with pytest.raises(DataError, match="field limit"):
        store.user_interactions("u", limit=0)


# -- deletion -----------------------------------------------------------------------------------


def test_delete_user_removes_everything_and_calls_hooks(store: Store) -> None:
    store.upsert_users([User("ana"), User("bo"), User("cy")])
    store.add_interactions(events(9, user="x"))  # users x0, x1, x2
    store.add_interactions([{"event_id": "a1", "user_id": "ana", "item_id": "i"}])
    store.add_edges([("ana", "bo"), ("bo", "ana"), ("cy", "ana"), ("bo", "cy")])
    calls: list[list[str]] = []
    store.add_deletion_hook(lambda ids: calls.append(list(ids)))
    removed = store.delete_users(["ana", "x1", "ana"])
    assert removed == {"interactions": 4, "edges": 3, "users": 1}
    assert calls == [["ana", "x1"]]
    assert store.user_interactions("ana").rows == []
    assert store.user_interactions("x1").rows == []
    data = store.to_dataset()
    assert sorted(data.users["user_id"]) == ["bo", "cy"]
    assert set(data.interactions["user_id"]) == {"x0", "x2"}
    assert data.edges[["src_user_id", "dst_user_id"]].values.tolist() == [["bo", "cy"]]
    # Deleting again is a no-op for the store and still runs the hooks.
    assert store.delete_users(["ana"]) == {"interactions": 0, "edges": 0, "users": 0}
    assert calls[-1] == ["ana"]


def test_a_failing_hook_does_not_stop_the_others(store: Store) -> None:
    store.add_interactions([{"event_id": "a1", "user_id": "ana", "item_id": "i"}])
    called: list[str] = []

    @store.add_deletion_hook
    def broken(ids: Any) -> None:
        raise OSError("cache down")

    store.add_deletion_hook(lambda ids: called.extend(ids))
    with pytest.raises(ExceptionGroup) as err:
        store.delete_users(["ana"])
    assert isinstance(err.value.exceptions[0], OSError)
    assert called == ["ana"]
    assert store.counts()["interactions"] == 0


def test_deletions_are_logged_in_order_for_other_processes(store_url: str) -> None:
    with open_store(store_url) as store, open_store(store_url) as other:
        assert other.deletions_since() == Deletions([], 0)
        store.upsert_users([User("ana")])
        store.delete_users(["ana", "nobody"])  # logged whether or not the store held them
        first = other.deletions_since()
        assert first.user_ids == ["ana", "nobody"] and first.position > 0
        assert other.deletions_since(first.position) == Deletions([], first.position)
        store.delete_users(["bo"])
        store.delete_users(["ana"])  # again: logged again
        later = other.deletions_since(first.position)
        assert later.user_ids == ["bo", "ana"] and later.position > first.position
        assert other.deletions_since().user_ids == ["ana", "nobody", "bo", "ana"]
        with pytest.raises(ConfigError, match="position"):
            other.deletions_since(-1)


def test_writes_are_logged_in_order_for_other_processes(store_url: str) -> None:
    with open_store(store_url) as store, open_store(store_url) as other:
        assert other.changes_since() == Changes([], 0, True)
        store.add_edges([SocialEdge("a", "b", timestamp=5.0), SocialEdge("b", "c", kind="block")])
        store.upsert_users([User("a", {"community": 1})])
        store.upsert_items([Item("x", {"genre": "jazz"}, created_at=1.0)])
        store.add_interactions(events(3))  # not logged
        store.remove_edges([("a", "b"), ("zz", "yy")])  # logged as asked
        store.delete_users(["c"])
        store.upsert_users([])  # nothing written: nothing logged
        found = other.changes_since()
        assert found.complete and [(c.kind, c.rows) for c in found.entries] == [
            ("edges", [["a", "b", 5.0, "connect"], ["b", "c", None, "block"]]),
            ("users", [["a", {"community": 1}]]),
            ("items", [["x", {"genre": "jazz"}, 1.0, None]]),
            ("edges_removed", [["a", "b"], ["zz", "yy"]]),
            ("users_deleted", [["c"]]),
        ]
        seqs = [c.seq for c in found.entries]
        assert seqs == sorted(seqs) and found.position == seqs[-1]
        assert other.changes_since(found.position) == Changes([], found.position, True)
        part = other.changes_since(seqs[0], limit=2)
        assert [c.kind for c in part.entries] == ["users", "items"] and part.position == seqs[2]
        with pytest.raises(ConfigError, match="position"):
            other.changes_since(-1)
        with pytest.raises(ConfigError, match="limit"):
            other.changes_since(0, limit=0)


def test_a_reader_following_concurrent_writers_misses_no_change(store_url: str) -> None:
    # Positions are committed in order: reading on from the last position seen, while other
    # connections write, finds every entry exactly once.
    writers, per = 4, 40
    done = threading.Event()
    seen: list[str] = []
    errors: list[BaseException] = []
    stores = [open_store(store_url) for _ in range(writers + 1)]  # opened one at a time

    def write(w: int) -> None:
        try:
            for i in range(per):
                stores[w].add_edges([{"src_user_id": f"w{w}", "dst_user_id": f"d{i}"}])
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    def read() -> None:
        position = 0
        try:
            while True:
                last = done.is_set()  # then read on until nothing is left
                found = stores[-1].changes_since(position, limit=7)
                assert found.complete
                seen.extend(f"{r[0]}>{r[1]}" for c in found.entries for r in c.rows)
                position = found.position
                if last and not found.entries:
                    return
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        follower = threading.Thread(target=read)
        follower.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        done.set()
        follower.join(timeout=60)
    finally:
        for store in stores:
            store.close()
    assert not errors, errors[0]
    assert sorted(seen) == sorted(f"w{w}>d{i}" for w in range(writers) for i in range(per))


def test_change_log_is_a_bounded_window(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import recfunnel.core.store as contract

    monkeypatch.setattr(contract, "CHANGES_KEEP", 3)
    monkeypatch.setattr(contract, "CHANGE_ROWS_MAX", 2)
    for module in ("sqlite", "postgres"):
        monkeypatch.setattr(f"recfunnel.data.store.{module}.CHANGES_KEEP", 3)
    with open_store(store_url) as store:
        start = store.changes_since().position
        for i in range(5):
            store.upsert_users([User(f"u{i}")])
        window = store.changes_since(start)
        assert not window.complete  # the first two were dropped: the reader must rebuild
        assert [c.rows for c in window.entries] == [[["u2", {}]], [["u3", {}]], [["u4", {}]]]
        assert store.changes_since(window.entries[0].seq - 1).complete
        store.add_edges([("a", "b"), ("b", "c"), ("c", "d")])  # a bulk write: a reset
        last = store.changes_since(window.position)
        assert last.entries == [Change(last.position, "reset", [])] and last.complete


def test_served_requests_are_shared_bounded_and_deleted_with_the_user(store_url: str) -> None:
    with open_store(store_url) as store, open_store(store_url) as other:
        store.record_requests([ServedRequest("r1", "ana", "v1"), ("r2", "bo", "v1")], keep=10)
        other.record_requests([{"request_id": "r3", "user_id": "ana", "model_version": "v2"}],
                              keep=10)  # fmt: skip
        store.record_requests([("r1", "cy", "v9")], keep=10)  # a known id keeps its record
        assert other.served_requests(["r1", "r3", "unknown"]) == {
            "r1": ServedRequest("r1", "ana", "v1"),
            "r3": ServedRequest("r3", "ana", "v2"),
        }
        store.delete_users(["ana"])
        assert other.served_requests(["r1", "r2", "r3"]) == {"r2": ServedRequest("r2", "bo", "v1")}
        # Only the `keep` most recent stay.
        store.record_requests([(f"k{i}", "cy", "v1") for i in range(5)], keep=3)
        assert sorted(other.served_requests(["r2"] + [f"k{i}" for i in range(5)])) == [
            "k2",
            "k3",
            "k4",
        ]
        assert other.served_requests([]) == {}
        with pytest.raises(DataError, match="user_id"):
            store.record_requests([("r9", "", "v1")], keep=3)
        with pytest.raises(ConfigError, match="keep"):
            store.record_requests([("r9", "u", "v1")], keep=0)


# -- edges and expiry ---------------------------------------------------------------------------


def test_edges_add_and_remove(store: Store) -> None:
    assert store.add_edges([SocialEdge("a", "b", 1.0), ("b", "a"), ("a", "b")]) == 2
    assert store.add_edges([("a", "b"), ("a", "c")]) == 1
    assert store.remove_edges([("a", "b"), ("zz", "a"), {"src_user_id": "a", "dst_user_id": "c"}])
    edges = store.to_dataset().edges
    assert edges[["src_user_id", "dst_user_id"]].values.tolist() == [["b", "a"]]


def edge_table(store: Store) -> list[tuple[str, str, float | None, str]]:
    table = store.to_arrow("edges").to_pydict()
    cols = ("src_user_id", "dst_user_id", "timestamp", "kind")
    return list(zip(*(table[c] for c in cols), strict=True))


def test_edge_kinds_are_stored_and_read_back(store: Store) -> None:
    added = store.add_edges(
        [
            SocialEdge("ana", "bo", 1.0),  # ana asks bo ...
            {"src_user_id": "bo", "dst_user_id": "ana", "timestamp": 2.0, "kind": "connect"},
            SocialEdge("cy", "ana", 3.0, kind="block"),
            ("dan", "ana"),  # a bare pair is a connect
        ]
    )
    assert added == 4
    assert edge_table(store) == [
        ("ana", "bo", 1.0, "connect"),
        ("bo", "ana", 2.0, "connect"),
        ("cy", "ana", 3.0, "block"),
        ("dan", "ana", None, "connect"),
    ]
    assert store.to_arrow("edges").schema.names == [
        "src_user_id",
        "dst_user_id",
        "timestamp",
        "kind",
    ]
    edges = store.to_dataset().edges
    assert edges is not None
    assert edges["kind"].tolist() == ["connect", "connect", "block", "connect"]


def test_adding_a_stored_pair_keeps_its_time_and_takes_the_new_kind(store: Store) -> None:
    assert store.add_edges([SocialEdge("ana", "bo", 10.0)]) == 1
    # A block replaces the request: not a new pair, so not counted; the time stays.
    assert store.add_edges([SocialEdge("ana", "bo", 20.0, kind="block")]) == 0
    assert edge_table(store) == [("ana", "bo", 10.0, "block")]
    assert store.add_edges([SocialEdge("ana", "bo", 30.0, kind="block")]) == 0  # a retry
    assert edge_table(store) == [("ana", "bo", 10.0, "block")]
    # ... and a later connect replaces the block.
    assert store.add_edges([SocialEdge("ana", "bo", 40.0), SocialEdge("bo", "cy", 5.0)]) == 1
    assert edge_table(store) == [("ana", "bo", 10.0, "connect"), ("bo", "cy", 5.0, "connect")]
    # Within one batch: the first row's time and the last row's kind, as one row at a time.
    batch = [
        SocialEdge("cy", "dan", 1.0),
        SocialEdge("cy", "dan", 2.0, kind="block"),
        SocialEdge("bo", "cy", 9.0, kind="block"),
        SocialEdge("bo", "cy", 9.5),
    ]
    assert store.add_edges(batch) == 1
    assert edge_table(store) == [
        ("ana", "bo", 10.0, "connect"),
        ("bo", "cy", 5.0, "connect"),
        ("cy", "dan", 1.0, "block"),
    ]
    # Removing a pair removes it whatever its kind (unblocking).
    assert store.remove_edges([("cy", "dan"), ("dan", "cy")]) == 1
    assert store.counts()["edges"] == 2


BAD_KINDS = ["mute", "Block", "", 1, ["block"]]


@pytest.mark.parametrize("kind", BAD_KINDS, ids=[repr(k) for k in BAD_KINDS])
def test_a_bad_edge_kind_rejects_the_whole_batch(store: Store, kind: object) -> None:
    store.add_edges([("ana", "bo")])
    batch = [
        SocialEdge("bo", "ana", kind="block"),
        {"src_user_id": "cy", "dst_user_id": "ana", "kind": kind},
    ]
    with pytest.raises(DataError, match=r"edges batch row 1, field kind: must be one of") as err:
        store.add_edges(batch)
    assert err.value.field == "kind"
    assert edge_table(store) == [("ana", "bo", None, "connect")]


def _create_version_1(url: str) -> None:
    """A store as recfunnel wrote it before edges had a kind, holding two edges."""
    if url.startswith("sqlite"):
        import sqlite3

        with closing(sqlite3.connect(url[len("sqlite:///") :])) as conn, conn:
            conn.executescript(STORE_V1_SQLITE_DDL)
            conn.execute("INSERT INTO store_meta VALUES ('schema_version', '1')")
            conn.executemany(
                "INSERT INTO edges VALUES (?, ?, ?)", [("ana", "bo", 1.0), ("bo", "ana", None)]
            )
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in STORE_V1_POSTGRES_DDL:
            conn.execute(statement)
        conn.execute("INSERT INTO store_meta VALUES ('schema_version', '1')")
        conn.execute("INSERT INTO edges VALUES ('ana', 'bo', 1.0), ('bo', 'ana', NULL)")


def test_a_version_1_store_is_migrated_on_open(store_url: str) -> None:
    _create_version_1(store_url)
    with open_store(store_url) as store:
        assert edge_table(store) == [("ana", "bo", 1.0, "connect"), ("bo", "ana", None, "connect")]
        assert store.add_edges([SocialEdge("ana", "bo", 5.0, kind="block"), ("ana", "cy")]) == 1
        assert edge_table(store)[0] == ("ana", "bo", 1.0, "block")
    with open_store(store_url) as store:  # opening a migrated store again changes nothing
        assert len(edge_table(store)) == 3
        assert store.to_dataset().edges["kind"].tolist() == ["block", "connect", "connect"]
    assert _schema_version(store_url) == "2"


def _schema_version(url: str) -> str:
    if url.startswith("sqlite"):
        import sqlite3

        with closing(sqlite3.connect(url[len("sqlite:///") :])) as conn:
            row = conn.execute("SELECT value FROM store_meta").fetchone()
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT value FROM store_meta").fetchone()
    assert row is not None
    return str(row[0])


def test_migration_checks_kinds_from_then_on(tmp_path: Any) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path}/old.db"
    _create_version_1(url)
    open_store(url).close()
    with closing(sqlite3.connect(tmp_path / "old.db")) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
            conn.execute("INSERT INTO edges VALUES ('x', 'y', NULL, 'mute')")


#: The SQLite DDL of schema version 1 (recfunnel before edge kinds), verbatim.
STORE_V1_SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY, attributes TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY, attributes TEXT NOT NULL DEFAULT '{}',
    created_at REAL, expires_at REAL);
CREATE INDEX IF NOT EXISTS items_expires_at ON items (expires_at);
CREATE TABLE IF NOT EXISTS interactions (
    seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL,
    item_id TEXT NOT NULL, event_type TEXT NOT NULL, value REAL NOT NULL, timestamp REAL,
    context TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS interactions_user ON interactions (user_id, seq);
CREATE TABLE IF NOT EXISTS edges (
    src_user_id TEXT NOT NULL, dst_user_id TEXT NOT NULL, timestamp REAL,
    PRIMARY KEY (src_user_id, dst_user_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_dst ON edges (dst_user_id);
"""
#: The PostgreSQL tables of version 1 that changed since (the others are created on open).
STORE_V1_POSTGRES_DDL = (
    "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    'CREATE TABLE IF NOT EXISTS edges (src_user_id TEXT COLLATE "C" NOT NULL, '
    'dst_user_id TEXT COLLATE "C" NOT NULL, timestamp DOUBLE PRECISION, '
    "PRIMARY KEY (src_user_id, dst_user_id))",
    "CREATE INDEX IF NOT EXISTS edges_dst ON edges (dst_user_id)",
)


def test_item_expiry(store: Store) -> None:
    items = [
        Item("always"),
        Item("news", created_at=100.0, expires_at=200.0),
        Item("future", created_at=300.0),
        {"item_id": "iso", "expires_at": "1970-01-01T00:02:30Z"},  # 150 s
    ]
    store.upsert_items(items)
    for at in (50.0, 100.0, 149.9, 150.0, 199.0, 200.0, 300.0):
        expected = sorted(
            i.item_id
            for i in [*items[:3], Item("iso", expires_at=150.0)]
            if i.is_live(at)  # type: ignore[union-attr]
        )
        assert store.live_items(at) == expected, at
    assert store.purge_expired(199.0) == 1  # iso
    assert store.purge_expired(200.0) == 1  # news
    assert sorted(store.to_dataset().items["item_id"]) == ["always", "future"]
    assert store.live_items() == ["always", "future"]  # default: now
    assert store.purge_expired() == 0


# -- reading for training -----------------------------------------------------------------------


def test_to_arrow_round_trip(store: Store) -> None:
    written = [
        StoredInteraction("e1", "ana", "book", "rating", 4.5, 1.5, {"device": "ios", "n": [1, 2]}),
        {"event_id": "e2", "user_id": "bo", "item_id": "film", "timestamp": "2024-05-01T12:00:00Z"},
        {"event_id": "e3", "user_id": "ana", "item_id": "film", "value": np.float32(2.0)},
        {
            "event_id": "e4",
            "user_id": "bo",
            "item_id": "film",
            "timestamp": "2024-05-01T14:00+02:00",
        },
        {"event_id": "e5", "user_id": "bo", "item_id": "film", "timestamp": "2024-05-01 12:00:00"},
    ]
    store.add_interactions(written)
    table = store.to_arrow(batch_size=2)
    noon = 1714564800.0  # 2024-05-01T12:00:00Z; an offset is honoured, a naive time is UTC
    assert table.to_pydict() == {
        "event_id": ["e1", "e2", "e3", "e4", "e5"],
        "user_id": ["ana", "bo", "ana", "bo", "bo"],
        "item_id": ["book", "film", "film", "film", "film"],
        "event_type": ["rating", *["interaction"] * 4],
        "value": [4.5, 1.0, 2.0, 1.0, 1.0],
        "timestamp": [1.5, noon, None, noon, noon],
        "context": ['{"device":"ios","n":[1,2]}', *["{}"] * 4],
    }
    assert [len(b) for b in store.iter_batches("interactions", batch_size=2)] == [2, 2, 1]
    page = store.user_interactions("ana")
    assert page.rows[0] == written[0]
    matrix = store.to_matrix()
    assert matrix.shape == (2, 2) and len(matrix) == 5
    assert matrix.to_csr(binary=False).toarray().tolist() == [[4.5, 2.0], [0.0, 3.0]]


def test_reading_rejects_unknown_tables(store: Store) -> None:
    with pytest.raises(ConfigError, match="unknown table"):
        store.to_arrow("orders")
    assert store.to_arrow("edges").num_rows == 0


def test_unicode_ids(store: Store) -> None:
    ids = ["用户-1", "ünïcødé", "emoji-🎧", "e\u0301", "é", "ℌ", "tab\there"]
    store.add_interactions(
        [{"event_id": f"ev-{u}", "user_id": u, "item_id": f"📦{u}"} for u in ids]
    )
    store.upsert_users([User(u, {"name": u}) for u in ids])
    table = store.to_arrow().to_pydict()
    assert table["user_id"] == ids and table["item_id"] == [f"📦{u}" for u in ids]
    assert store.to_arrow("users")["user_id"].to_pylist() == sorted(ids)
    for u in ids:
        assert [r.item_id for r in store.user_interactions(u).rows] == [f"📦{u}"]
    assert store.delete_users(["e\u0301"])["interactions"] == 1  # not the precomposed "é"
    assert [r.event_id for r in store.user_interactions("é").rows] == ["ev-é"]


def test_data_survives_reopening(store_url: str) -> None:
    with open_store(store_url) as store:
        store.add_interactions(events(10))
        store.upsert_users([User("ana", {"a": 1})])
    with open_store(store_url) as store:
        assert store.counts() == {"interactions": 10, "users": 1, "items": 0, "edges": 0}
        assert store.add_interactions(events(10)).duplicates == 10


# -- concurrency --------------------------------------------------------------------------------

N_WORKERS, PER_WORKER, OVERLAP, BATCH = 4, 600, 200, 50


def _worker_events(k: int) -> list[dict[str, Any]]:
    """Worker k sends ids [k*(PER-OVERLAP), …+PER): each shares OVERLAP ids with the next."""
    start = k * (PER_WORKER - OVERLAP)
    return [
        {"event_id": f"c{i:05d}", "user_id": f"u{i % 13}", "item_id": f"i{i % 17}"}
        for i in range(start, start + PER_WORKER)
    ]


def _ingest(url: str, k: int, shared: Store | None = None) -> int:
    rows = _worker_events(k)
    # Overlapping workers send their shared ids in opposite orders, the pattern that
    # deadlocks a store that takes row locks in input order.
    if k % 2:
        rows = rows[::-1]
    store = shared or open_store(url)
    accepted = 0
    for start in range(0, len(rows), BATCH):
        accepted += store.add_interactions(rows[start : start + BATCH]).accepted
    if shared is None:
        store.close()
    return accepted


def _ingest_process(url: str, k: int, out: Any) -> None:
    out.put((k, _ingest(url, k)))


def _expected_ids() -> list[str]:
    return sorted({e["event_id"] for k in range(N_WORKERS) for e in _worker_events(k)})


@pytest.mark.parametrize("sharing", ["own-connections", "shared-store"])
def test_concurrent_threads_lose_and_duplicate_nothing(store: Store, sharing: str) -> None:
    url_store = store
    accepted = [0] * N_WORKERS

    def run(k: int) -> None:
        shared = url_store if sharing == "shared-store" else None
        accepted[k] = _ingest(_url_of(url_store), k, shared)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(N_WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = stored_ids(store)
    assert sorted(ids) == _expected_ids()  # nothing lost, nothing twice
    assert sum(accepted) == len(ids)


def test_concurrent_processes_lose_and_duplicate_nothing(store_url: str) -> None:
    with open_store(store_url):
        pass  # create the tables once, outside the race
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_ingest_process, args=(store_url, k, out)) for k in range(3)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    with open_store(store_url) as store:
        ids = stored_ids(store)
    expected = sorted({e["event_id"] for k in range(3) for e in _worker_events(k)})
    assert sorted(ids) == expected
    assert sum(results.values()) == len(expected)


def _url_of(store: Store) -> str:
    path = getattr(store, "path", None)
    return f"sqlite:///{path}" if path is not None else store.url  # type: ignore[attr-defined]
