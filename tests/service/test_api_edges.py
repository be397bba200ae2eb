"""``/v1/edges``: kinds (connect, block), re-adding a pair, removing pairs; status and body."""

from __future__ import annotations

from fastapi.testclient import TestClient
from service_helpers import R, W, store_of


def stored_edges(client: TestClient) -> list[tuple[str, str, float | None, str]]:
    table = store_of(client).to_arrow("edges").to_pydict()
    cols = ("src_user_id", "dst_user_id", "timestamp", "kind")
    return list(zip(*(table[c] for c in cols), strict=True))


def test_kinds_are_stored_and_a_block_replaces_a_request(client: TestClient) -> None:
    edges = {
        "edges": [
            {"src_user_id": "u", "dst_user_id": "v", "timestamp": 100},
            {"src_user_id": "v", "dst_user_id": "u", "kind": "connect", "timestamp": 200},
            {"src_user_id": "w", "dst_user_id": "u", "kind": "block"},
        ]
    }
    r = client.post("/v1/edges", json=edges, headers=W)
    assert (r.status_code, r.json()) == (200, {"added": 3})
    assert stored_edges(client) == [
        ("u", "v", 100.0, "connect"),
        ("v", "u", 200.0, "connect"),
        ("w", "u", None, "block"),
    ]
    # v blocks u: the pair is already stored, so nothing is added; its time stays.
    block = {"edges": [{"src_user_id": "v", "dst_user_id": "u", "kind": "block", "timestamp": 900}]}
    assert client.post("/v1/edges", json=block, headers=W).json() == {"added": 0}
    assert stored_edges(client)[1] == ("v", "u", 200.0, "block")


def test_a_bad_kind_is_422_naming_the_field(client: TestClient) -> None:
    edges = {
        "edges": [
            {"src_user_id": "u", "dst_user_id": "v"},
            {"src_user_id": "u", "dst_user_id": "w", "kind": "mute"},
        ]
    }
    r = client.post("/v1/edges", json=edges, headers=W)
    assert r.status_code == 422
    assert r.json() == {
        "detail": "edges[1].kind: Input should be 'connect' or 'block'",
        "field": "edges[1].kind",
    }
    assert store_of(client).counts()["edges"] == 0


def test_delete_removes_pairs_whatever_their_kind(client: TestClient) -> None:
    edges = {
        "edges": [
            {"src_user_id": "u", "dst_user_id": "v"},
            {"src_user_id": "v", "dst_user_id": "u"},
            {"src_user_id": "w", "dst_user_id": "u", "kind": "block"},
        ]
    }
    client.post("/v1/edges", json=edges, headers=W)
    pairs = {
        "edges": [
            {"src_user_id": "w", "dst_user_id": "u"},  # unblock
            {"src_user_id": "u", "dst_user_id": "v"},
            {"src_user_id": "u", "dst_user_id": "nobody"},
        ]
    }
    r = client.request("DELETE", "/v1/edges", json=pairs, headers=W)
    assert (r.status_code, r.json()) == (200, {"removed": 2})
    assert stored_edges(client) == [("v", "u", None, "connect")]
    again = client.request("DELETE", "/v1/edges", json=pairs, headers=W)
    assert again.json() == {"removed": 0}


def test_delete_needs_the_write_key_and_pairs_only(client: TestClient) -> None:
    client.post("/v1/edges", json={"edges": [{"src_user_id": "u", "dst_user_id": "v"}]}, headers=W)
    pairs = {"edges": [{"src_user_id": "u", "dst_user_id": "v"}]}
    r = client.request("DELETE", "/v1/edges", json=pairs, headers=R)
    assert r.status_code == 403
    assert r.json() == {"detail": "this endpoint needs the write key", "field": None}
    with_kind = {"edges": [{"src_user_id": "u", "dst_user_id": "v", "kind": "block"}]}
    r = client.request("DELETE", "/v1/edges", json=with_kind, headers=W)
    assert r.status_code == 422
    assert r.json()["field"] == "edges[0].kind"
    r = client.request("DELETE", "/v1/edges", json={"edges": []}, headers=W)
    assert r.status_code == 422 and r.json()["field"] == "edges"
    assert store_of(client).counts()["edges"] == 1
