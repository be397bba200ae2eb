"""Domain errors → HTTP answers. The only place that knows status codes for our exceptions.

Every error answer has the body ``{"detail": message, "field": field or null}`` (see
:class:`~recfunnel.service.schemas.ErrorBody`):

===================================================  ======  ================================
raised                                               status  when
===================================================  ======  ================================
request body is not JSON                             400     malformed JSON
``RequestValidationError`` (pydantic)                422     wrong type, missing field, …
… a batch longer than ``MAX_BATCH``                  413     oversized batch
``DataError``                                        422     the store refused a row
``ConfigError``                                      422     a bad parameter value
``UnknownIdError``                                   404     unknown item / user
``NotFittedError`` / ``ArtifactError``               503     no model loaded / unreadable
``ServiceUnavailable``                               503     (same, raised by the service)
``HTTPException`` (auth, 404 routes, 405, …)         as is
anything else                                        500     logged with its traceback
===================================================  ======  ================================
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from recfunnel.core.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    DatasetUnavailableError,
    NotFittedError,
    RecfunnelError,
    UnknownIdError,
)
from recfunnel.service.schemas import MAX_BATCH, field_path

log = logging.getLogger("recfunnel.service")

#: Domain error class → HTTP status, most specific first.
STATUS: tuple[tuple[type[Exception], int], ...] = (
    (UnknownIdError, 404),
    (DataError, 422),
    (ConfigError, 422),
    (NotFittedError, 503),
    (ArtifactError, 503),
    (DatasetUnavailableError, 503),
)

#: The top-level batch fields; a list over ``MAX_BATCH`` there is "payload too large".
BATCH_FIELDS = frozenset(("interactions", "users", "items", "edges", "feedback"))


class ServiceUnavailable(RecfunnelError, RuntimeError):
    """The service cannot answer now (no model published yet, store closed)."""


def status_of(exc: Exception) -> int:
    """The HTTP status for a domain error (500 for anything unexpected).

    >>> status_of(UnknownIdError("item 'x' is not in the model"))
    404
    >>> status_of(DataError("bad", field="value"))
    422
    """
    if isinstance(exc, ServiceUnavailable):
        return 503
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(status: int, detail: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": field}, status_code=status)


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    status = status_of(exc)
    field = getattr(exc, "field", None)
    if status == 500:  # not ours on purpose: keep the traceback, answer without details
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal error; see the server log")
    return error_response(status, str(exc), field if isinstance(field, str) else None)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: list[dict[str, Any]] = list(exc.errors())
    if not errors:
        return error_response(422, "invalid request")
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        where = first.get("ctx", {}).get("error", "")
        return error_response(400, f"malformed JSON in the request body: {where}".rstrip(": "))
    if first.get("type") == "too_long" and len(loc) == 2 and loc[1] in BATCH_FIELDS:
        return error_response(
            413,
            f"{loc[1]}: at most {MAX_BATCH} rows per request; split the batch",
            str(loc[1]),
        )
    # Union branches report the same field several times; prefer the one that is not
    # "wrong type for this branch".
    wrong_type = ("float_type", "string_type", "int_type", "dict_type", "literal_error")
    best = next((e for e in errors if e.get("type") not in wrong_type), first)
    field = field_path(tuple(best.get("loc", ())))
    where = "request body" if not field else field
    if best.get("type") == "missing" and not field:
        return error_response(422, "the request body is required (a JSON object)")
    if best.get("type") == "model_attributes_type" and not field:
        return error_response(422, "the request body must be a JSON object")
    message = str(best.get("msg", "invalid value")).removeprefix("Value error, ")
    return error_response(422, f"{where}: {message}", field or None)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = error_response(exc.status_code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RecfunnelError, _domain_error)
    # Domain errors subclass builtins (ValueError, KeyError); a bare builtin is a bug → 500.
    app.add_exception_handler(Exception, _domain_error)
