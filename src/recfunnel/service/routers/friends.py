"""``/v1/users/{id}/friend-suggestions``: people the user may know."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from recfunnel.service.errors import ServiceUnavailable
from recfunnel.service.routers import AUTH_ERRORS, ServicesDep, UserId
from recfunnel.service.schemas import MAX_N, FriendSuggestions, SuggestedUser
from recfunnel.service.security import require_read

router = APIRouter(prefix="/v1", tags=["friends"], dependencies=[Depends(require_read)])
N = Annotated[int, Query(ge=1, le=MAX_N, description=f"How many users (1 to {MAX_N}).")]


@router.get("/users/{user_id}/friend-suggestions", responses=AUTH_ERRORS)
def friend_suggestions(
    user_id: UserId, services: ServicesDep, response: Response, n: N = 10
) -> FriendSuggestions:
    """Up to ``n`` users to suggest as friends, never the user, their friends, anyone with a
    pending request either way, or anyone blocked either way. Edges posted to ``/v1/edges``
    count from the next request; a member with no connections gets popular users in their
    community, then popular users."""
    services.changes.follow()  # edges, users and deletions from every worker
    friends = services.friends  # after following: a rebuild replaces it
    if friends is None:
        raise ServiceUnavailable("friend suggestions are not set up in this process")
    suggestions, version = friends.suggest(user_id, n)
    request_id = uuid.uuid4().hex
    response.headers["X-Request-ID"] = request_id
    return FriendSuggestions(
        request_id=request_id,
        model_version=version,
        users=[SuggestedUser(user_id=u, score=s, source=src) for u, s, src in suggestions],
    )
