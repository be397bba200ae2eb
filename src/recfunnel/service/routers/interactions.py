"""``/v1/interactions``: append events, idempotently by ``event_id``."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from recfunnel.service.routers import WRITE_ERRORS, ServicesDep
from recfunnel.service.schemas import MAX_BATCH, IngestResponse, InteractionBatch
from recfunnel.service.security import require_write

router = APIRouter(prefix="/v1/interactions", tags=["interactions"])


@router.post(
    "",
    responses=WRITE_ERRORS,
    dependencies=[Depends(require_write)],
    description=(
        f"Append 1 to {MAX_BATCH} events in one transaction. The answer comes after the "
        "commit is durable, so an acknowledged batch survives a crash. Rows carrying an "
        "`event_id` already stored are counted in `already_present` and not written again: "
        "send your own ids (or reuse the returned `event_ids`) to make retries safe."
    ),
)
def add_interactions(batch: InteractionBatch, services: ServicesDep) -> IngestResponse:
    with services.metrics.stage("ingest"):
        result = services.store.add_interactions([i.to_row() for i in batch.interactions])
    services.metrics.events.labels("accepted").inc(result.accepted)
    services.metrics.events.labels("already_present").inc(result.duplicates)
    return IngestResponse(
        accepted=result.accepted, already_present=result.duplicates, event_ids=result.event_ids
    )
