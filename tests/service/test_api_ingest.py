"""Ingestion endpoints: wire format, idempotency, pagination, deletion; status and body."""

from __future__ import annotations

from fastapi.testclient import TestClient
from service_helpers import W, store_of


def test_interactions_accepted_then_already_present(client: TestClient) -> None:
    batch = {
        "interactions": [
            {"event_id": "e1", "user_id": "u1", "item_id": "x", "event_type": "click"},
            {"event_id": "e2", "user_id": "u1", "item_id": "y", "value": 4.5,
             "timestamp": "2024-05-01T12:00:00Z", "context": {"device": "mobile"}},
            {"user_id": "u1", "item_id": "z", "timestamp": 1714564800},
        ]
    }  # fmt: skip
    first = client.post("/v1/interactions", json=batch, headers=W)
    assert first.status_code == 200
    body = first.json()
    assert (body["accepted"], body["already_present"]) == (3, 0)
    assert body["event_ids"][:2] == ["e1", "e2"] and len(body["event_ids"]) == 3
    # A retry with the returned ids writes nothing again.
    retry = [
        dict(r, event_id=i) for r, i in zip(batch["interactions"], body["event_ids"], strict=True)
    ]
    again = client.post("/v1/interactions", json={"interactions": retry}, headers=W)
    assert again.json() == {"accepted": 0, "already_present": 3, "event_ids": body["event_ids"]}
    assert store_of(client).counts()["interactions"] == 3


def test_history_is_paginated_in_arrival_order(client: TestClient) -> None:
    rows = [{"event_id": f"e{i}", "user_id": "u", "item_id": f"i{i}"} for i in range(5)]
    rows.insert(2, {"event_id": "other", "user_id": "v", "item_id": "x"})
    client.post("/v1/interactions", json={"interactions": rows}, headers=W)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/users/u/interactions", params=params, headers=W)
        assert page.status_code == 200
        body = page.json()
        seen += [r["event_id"] for r in body["interactions"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == [f"e{i}" for i in range(5)] and pages == 3
    first = client.get("/v1/users/u/interactions?limit=1", headers=W).json()["interactions"][0]
    assert first == {
        "event_id": "e0", "user_id": "u", "item_id": "i0", "event_type": "interaction",
        "value": 1.0, "timestamp": None, "context": {},
    }  # fmt: skip
    assert client.get("/v1/users/nobody/interactions", headers=W).json() == {
        "interactions": [],
        "next": None,
    }


def test_timestamps_are_epoch_seconds_on_the_way_out(client: TestClient) -> None:
    client.post(
        "/v1/interactions",
        json={"interactions": [{"user_id": "u", "item_id": "x", "timestamp": "1970-01-02T00:00Z"}]},
        headers=W,
    )
    row = client.get("/v1/users/u/interactions", headers=W).json()["interactions"][0]
    assert row["timestamp"] == 86400.0


def test_users_items_edges_and_delete(client: TestClient) -> None:
    users = {"users": [{"user_id": "u", "attributes": {"country": "PT"}}, {"user_id": "v"}]}
    assert client.post("/v1/users", json=users, headers=W).json() == {"written": 2}
    items = {"items": [{"item_id": "new", "attributes": {"genre": "jazz"},
                        "created_at": "2024-01-01T00:00:00Z", "expires_at": 2e9}]}  # fmt: skip
    # Popularity cannot embed new items: stored, not indexed.
    assert client.post("/v1/items", json=items, headers=W).json() == {"written": 1, "indexed": 0}
    edges = {
        "edges": [
            {"src_user_id": "u", "dst_user_id": "v"},
            {"src_user_id": "v", "dst_user_id": "u"},
        ]
    }
    assert client.post("/v1/edges", json=edges, headers=W).json() == {"added": 2}
    assert client.post("/v1/edges", json=edges, headers=W).json() == {"added": 0}
    client.post(
        "/v1/interactions", json={"interactions": [{"user_id": "u", "item_id": "x"}]}, headers=W
    )
    gone = client.delete("/v1/users/u", headers=W)
    assert gone.status_code == 200
    assert gone.json() == {
        "user_id": "u",
        "removed": {"interactions": 1, "edges": 2, "users": 1},
    }
    assert store_of(client).counts() == {"interactions": 0, "users": 1, "items": 1, "edges": 0}
    again = client.delete("/v1/users/u", headers=W).json()
    assert again["removed"] == {"interactions": 0, "edges": 0, "users": 0}


def test_a_bad_row_rejects_the_whole_batch(client: TestClient) -> None:
    rows = [{"user_id": "u", "item_id": "x"}, {"user_id": "u", "item_id": "y", "value": "5"}]
    r = client.post("/v1/interactions", json={"interactions": rows}, headers=W)
    assert r.status_code == 422
    assert r.json() == {
        "detail": "interactions[1].value: Input should be a valid number",
        "field": "interactions[1].value",
    }
    assert store_of(client).counts()["interactions"] == 0


def test_edge_to_self_is_refused_by_the_store_with_the_field(client: TestClient) -> None:
    r = client.post(
        "/v1/edges", json={"edges": [{"src_user_id": "u", "dst_user_id": "u"}]}, headers=W
    )
    assert r.status_code == 422
    assert r.json()["field"] == "dst_user_id"
    assert "cannot follow themselves" in r.json()["detail"]
