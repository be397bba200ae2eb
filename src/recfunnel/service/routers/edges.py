"""``/v1/edges``: add and remove directed social edges (friend requests, follows, blocks)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from recfunnel.service.routers import WRITE_ERRORS, ServicesDep
from recfunnel.service.schemas import EdgeBatch, EdgeRefBatch, EdgesAdded, EdgesRemoved
from recfunnel.service.security import require_write

router = APIRouter(prefix="/v1/edges", tags=["edges"], dependencies=[Depends(require_write)])


@router.post("", responses=WRITE_ERRORS)
def add_edges(batch: EdgeBatch, services: ServicesDep) -> EdgesAdded:
    """Add edges. A pair already stored keeps its timestamp and takes the new ``kind`` (a
    ``block`` replaces a ``connect`` and the reverse); only pairs not stored before count."""
    rows = [e.to_row() for e in batch.edges]
    added = services.store.add_edges(rows)  # durable first, then the live graph
    services.changes.follow()  # in log order, as every other worker applies it
    return EdgesAdded(added=added)


@router.delete("", responses=WRITE_ERRORS)
def remove_edges(batch: EdgeRefBatch, services: ServicesDep) -> EdgesRemoved:
    """Remove edges by their ``(src_user_id, dst_user_id)`` pair, whatever their kind
    (withdrawing a request, unfriending one side, unblocking). Idempotent: a pair that is not
    stored is skipped and not counted."""
    rows = [e.to_row() for e in batch.edges]
    removed = services.store.remove_edges(rows)
    services.changes.follow()
    return EdgesRemoved(removed=removed)
