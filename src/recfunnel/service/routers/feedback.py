"""``/v1/feedback``: impressions, clicks, … of recommended items, attributed by request id."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Depends

from recfunnel.service.routers import WRITE_ERRORS, ServicesDep
from recfunnel.service.schemas import FeedbackBatch, FeedbackIn, IngestResponse
from recfunnel.service.security import require_read

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])


def feedback_event_id(f: FeedbackIn) -> str:
    """The event id of a report sent without one: the same (request, user, item, type) is
    one event, so a retried report is not counted twice.

    >>> feedback_event_id(FeedbackIn(request_id="r", user_id="u", item_id="i",
    ...                              event_type="click"))
    'fb-295f598485c17b6ccc462d3bd431f106'
    """
    key = "\x1f".join((f.request_id, f.user_id, f.item_id, f.event_type)).encode()
    return "fb-" + hashlib.blake2b(key, digest_size=16).hexdigest()


@router.post("", responses=WRITE_ERRORS, dependencies=[Depends(require_read)])
def add_feedback(batch: FeedbackBatch, services: ServicesDep) -> IngestResponse:
    """Store feedback as events (``event_type`` impression / click / conversion / dismiss)
    whose ``context`` holds the ``request_id``, the ``position`` and, when this server (any
    of its workers) answered the request for that user recently, the ``model_version`` that
    produced the list."""
    rows: list[dict[str, Any]] = []
    served = services.store.served_requests({f.request_id for f in batch.feedback})
    for f in batch.feedback:
        context: dict[str, Any] = {"request_id": f.request_id}
        if f.position is not None:
            context["position"] = f.position
        request = served.get(f.request_id)
        if request is not None and request.user_id == f.user_id:
            context["model_version"] = request.model_version
        row: dict[str, Any] = {
            "event_id": f.event_id or feedback_event_id(f),
            "user_id": f.user_id,
            "item_id": f.item_id,
            "event_type": f.event_type,
            "context": context,
        }
        if f.timestamp is not None:
            row["timestamp"] = f.timestamp
        rows.append(row)
    result = services.store.add_interactions(rows)
    services.metrics.events.labels("accepted").inc(result.accepted)
    services.metrics.events.labels("already_present").inc(result.duplicates)
    return IngestResponse(
        accepted=result.accepted, already_present=result.duplicates, event_ids=result.event_ids
    )
