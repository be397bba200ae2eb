"""Keys, limits and refusals: the right 4xx with a clear message, the store unchanged, and
the keys never in a log line or a response."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from service_helpers import READ_KEY, WRITE_KEY, R, TestClient, W, store_of

import recfunnel.service.security as security
from recfunnel.service import ServiceSettings

WRITE_ROUTES = [
    ("POST", "/v1/users", {"users": [{"user_id": "u"}]}),
    ("POST", "/v1/items", {"items": [{"item_id": "i"}]}),
    ("POST", "/v1/interactions", {"interactions": [{"user_id": "u", "item_id": "i"}]}),
    ("POST", "/v1/edges", {"edges": [{"src_user_id": "u", "dst_user_id": "v"}]}),
    ("GET", "/v1/users/u/interactions", None),
    ("DELETE", "/v1/users/u", None),
    ("POST", "/v1/admin/reload", None),
]
READ_ROUTES = [
    ("GET", "/v1/users/a/recommendations", None),
    ("GET", "/v1/items/x/similar", None),
    ("POST", "/v1/feedback", {"feedback": [{"request_id": "r", "user_id": "a", "item_id": "x",
                                            "event_type": "click"}]}),
]  # fmt: skip
EMPTY = {"interactions": 0, "users": 0, "items": 0, "edges": 0}


def _call(client: TestClient, method: str, path: str, body: object, headers: dict[str, str]):
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), WRITE_ROUTES + READ_ROUTES)
def test_missing_or_wrong_key_is_401_and_changes_nothing(
    client: TestClient, method: str, path: str, body: object
) -> None:
    for headers, detail in (
        ({}, "missing X-API-Key header"),
        ({"X-API-Key": "not-the-key"}, "invalid API key in X-API-Key"),
    ):
        r = _call(client, method, path, body, headers)
        assert r.status_code == 401
        assert r.json() == {"detail": detail, "field": None}
        assert r.headers["WWW-Authenticate"] == "ApiKey"
    assert store_of(client).counts() == EMPTY


@pytest.mark.parametrize(("method", "path", "body"), WRITE_ROUTES)
def test_read_key_cannot_write(client: TestClient, method: str, path: str, body: object) -> None:
    r = _call(client, method, path, body, R)
    assert r.status_code == 403
    assert r.json() == {"detail": "this endpoint needs the write key", "field": None}
    assert store_of(client).counts() == EMPTY


@pytest.mark.parametrize(("method", "path", "body"), READ_ROUTES)
def test_both_keys_may_read(client: TestClient, method: str, path: str, body: object) -> None:
    assert _call(client, method, path, body, R).status_code == 200
    assert _call(client, method, path, body, W).status_code == 200


def test_health_and_metrics_need_no_key(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_keys_are_compared_in_constant_time_both_every_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = security.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    client.get("/v1/users/a/recommendations", headers=W)
    assert len(calls) == 2  # the write key matched first, the read key was still compared
    assert {b for _, b in calls} == {WRITE_KEY.encode(), READ_KEY.encode()}


@pytest.mark.parametrize(
    ("body", "status", "detail", "field"),
    [
        (b'{"interactions": [{"user_id": "u"', 400, "malformed JSON", None),
        (b'{"interactions": [{"user_id": 7, "item_id": "i"}]}', 422,
         "interactions[0].user_id: Input should be a valid string", "interactions[0].user_id"),
        (b'{"interactions": [{"user_id": "u"}]}', 422,
         "interactions[0].item_id: Field required", "interactions[0].item_id"),
        (b'{"interactions": [{"user_id": "u", "item_id": "i", "rating": 5}]}', 422,
         "interactions[0].rating: Extra inputs are not permitted", "interactions[0].rating"),
        (b'{"interactions": [{"user_id": "u", "item_id": "i", "value": NaN}]}', 422,
         "interactions[0].value: Input should be a finite number", "interactions[0].value"),
        (b'{"interactions": [{"user_id": "u", "item_id": "i", "context": [1]}]}', 422,
         "interactions[0].context: Input should be a valid dictionary",
         "interactions[0].context"),
        (b'{"interactions": [{"user_id": "", "item_id": "i"}]}', 422,
         "interactions[0].user_id: String should have at least 1 character",
         "interactions[0].user_id"),
        (b'{"events": []}', 422, "interactions: Field required", "interactions"),
        (b"[]", 422, "the request body must be a JSON object", None),
    ],
)  # fmt: skip
def test_bad_bodies_name_the_field_and_write_nothing(
    client: TestClient, body: bytes, status: int, detail: str, field: str | None
) -> None:
    r = client.post(
        "/v1/interactions", content=body, headers={**W, "Content-Type": "application/json"}
    )
    assert r.status_code == status
    assert r.json()["detail"].startswith(detail)
    assert r.json()["field"] == field
    assert store_of(client).counts() == EMPTY


def test_oversized_batch_is_413(client: TestClient) -> None:
    rows = [{"user_id": "u", "item_id": f"i{k}"} for k in range(1001)]
    r = client.post("/v1/interactions", json={"interactions": rows}, headers=W)
    assert r.status_code == 413
    assert r.json() == {
        "detail": "interactions: at most 1000 rows per request; split the batch",
        "field": "interactions",
    }
    assert store_of(client).counts() == EMPTY


def test_oversized_body_is_413_declared_or_streamed(
    make_client: Callable[..., TestClient], registry: Path
) -> None:
    client = make_client(registry, max_body_bytes=2048)
    rows = [{"user_id": "u", "item_id": f"item-{k:04d}"} for k in range(100)]
    r = client.post("/v1/interactions", json={"interactions": rows}, headers=W)
    assert r.status_code == 413
    assert r.json() == {"detail": "request body over 2048 bytes", "field": None}

    def chunks():  # no Content-Length: the limit holds on the streamed bytes
        yield b'{"interactions": ['
        for _ in range(100):
            yield b'{"user_id": "u", "item_id": "i"},'
        yield b'{"user_id": "u", "item_id": "i"}]}'

    r = client.post("/v1/interactions", content=chunks(), headers=W)
    assert r.status_code == 413
    assert store_of(client).counts()["interactions"] == 0
    small = client.post(
        "/v1/interactions", json={"interactions": rows[:2]}, headers=W
    )  # under the limit: accepted
    assert small.status_code == 200


def test_unknown_route_and_method(client: TestClient) -> None:
    assert client.get("/v1/nothing", headers=W).json() == {"detail": "Not Found", "field": None}
    assert client.put("/v1/interactions", headers=W).status_code == 405


def test_keys_never_appear_in_logs_or_answers(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = []
    for headers in (W, R, {"X-API-Key": WRITE_KEY + "x"}, {"X-API-Key": READ_KEY[:-1]}):
        answers.append(client.get("/v1/users/a/recommendations", headers=headers).text)
        answers.append(client.post("/v1/interactions", content=b"{", headers=headers).text)
        answers.append(client.delete("/v1/users/zz", headers=headers).text)
    answers.append(client.get("/metrics").text)
    text = caplog.text + "".join(answers)
    assert WRITE_KEY not in text and READ_KEY not in text
    assert READ_KEY[:-1] not in text
    settings = client.app.state.services.settings  # type: ignore[attr-defined]
    assert WRITE_KEY not in repr(settings) and READ_KEY not in repr(settings)
    assert WRITE_KEY not in repr(client.app.state.keys)  # type: ignore[attr-defined]


def test_settings_fail_fast() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        ServiceSettings(store_url="sqlite://", write_key="short", read_key=READ_KEY)
    with pytest.raises(ValueError, match="must differ"):
        ServiceSettings(store_url="sqlite://", write_key=WRITE_KEY, read_key=WRITE_KEY)
    with pytest.raises(ValueError, match="RECFUNNEL_READ_KEY"):
        ServiceSettings.from_environment({"RECFUNNEL_WRITE_KEY": WRITE_KEY}, store_url="sqlite://")
    with pytest.raises(ValueError, match="max_body_bytes"):
        ServiceSettings(
            store_url="sqlite://", write_key=WRITE_KEY, read_key=READ_KEY, max_body_bytes=-1
        )


def test_the_service_never_unpickles_or_evaluates() -> None:
    root = Path(security.__file__).parent
    for path in [*root.rglob("*.py")]:
        source = path.read_text()
        for banned in ("pickle", "eval(", "exec(", "allow_pickle=True", "yaml.load("):
            assert banned not in source, f"{path.name} uses {banned}"
