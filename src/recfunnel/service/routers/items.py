"""``/v1/items``: upsert items (and embed them into a two-tower model at once)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from recfunnel.service.app import embed_items
from recfunnel.service.routers import WRITE_ERRORS, ServicesDep
from recfunnel.service.schemas import ItemBatch, ItemsWritten
from recfunnel.service.security import require_write

router = APIRouter(prefix="/v1/items", tags=["items"])


@router.post("", responses=WRITE_ERRORS, dependencies=[Depends(require_write)])
def upsert_items(batch: ItemBatch, services: ServicesDep) -> ItemsWritten:
    """Insert or replace items. When the served model is a two-tower model trained with item
    features, items with attributes are embedded and recommendable immediately (``indexed``);
    otherwise they enter recommendations after a training that sees interactions with them."""
    rows = [it.to_row() for it in batch.items]
    written = services.store.upsert_items(rows)  # durable first; the model is a cache
    indexed = 0
    current = services.models.current
    if current is not None and current.accepts_new_items:
        # Here at once, for the count; following the log then skips them (the other workers
        # embed them from the log).
        indexed = embed_items(current, rows)
    services.changes.follow()
    return ItemsWritten(written=written, indexed=indexed)
