"""Operations: ``GET /health``, ``GET /metrics`` (no key) and ``POST /v1/admin/reload``."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from recfunnel.service.routers import AUTH_ERRORS, ServicesDep
from recfunnel.service.schemas import Health, Reloaded
from recfunnel.service.security import require_write

router = APIRouter(tags=["operations"])


@router.get("/health")
def health(services: ServicesDep) -> Health:
    """Liveness, the served model version (null before the first publish) and the process
    id of the worker that answered."""
    current = services.models.current
    return Health(
        status="ok",
        model_version=None if current is None else current.version,
        worker=os.getpid(),
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
def metrics(services: ServicesDep) -> Response:
    """Prometheus text format: request counts, latency histograms, stage timings, the model
    version served; with several workers, every worker's counts added up."""
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.post("/v1/admin/reload", responses=AUTH_ERRORS, dependencies=[Depends(require_write)])
def reload(services: ServicesDep) -> Reloaded:
    """Swap to the registry's current version now (the poller does it within
    ``poll_seconds`` anyway). Requests in flight finish on the version they started with.
    With several workers this reaches the worker that answers; the others' pollers follow."""
    swapped = services.models.reload()
    current = services.models.current
    return Reloaded(model_version=None if current is None else current.version, swapped=swapped)
