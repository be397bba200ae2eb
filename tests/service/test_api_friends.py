"""``GET /v1/users/{id}/friend-suggestions``: exclusions, online edges, new members, deletion."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from service_helpers import R, TestClient, W


def post_edges(client: TestClient, pairs: list[tuple[str, str]], kind: str = "connect") -> None:
    body = {"edges": [{"src_user_id": a, "dst_user_id": b, "kind": kind} for a, b in pairs]}
    assert client.post("/v1/edges", json=body, headers=W).status_code == 200


def befriend(client: TestClient, pairs: list[tuple[str, str]]) -> None:
    post_edges(client, [p for a, b in pairs for p in ((a, b), (b, a))])


def suggested(client: TestClient, user: str, n: int = 10) -> list[str]:
    r = client.get(f"/v1/users/{user}/friend-suggestions", params={"n": n}, headers=R)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"request_id", "model_version", "users"}
    assert r.headers["X-Request-ID"] == body["request_id"]
    return [u["user_id"] for u in body["users"]]


@pytest.fixture
def social(make_client: Callable[..., TestClient]) -> TestClient:
    """a - b - c - d chain, plus a hub h friends with b, c, d, e, f."""
    client = make_client()
    befriend(client, [("a", "b"), ("b", "c"), ("c", "d")])
    befriend(client, [("h", x) for x in "bcdef"])
    return client


def test_friends_of_friends_come_first_and_exclusions_hold(social: TestClient) -> None:
    got = suggested(social, "a")
    # a's only friend is b; b's friends are a, c, h: so c and h (one mutual friend each).
    assert set(got[:2]) == {"c", "h"}
    assert "a" not in got and "b" not in got


def test_a_posted_edge_counts_at_the_next_request(social: TestClient) -> None:
    assert "d" not in suggested(social, "a")[:2]
    befriend(social, [("a", "c")])  # a's friends: b, c. h is a friend of both, d of c only
    body = social.get("/v1/users/a/friend-suggestions", headers=R).json()
    got = [(u["user_id"], u["score"], u["source"]) for u in body["users"]]
    assert got[:2] == [("h", 2.0, "model"), ("d", 1.0, "model")]
    assert "c" not in [u for u, _, _ in got]


def test_requests_and_blocks_are_never_suggested(social: TestClient) -> None:
    post_edges(social, [("a", "c")])  # pending request a -> c
    post_edges(social, [("h", "a")], kind="block")  # h blocked a
    got = suggested(social, "a", n=20)
    assert "c" not in got and "h" not in got
    assert "a" not in suggested(social, "h", n=20)


def test_a_member_without_connections_gets_popular_users(social: TestClient) -> None:
    got = suggested(social, "newcomer", n=3)
    assert got[0] == "h"  # the most-connected user
    r = social.get("/v1/users/newcomer/friend-suggestions", headers=R)
    assert all(u["source"] == "popular_users" for u in r.json()["users"])


def test_deleting_a_user_removes_them_from_suggestions(social: TestClient) -> None:
    assert "h" in suggested(social, "a")
    assert social.delete("/v1/users/h", headers=W).status_code == 200
    got = suggested(social, "a", n=20)
    assert "h" not in got


def test_bad_n_and_missing_key(social: TestClient) -> None:
    r = social.get("/v1/users/a/friend-suggestions", params={"n": 0}, headers=R)
    assert r.status_code == 422 and r.json()["field"] == "n"
    assert social.get("/v1/users/a/friend-suggestions").status_code == 401


def test_writes_through_another_process_count_at_the_next_request(
    social: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another worker writes to the shared store: this app follows the store's change log.
    store = social.app.state.services.store  # type: ignore[attr-defined]
    assert "h" in suggested(social, "a")
    store.add_edges([{"src_user_id": "h", "dst_user_id": "a", "kind": "block"}])
    assert "h" not in suggested(social, "a") and "a" not in suggested(social, "h", n=20)
    store.remove_edges([("h", "a")])
    assert "h" in suggested(social, "a")
    # A bulk write is logged without its rows: the app re-reads the graph from the store.
    monkeypatch.setattr("recfunnel.core.store.CHANGE_ROWS_MAX", 1)
    store.add_edges([{"src_user_id": "h", "dst_user_id": "a", "kind": "block"},
                     {"src_user_id": "a", "dst_user_id": "zz"}])  # fmt: skip
    assert "h" not in suggested(social, "a") and "a" not in suggested(social, "h", n=20)
    # A user deleted through another process is forgotten, in log order with the edges.
    store.delete_users(["c"])
    assert "c" not in suggested(social, "b", n=20) and "c" not in suggested(social, "h", n=20)
