"""Recommendations, similar items, cold start, feedback attribution, metrics: known answers
on the popularity model of ``service_helpers`` (x 3 users, y 2, z 1; a saw x, y, z; b saw
x, y; c saw x)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from service_helpers import READ_KEY, R, TestClient, W, store_of

from recfunnel.candidates import make_generator
from recfunnel.core.matrix import InteractionMatrix
from recfunnel.service.registry import publish_model


def _items(body: dict) -> list[str]:
    return [row["item_id"] for row in body["items"]]


def test_known_user_gets_unseen_items_by_popularity(client: TestClient) -> None:
    r = client.get("/v1/users/c/recommendations?n=5", headers=R)
    assert r.status_code == 200
    body = r.json()
    assert body["model_version"] == "v1"
    assert body["items"] == [{"item_id": "y", "score": 2.0}, {"item_id": "z", "score": 1.0}]
    assert len(body["request_id"]) == 32 and r.headers["X-Request-ID"] == body["request_id"]
    assert client.get("/v1/users/c/recommendations?n=1", headers=R).json()["items"] == [
        {"item_id": "y", "score": 2.0}
    ]


def test_unknown_user_gets_the_fallback_not_an_error(client: TestClient) -> None:
    r = client.get("/v1/users/stranger/recommendations?n=2", headers=R)
    assert r.status_code == 200
    assert _items(r.json()) == ["x", "y"]


def test_stored_history_and_exclude_are_left_out(client: TestClient) -> None:
    # A new user's first event (after training) is excluded, and so is ?exclude=.
    client.post(
        "/v1/interactions",
        json={"interactions": [{"user_id": "newbie", "item_id": "x"}]},
        headers=W,
    )
    r = client.get("/v1/users/newbie/recommendations?n=3&exclude=y", headers=R)
    assert _items(r.json()) == ["z"]
    # The same for a user the model knows: b saw x, y in training, z since.
    client.post(
        "/v1/interactions", json={"interactions": [{"user_id": "b", "item_id": "z"}]}, headers=W
    )
    assert client.get("/v1/users/b/recommendations", headers=R).json()["items"] == []


def test_context_is_validated(client: TestClient) -> None:
    ok = client.get("/v1/users/c/recommendations?context=device:mobile&context=ab:b", headers=R)
    assert ok.status_code == 200
    bad = client.get("/v1/users/c/recommendations?context=mobile", headers=R)
    assert bad.status_code == 422
    assert bad.json() == {
        "detail": "field context: expected KEY:VALUE, got 'mobile'",
        "field": "context",
    }


@pytest.mark.parametrize(
    ("query", "field"),
    [("n=0", "n"), ("n=201", "n"), ("n=ten", "n")],
)
def test_n_out_of_range_is_422_naming_n(client: TestClient, query: str, field: str) -> None:
    r = client.get(f"/v1/users/c/recommendations?{query}", headers=R)
    assert r.status_code == 422
    assert r.json()["field"] == field and r.json()["detail"].startswith("n: ")


def test_similar_items_and_unknown_item(client: TestClient) -> None:
    r = client.get("/v1/items/x/similar?n=2", headers=R)
    assert r.status_code == 200
    assert _items(r.json()) == ["y", "z"] and r.json()["model_version"] == "v1"
    missing = client.get("/v1/items/nothing/similar", headers=R)
    assert missing.status_code == 404
    assert "nothing" in missing.json()["detail"]


def test_no_model_is_503_with_a_hint(make_client: Callable[..., TestClient]) -> None:
    r = make_client(None).get("/v1/users/a/recommendations", headers=R)
    assert r.status_code == 503
    assert "publish one" in r.json()["detail"]


def test_feedback_is_attributed_and_idempotent(client: TestClient) -> None:
    served = client.get("/v1/users/c/recommendations", headers=R).json()
    report = {
        "feedback": [
            {"request_id": served["request_id"], "user_id": "c", "item_id": "y",
             "event_type": "impression", "position": 0},
            {"request_id": served["request_id"], "user_id": "c", "item_id": "y",
             "event_type": "click", "position": 0},
        ]
    }  # fmt: skip
    first = client.post("/v1/feedback", json=report, headers={"X-API-Key": READ_KEY})
    assert first.status_code == 200 and first.json()["accepted"] == 2
    again = client.post("/v1/feedback", json=report, headers=R).json()
    assert (again["accepted"], again["already_present"]) == (0, 2)
    rows = client.get("/v1/users/c/interactions", headers=W).json()["interactions"]
    assert [r["event_type"] for r in rows] == ["impression", "click"]
    assert rows[1]["context"] == {
        "request_id": served["request_id"],
        "position": 0,
        "model_version": "v1",
    }
    bad = client.post(
        "/v1/feedback",
        json={"feedback": [{"request_id": "r", "user_id": "c", "item_id": "y",
                            "event_type": "like"}]},
        headers=R,
    )  # fmt: skip
    assert bad.status_code == 422 and bad.json()["field"] == "feedback[0].event_type"


def test_deleting_a_user_drops_them_from_the_served_model(client: TestClient) -> None:
    # a saw x, y, z: known to the model, nothing left to recommend.
    assert client.get("/v1/users/a/recommendations", headers=R).json()["items"] == []
    served = client.get("/v1/users/a/recommendations", headers=R).json()["request_id"]
    assert client.delete("/v1/users/a", headers=W).status_code == 200
    # The model's memory of a is no longer used: a is served as a stranger.
    assert _items(client.get("/v1/users/a/recommendations", headers=R).json()) == ["x", "y", "z"]
    services = client.app.state.services  # type: ignore[attr-defined]
    assert services.store.served_requests([served]) == {}
    assert "a" in services.forgotten


def test_metrics_report_requests_stages_and_model(client: TestClient) -> None:
    client.get("/v1/users/c/recommendations", headers=R)
    client.get("/v1/users/stranger/recommendations", headers=R)
    text = client.get("/metrics").text
    assert 'recfunnel_model_info{model="pop",version="v1"} 1.0' in text
    assert (
        'recfunnel_http_requests_total{method="GET",'
        'route="/v1/users/{user_id}/recommendations",status="200"} 2.0'
    ) in text
    assert 'recfunnel_stage_duration_seconds_count{stage="retrieve"} 1.0' in text
    assert 'recfunnel_stage_duration_seconds_count{stage="fallback"} 1.0' in text
    assert 'recfunnel_stage_duration_seconds_count{stage="history"} 2.0' in text
    assert "recfunnel_http_request_duration_seconds_bucket" in text
    assert client.get("/health").json() == {
        "status": "ok",
        "model_version": "v1",
        "worker": os.getpid(),
    }


def test_two_tower_embeds_new_items_without_retraining(
    tmp_path: Path, make_client: Callable[..., TestClient]
) -> None:
    users = [f"u{i}" for i in range(8) for _ in range(3)]
    items = [f"{'j' if i % 2 else 'r'}{(i + k) % 4}" for i in range(8) for k in range(3)]
    matrix = InteractionMatrix.from_arrays(users, items)
    features = pd.DataFrame(
        {"item_id": [f"{g}{k}" for g in "jr" for k in range(4)],
         "genre": ["jazz"] * 4 + ["rock"] * 4}
    )  # fmt: skip
    model = make_generator("two_tower", dim=8, hidden=0, min_steps=30, epochs=2)
    model.fit(matrix, item_features=features)
    root = tmp_path / "tt-registry"
    publish_model(model.save(tmp_path / "tt"), root, version="tt1")
    client = make_client(root)
    r = client.post(
        "/v1/items",
        json={"items": [{"item_id": "j-new", "attributes": {"genre": "jazz"}},
                        {"item_id": "bare"}]},
        headers=W,
    )  # fmt: skip
    assert r.json() == {"written": 2, "indexed": 1}
    recs = client.get("/v1/users/u1/recommendations?n=20", headers=R).json()
    assert "j-new" in _items(recs) and "bare" not in _items(recs)
    assert client.get("/v1/items/j-new/similar?n=3", headers=R).status_code == 200
    # A new user with one stored event is embedded from it (cold start), not an error.
    client.post(
        "/v1/interactions", json={"interactions": [{"user_id": "fresh", "item_id": "j1"}]},
        headers=W,
    )  # fmt: skip
    fresh = client.get("/v1/users/fresh/recommendations?n=20", headers=R).json()
    assert "j1" not in _items(fresh) and "j-new" in _items(fresh)
    assert store_of(client).counts()["items"] == 2
