"""``/v1/users/{id}/recommendations`` and ``/v1/items/{id}/similar``: ranked lists with a
request id (for feedback attribution) and the model version that produced them."""

from __future__ import annotations

import json
import logging
import math
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from recfunnel.core.errors import DataError
from recfunnel.service.app import Services
from recfunnel.service.errors import ServiceUnavailable
from recfunnel.service.recommender import Recommender, Scored
from recfunnel.service.routers import AUTH_ERRORS, ItemId, ServicesDep, UserId
from recfunnel.service.schemas import (
    MAX_ID_LENGTH,
    MAX_N,
    ErrorBody,
    Recommendations,
)
from recfunnel.service.security import require_read

log = logging.getLogger("recfunnel.service")
router = APIRouter(prefix="/v1", tags=["recommendations"], dependencies=[Depends(require_read)])
RESPONSES: dict[int | str, dict[str, object]] = {
    **AUTH_ERRORS,
    503: {"model": ErrorBody, "description": "No model version published yet."},
}
N = Annotated[int, Query(ge=1, le=MAX_N, description=f"How many items (1 to {MAX_N}).")]


def _served(services: ServicesDep) -> Recommender:
    current = services.models.current  # read once: this request uses this version throughout
    if current is None:
        raise ServiceUnavailable(
            "no model is being served: publish one (recfunnel train --output REGISTRY) "
            "and wait for the reload, or POST /v1/admin/reload"
        )
    return current


def _context(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition(":")
        if not sep or not key:
            raise DataError(f"expected KEY:VALUE, got {pair[:80]!r}", field="context")
        out[key] = value
    return out


@router.get("/users/{user_id}/recommendations", responses=RESPONSES, response_model=Recommendations)
async def recommend(
    user_id: UserId,
    services: ServicesDep,
    n: N = 10,
    exclude: Annotated[
        list[Annotated[str, Query(max_length=MAX_ID_LENGTH)]],
        Query(max_length=1000, description="Item ids never to return (repeatable)."),
    ] = [],  # noqa: B006 - FastAPI copies defaults per request
    context: Annotated[
        list[Annotated[str, Query(max_length=200)]],
        Query(max_length=32, description="Request context as KEY:VALUE (repeatable)."),
    ] = [],  # noqa: B006
) -> Response:
    """The top ``n`` items for a user, leaving out what they already interacted with. A user
    the model does not know gets the cold-start fallback (not an error)."""
    # Run on the event loop, not in the thread pool: the pass is CPU-bound Python (threads
    # only take turns on the GIL), and a sync route costs FastAPI two thread hand-offs (the
    # route and its response check), about 0.3 ms of a ~4 ms request. A server has one
    # process per core for parallelism (serve --workers).
    rec = _served(services)
    ctx = _context(context)
    # Writes and user deletions made through any worker are in force here too (one read).
    services.changes.follow()
    history: list[str] = []
    limit = services.settings.history_limit
    if limit:
        with services.metrics.stage("history"):
            page = services.store.user_interactions(user_id, limit=limit)
        history = [r.item_id for r in page.rows]
    request_id = uuid.uuid4().hex
    (lst,) = rec.recommend(
        [user_id], n, context=ctx, exclude=[exclude], history=[history], request_ids=[request_id]
    )
    _remember(services, request_id, user_id, rec.version)
    return _json_answer(request_id, rec.version, lst)


def _json_answer(request_id: str, version: str, lst: Scored) -> Response:
    """The :class:`Recommendations` body written directly: built from plain strings and
    floats, it needs no model validation (about 0.2 ms per request). Non-finite scores are
    ``null``, as pydantic writes them.

    >>> _json_answer("r1", "v1", [("a", 0.5), ("b", float("-inf"))]).body
    b'{"request_id":"r1","model_version":"v1","items":[{"item_id":"a","score":0.5},{"item_id":"b","score":null}]}'
    """
    body = {
        "request_id": request_id,
        "model_version": version,
        "items": [{"item_id": i, "score": s if math.isfinite(s) else None} for i, s in lst],
    }
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
        media_type="application/json",
        headers={"X-Request-ID": request_id},
    )


def _remember(services: Services, request_id: str, user_id: str, version: str) -> None:
    """Record the served request in the store, where every worker finds it when feedback
    about it arrives. Best effort: the list is served even if the store refuses."""
    keep = services.settings.request_log_size
    if not keep:
        return
    try:
        services.store.record_requests([(request_id, user_id, version)], keep=keep)
    except Exception as exc:  # any backend's error: attribution degrades, serving does not
        log.warning("served request %s not recorded (no feedback attribution): %r", request_id, exc)


@router.get(
    "/items/{item_id}/similar",
    responses={**RESPONSES, 404: {"model": ErrorBody}},
    response_model=Recommendations,
)
def similar(item_id: ItemId, services: ServicesDep, n: N = 10) -> Response:
    """The ``n`` items most like ``item_id`` (404 when the model does not know the item)."""
    rec = _served(services)
    services.changes.follow()  # items posted through another worker are known here too
    (lst,) = rec.similar_items([item_id], n)
    return _json_answer(uuid.uuid4().hex, rec.version, lst)
