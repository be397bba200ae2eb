"""Request and response bodies of the HTTP API (apart from the store's rows).

These models are the wire format: clients and tests rely on them, and the OpenAPI document is
generated from them. Every request model is strict: unknown fields, wrong JSON types
(``"5"`` for a number, ``true`` for a number), NaN/infinity and over-long batches are refused
with 422 and a message naming the field. The same models check files given to
``recfunnel ingest``, so a file and the API accept exactly the same rows.

>>> InteractionBatch.model_validate(
...     {"interactions": [{"user_id": "ana", "item_id": "book", "timestamp": "2024-05-01T12:00Z"}]}
... ).interactions[0].to_row()
{'user_id': 'ana', 'item_id': 'book', 'event_type': 'interaction', 'timestamp': '2024-05-01T12:00Z'}
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from recfunnel.core.errors import DataError

#: Most rows one write request (or one ``ingest`` batch) may carry.
MAX_BATCH = 1000
#: Most items one recommendation or similar-items request may ask for.
MAX_N = 200
#: Longest id (user, item, event, request) accepted, in characters.
MAX_ID_LENGTH = 256


def _clean_id(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


def _iso_8601(value: str) -> str:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"expected epoch seconds or an ISO 8601 string such as '2024-05-01T12:00:00Z', "
            f"got {value[:40]!r}"
        ) from None
    return value


Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(_clean_id)]
#: Epoch seconds (a number) or an ISO 8601 string (without an offset it is read as UTC).
Timestamp = float | Annotated[str, Field(max_length=64), AfterValidator(_iso_8601)]
Attributes = dict[str, Any]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    def to_row(self) -> dict[str, Any]:
        """The row for the store: unset optional fields left out (the store's defaults)."""
        return self.model_dump(exclude_none=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- ingestion --------------------------------------------------------------------------------
class InteractionIn(_Request):
    """One event. ``event_id`` makes retries idempotent (a stored id is not written again);
    ``value`` defaults to 1, ``timestamp`` to unknown, ``context`` to ``{}``."""

    event_id: Id | None = None
    user_id: Id
    item_id: Id
    event_type: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_clean_id)] = (
        "interaction"
    )
    value: float | None = None
    timestamp: Timestamp | None = None
    context: Attributes | None = None


class InteractionBatch(_Request):
    interactions: list[InteractionIn] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH} events, written in one transaction (all or none).",
    )


class IngestResponse(_Response):
    """``accepted`` new events, ``already_present`` ones skipped (their ``event_id`` was
    stored before, or repeated in the batch); ``event_ids`` in input order, generated ones
    included, so a client can retry with the same ids."""

    accepted: int
    already_present: int
    event_ids: list[str]


class UserIn(_Request):
    user_id: Id
    attributes: Attributes | None = None


class UserBatch(_Request):
    users: list[UserIn] = Field(min_length=1, max_length=MAX_BATCH)


class ItemIn(_Request):
    """An item; ``created_at`` / ``expires_at`` bound when it may be recommended."""

    item_id: Id
    attributes: Attributes | None = None
    created_at: Timestamp | None = None
    expires_at: Timestamp | None = None


class ItemBatch(_Request):
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_BATCH)


#: What an edge says: ``connect`` (a friend request or follow; both directions make a
#: friendship) or ``block`` (never suggest the pair to either side).
EdgeKind = Literal["connect", "block"]


class EdgeIn(_Request):
    """A directed social edge from ``src_user_id`` to ``dst_user_id``. ``kind`` ``connect``
    (default) is a friend request or follow, and a friendship once the reverse edge exists too;
    ``block`` means the source blocked the destination. Sending a stored pair again keeps its
    timestamp and sets its kind."""

    src_user_id: Id
    dst_user_id: Id
    timestamp: Timestamp | None = None
    kind: EdgeKind = "connect"


class EdgeBatch(_Request):
    edges: list[EdgeIn] = Field(min_length=1, max_length=MAX_BATCH)


class EdgeRef(_Request):
    """An edge by its ordered pair (whatever its kind)."""

    src_user_id: Id
    dst_user_id: Id


class EdgeRefBatch(_Request):
    edges: list[EdgeRef] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"1 to {MAX_BATCH} pairs, removed in one transaction.",
    )


class Written(_Response):
    """Rows written (users and items are upserted: a repeated id counts once)."""

    written: int


class ItemsWritten(Written):
    """``indexed``: how many of the items the served model embedded and made recommendable
    at once (a two-tower model with item features); 0 for other models."""

    indexed: int


class EdgesAdded(_Response):
    """``added``: pairs that were not stored before (a kind change is not counted)."""

    added: int


class EdgesRemoved(_Response):
    """``removed``: pairs that were stored (pairs never stored are ignored)."""

    removed: int


class UserDeleted(_Response):
    user_id: str
    removed: dict[str, int]


# ---- reading ----------------------------------------------------------------------------------
class InteractionOut(_Response):
    event_id: str
    user_id: str
    item_id: str
    event_type: str
    value: float
    timestamp: float | None = Field(description="Epoch seconds (UTC), or null when unknown.")
    context: Attributes


class InteractionPage(_Response):
    interactions: list[InteractionOut]
    next: str | None = Field(description="Pass as ?cursor= for the next page; null at the end.")


class ScoredItem(_Response):
    item_id: str
    score: float


class SuggestedUser(_Response):
    user_id: str
    score: float
    #: Which stage proposed them: ``model`` (the friend model) or a fallback
    #: (``community_popular``, ``popular_users``).
    source: str


class FriendSuggestions(_Response):
    """People the user may know, best first, with a request id and the friend model."""

    request_id: str
    model_version: str
    users: list[SuggestedUser]


class Recommendations(_Response):
    """A ranked list. ``request_id`` identifies this answer for feedback attribution;
    ``model_version`` is the registry version that produced it."""

    request_id: str
    model_version: str
    items: list[ScoredItem]


# ---- feedback ---------------------------------------------------------------------------------
FeedbackType = Literal["impression", "click", "conversion", "dismiss"]


class FeedbackIn(_Request):
    """What a user did with a recommended item. Without ``event_id``, the id is derived from
    (request, user, item, type), so a retried report is stored once."""

    request_id: Id
    user_id: Id
    item_id: Id
    event_type: FeedbackType
    position: Annotated[int, Field(ge=0, le=100_000)] | None = None
    event_id: Id | None = None
    timestamp: Timestamp | None = None


class FeedbackBatch(_Request):
    feedback: list[FeedbackIn] = Field(min_length=1, max_length=MAX_BATCH)


# ---- operations -------------------------------------------------------------------------------
class Health(_Response):
    status: Literal["ok"]
    model_version: str | None
    worker: int = Field(description="Process id of the worker that answered.")


class Reloaded(_Response):
    model_version: str | None
    swapped: bool


class ErrorBody(_Response):
    """Every error answer: what was wrong, and the field when one is to blame."""

    detail: str
    field: str | None = None


# ---- helpers ----------------------------------------------------------------------------------
def field_path(loc: Sequence[int | str]) -> str:
    """``("body", "interactions", 0, "user_id")`` → ``"interactions[0].user_id"``.

    >>> field_path(("body", "interactions", 3, "value", "float"))
    'interactions[3].value'
    """
    out = ""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("float", "str", "int", "function-after[_clean_id(), str]"):
            break  # pydantic's union branch names, not fields
        elif part.startswith(("function-", "constrained-", "literal[")):
            break
        else:
            out += f".{part}" if out else part
    return out


def first_error(exc: ValidationError) -> tuple[str, str]:
    """``(field, message)`` of the most telling error of ``exc``.

    Unions report one error per branch; the branch a value was meant for (the string one for
    a string, the number one for a number) says most, so branch errors about the wrong type
    are skipped when another error names the same field.
    """
    errors = exc.errors(include_url=False)
    wrong_type = ("float_type", "string_type", "int_type", "literal_error", "dict_type")
    best = next((e for e in errors if e["type"] not in wrong_type), errors[0])
    field = field_path(best["loc"])
    return field, str(best["msg"]).removeprefix("Value error, ")


def located_error(exc: ValidationError, *, source: str, line: int) -> DataError:
    """A pydantic error as a :class:`DataError` naming the file, line and field."""
    field, message = first_error(exc)
    return DataError(message, source=source, line=line, field=field or None)
