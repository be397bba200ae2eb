"""The HTTP service: a FastAPI app over the event store and the served model.

``create_app(ServiceSettings(...))`` builds an app (no import-time state); ``recfunnel
serve`` runs one with uvicorn. See :mod:`recfunnel.service.app` for the endpoints.
"""

from __future__ import annotations

from recfunnel.service.app import create_app
from recfunnel.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
