"""``/v1/users``: upsert users, read a user's stored history, delete a user everywhere."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from recfunnel.service.routers import AUTH_ERRORS, WRITE_ERRORS, ServicesDep, UserId
from recfunnel.service.schemas import (
    InteractionOut,
    InteractionPage,
    UserBatch,
    UserDeleted,
    Written,
)
from recfunnel.service.security import require_write

router = APIRouter(prefix="/v1/users", tags=["users"], dependencies=[Depends(require_write)])


@router.post("", responses=WRITE_ERRORS)
def upsert_users(batch: UserBatch, services: ServicesDep) -> Written:
    """Insert or replace users and their attributes (the last row of an id wins)."""
    rows = [u.to_row() for u in batch.users]
    written = services.store.upsert_users(rows)
    # In log order (after any earlier deletion of the id), as every other worker applies it.
    services.changes.follow()
    return Written(written=written)


@router.get("/{user_id}/interactions", responses=AUTH_ERRORS)
def user_interactions(
    user_id: UserId,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Events per page.")] = 100,
    cursor: Annotated[
        str | None, Query(max_length=32, description="`next` of the previous page.")
    ] = None,
) -> InteractionPage:
    """The user's stored events in arrival order, a page at a time (an unknown user has an
    empty history). Events arriving while a client pages appear on later pages, never twice."""
    page = services.store.user_interactions(user_id, limit=limit, cursor=cursor)
    return InteractionPage(
        interactions=[InteractionOut.model_validate(vars(r)) for r in page.rows],
        next=page.next_cursor,
    )


@router.delete("/{user_id}", responses=AUTH_ERRORS)
def delete_user(user_id: UserId, services: ServicesDep) -> UserDeleted:
    """Remove the user everywhere: their row, events, edges and served request ids in the
    store, their feature-log rows, and what the served model and the social graph hold about
    them, in every worker of the server (the others follow the store's deletion log before
    their next request that uses users' data). Idempotent (counts are 0 the second time).
    Model artefacts trained before the deletion still contain the user until the next
    training; the server stops using that part at once."""
    removed = services.store.delete_users([user_id])
    return UserDeleted(user_id=user_id, removed=removed)
