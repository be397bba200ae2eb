"""API keys and request size limits.

Two keys, sent in the ``X-API-Key`` header: the **write key** ingests and administers (and
may read everything); the **read key** gets recommendations and similar items and sends
feedback (the client that shows recommendations reports what the user did with them).
Keys are compared in constant time (``hmac.compare_digest``) and never logged, echoed or put
in error messages. Missing key: 401; a read key on a write endpoint: 403.

Bodies are read up to ``max_body_bytes`` by :class:`BodyLimit` before anything parses them;
a larger body (declared or streamed) is answered 413 without reaching the app.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from enum import Enum
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEADER = "X-API-Key"
_header = APIKeyHeader(name=HEADER, auto_error=False, description="The read or write API key.")


class Role(Enum):
    READ = "read"
    WRITE = "write"


class APIKeys:
    """The two keys, as bytes, and the check.

    >>> keys = APIKeys(write="w" * 16, read="r" * 16)
    >>> keys.role_of("r" * 16), keys.role_of("nope"), keys.role_of(None)
    (<Role.READ: 'read'>, None, None)
    >>> keys
    APIKeys(write=***, read=***)
    """

    def __init__(self, *, write: str, read: str) -> None:
        self._write = write.encode("utf-8")
        self._read = read.encode("utf-8")

    def __repr__(self) -> str:
        return "APIKeys(write=***, read=***)"

    def role_of(self, key: str | None) -> Role | None:
        """The role ``key`` grants, or None. Both keys are always compared, so the time
        taken does not depend on which one (or whether one) matched."""
        if key is None:
            return None
        given = key.encode("utf-8", "surrogateescape")
        is_write = hmac.compare_digest(given, self._write)
        is_read = hmac.compare_digest(given, self._read)
        return Role.WRITE if is_write else Role.READ if is_read else None


def _require(needed: Role) -> Callable[..., Awaitable[Role]]:
    async def check(request: Request, key: str | None = Depends(_header)) -> Role:
        keys: APIKeys = request.app.state.keys
        role = keys.role_of(key)
        if role is None:
            detail = f"missing {HEADER} header" if key is None else f"invalid API key in {HEADER}"
            raise HTTPException(401, detail, headers={"WWW-Authenticate": "ApiKey"})
        if needed is Role.WRITE and role is not Role.WRITE:
            raise HTTPException(403, "this endpoint needs the write key")
        return role

    return check


#: Dependencies for routes: ``dependencies=[Depends(require_read)]``.
require_read = _require(Role.READ)
require_write = _require(Role.WRITE)


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413.

    The body is buffered (it is at most ``max_bytes``) and replayed to the app, so the app
    never sees a partial body and a slow client cannot stream an unbounded one.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        payload = json.dumps(
            {"detail": f"request body over {self.max_bytes} bytes", "field": None}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
