"""One router per resource; ``create_app`` includes them all.

Shared parameter types live here so that every route checks ids the same way.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from recfunnel.service.app import Services, get_services
from recfunnel.service.schemas import MAX_ID_LENGTH, ErrorBody

#: The app's services, as a route parameter.
ServicesDep = Annotated[Services, Depends(get_services)]
UserId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="A user id.")]
ItemId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="An item id.")]

#: Error answers every authenticated route may give (documented in the OpenAPI schema).
AUTH_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "Missing or invalid X-API-Key."},
    403: {"model": ErrorBody, "description": "The key may not use this endpoint."},
    422: {"model": ErrorBody, "description": "Invalid request; `field` names the culprit."},
}
WRITE_ERRORS: dict[int | str, dict[str, object]] = {
    **AUTH_ERRORS,
    400: {"model": ErrorBody, "description": "Malformed JSON."},
    413: {"model": ErrorBody, "description": "Body or batch over the documented limit."},
}
