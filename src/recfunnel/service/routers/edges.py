"""``/v1/edges``: add directed social edges (who follows whom)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from recfunnel.service.routers import WRITE_ERRORS, ServicesDep
from recfunnel.service.schemas import EdgeBatch, EdgesAdded
from recfunnel.service.security import require_write

router = APIRouter(prefix="/v1/edges", tags=["edges"])


@router.post("", responses=WRITE_ERRORS, dependencies=[Depends(require_write)])
def add_edges(batch: EdgeBatch, services: ServicesDep) -> EdgesAdded:
    """Add edges; an edge already present keeps its timestamp and is not counted."""
    return EdgesAdded(added=services.store.add_edges([e.to_row() for e in batch.edges]))
