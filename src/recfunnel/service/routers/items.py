"""``/v1/items``: upsert items (and embed them into a two-tower model at once)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends

from recfunnel.service.routers import WRITE_ERRORS, ServicesDep
from recfunnel.service.schemas import ItemBatch, ItemsWritten
from recfunnel.service.security import require_write

log = logging.getLogger("recfunnel.service")
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
        try:
            indexed = current.add_items(rows)
        except (ValueError, KeyError) as exc:  # stored anyway; embedding is best effort
            log.warning("items stored but not embedded into %s: %s", current.version, exc)
    return ItemsWritten(written=written, indexed=indexed)
