"""The app factory: ``create_app(settings)`` builds one FastAPI app with its own store,
model holder, keys and metrics registry. Nothing is created at import time, so tests and
processes can hold several apps side by side.

Layout of the API (one router module per resource, in ``service/routers``)::

    POST   /v1/users                      users.py          write key
    GET    /v1/users/{id}/interactions    users.py          write key
    DELETE /v1/users/{id}                 users.py          write key
    POST   /v1/items                      items.py          write key
    POST   /v1/interactions               interactions.py   write key
    POST   /v1/edges                      edges.py          write key
    DELETE /v1/edges                      edges.py          write key
    GET    /v1/users/{id}/friend-suggestions  friends.py    read key
    GET    /v1/users/{id}/recommendations recommendations.py read key
    GET    /v1/items/{id}/similar         recommendations.py read key
    POST   /v1/feedback                   feedback.py       read key
    GET    /health, GET /metrics          health.py         none
    POST   /v1/admin/reload               health.py         write key
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request

from recfunnel.core.store import Change, Store
from recfunnel.service import errors
from recfunnel.service.changes import ChangeFollower
from recfunnel.service.deletions import DeletionFollower
from recfunnel.service.friends import FriendService
from recfunnel.service.metrics import RequestMetrics, ServiceMetrics
from recfunnel.service.recommender import Recommender
from recfunnel.service.registry import ModelHolder, load_recommender
from recfunnel.service.security import APIKeys, BodyLimit
from recfunnel.service.settings import ServiceSettings

if TYPE_CHECKING:
    from recfunnel.pipeline.feature_log import FeatureLogger

log = logging.getLogger("recfunnel.service")

API_VERSION = "1"


#: How often the feature-log thread follows the deletion log when nothing wakes it (s).
FOLLOW_SECONDS = 1.0


@dataclass
class Services:
    """What the routers use, one per app (``request.app.state.services``).

    Served request ids live in the store (``store.record_requests``), not here, so feedback
    sent to any worker of the server is attributed.
    """

    settings: ServiceSettings
    store: Store
    models: ModelHolder
    metrics: ServiceMetrics
    #: Applies user deletions made through any process sharing the store (see
    #: ``service/deletions.py``); routes that use users' data call ``deletions.follow()``.
    deletions: DeletionFollower
    #: Applies writes of users, items and edges (and deletions) made through any process
    #: sharing the store, this one's included (see ``service/changes.py``); routes that use
    #: the graph or the model call ``changes.follow()`` (write routes after their write).
    changes: ChangeFollower
    #: Served features of funnel requests (``settings.feature_log_dir``), or None.
    feature_log: FeatureLogger | None = None
    #: The live social graph and friend model (``None`` until ``create_app`` builds it).
    friends: FriendService | None = None
    #: Every user deleted, whichever process deleted them (read from the store's deletion
    #: log): a model version loaded later (trained before the deletion) must not use what it
    #: holds about them either.
    forgotten: set[str] = field(default_factory=set)


async def get_services(request: Request) -> Services:
    """Dependency: the app's services (async: a sync dependency would cost every request a
    trip through the thread pool)."""
    services: Services = request.app.state.services
    return services


def create_app(settings: ServiceSettings, *, store: Store | None = None) -> FastAPI:
    """A ready app. ``store`` (optional) replaces opening ``settings.store_url`` (tests);
    the app closes the store it opened on shutdown.

    The current model version (if any) is loaded here, so a broken registry fails at start,
    not on the first request.
    """
    from recfunnel.data.store import open_store
    from recfunnel.service.routers import (
        edges,
        feedback,
        friends,
        health,
        interactions,
        items,
        recommendations,
        users,
    )

    owns_store = store is None
    metrics = ServiceMetrics(multiprocess_dir=settings.metrics_dir)
    the_store = open_store(settings.store_url) if store is None else store
    feature_log = None
    if settings.feature_log_dir is not None:
        from recfunnel.pipeline.feature_log import FeatureLogger

        feature_log = FeatureLogger(
            settings.feature_log_dir, sample_rate=settings.feature_log_sample_rate
        )
    services = Services(
        settings=settings,
        store=the_store,
        models=ModelHolder(None),
        metrics=metrics,
        deletions=DeletionFollower(
            the_store, forget=lambda ids: _forget(ids, services), feature_log=feature_log
        ),
        changes=ChangeFollower(
            the_store,
            apply=lambda change: _apply(change, services),
            rebuild=lambda: _rebuild(services),
        ),
        feature_log=feature_log,
    )
    # Before the graph is read: a deletion or write logged after this point is followed later
    # (applying one that the tables already hold again is harmless).
    services.forgotten.update(services.deletions.catch_up())
    services.changes.catch_up()
    services.models = ModelHolder(
        settings.model_dir,
        loader=lambda path, version: load_recommender(
            path,
            version,
            stage=metrics.stage,
            observe=metrics.observe_stage,
            feature_log=services.feature_log,
            # The cores are shared by the server's worker processes.
            max_passes=max(1, (os.cpu_count() or 1) // settings.workers),
        ),
        prepare=lambda rec: _prepare(rec, services),
        on_swap=lambda rec: _swapped(rec, services),
    )
    the_store.add_deletion_hook(lambda ids: _deleted_here(services))
    # The live graph first: a content model with social sources attaches it when it loads.
    services.friends = FriendService.from_store(the_store, settings.friends_model_dir)
    services.models.reload()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.poll_seconds is not None:
            services.models.start_polling(settings.poll_seconds)
        stop_flushing = threading.Event()
        threading.Thread(
            target=_follow_changes,
            args=(services, stop_flushing),
            name="recfunnel-changes",
            daemon=True,
        ).start()
        if services.feature_log is not None:
            threading.Thread(
                target=_feature_log_upkeep,
                args=(services, settings.feature_log_flush_seconds, stop_flushing),
                name="recfunnel-feature-log",
                daemon=True,
            ).start()
        try:
            yield
        finally:
            services.models.stop_polling()
            stop_flushing.set()
            services.deletions.wake.set()
            if services.feature_log is not None:
                try:
                    services.feature_log.flush()
                    _follow_into_log(services)  # users deleted elsewhere meanwhile: not kept
                except Exception as exc:  # still release the rest below
                    log.error("feature log not fully written at shutdown: %r", exc)
            metrics.close()
            if owns_store:
                the_store.close()

    app = FastAPI(
        title="recfunnel",
        version=API_VERSION,
        description=(
            "Ingest users, items, interactions and social edges; serve recommendations with "
            "a request id and the model version; collect feedback. Keys go in the X-API-Key "
            "header: the write key for ingestion and administration, the read key for "
            "recommendations and feedback."
        ),
        lifespan=lifespan,
        responses={422: {"model": errors_body()}, 401: {"model": errors_body()}},
    )
    app.state.services = services
    app.state.keys = APIKeys(
        write=settings.write_key.get_secret_value(), read=settings.read_key.get_secret_value()
    )
    errors.install(app)
    for module in (users, items, interactions, edges, recommendations, friends, feedback, health):
        app.include_router(module.router)
    # Outermost first: count every request (413s included), then limit the body.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


def errors_body() -> Any:
    from recfunnel.service.schemas import ErrorBody

    return ErrorBody


def _prepare(rec: Recommender, services: Services) -> None:
    """Before a new version serves: attach the live social graph (social sources such as
    ``friends_items`` read it), forget deleted users, embed items added since training."""
    for holder in (rec, getattr(rec, "generator", None), getattr(rec, "funnel", None)):
        attach = getattr(holder, "attach_graph", None)
        if attach is not None and services.friends is not None:
            attach(services.friends.graph)
            break
    if services.forgotten:
        rec.forget_users(services.forgotten)
    if not rec.accepts_new_items:
        return
    added = rec.add_items(list(_items_with_attributes(services.store)))
    if added:
        log.info("embedded %d item(s) added since training into version %s", added, rec.version)


def _items_with_attributes(store: Store) -> Iterable[dict[str, Any]]:
    import json

    for batch in store.iter_batches("items"):
        for item_id, attributes in zip(
            batch.column("item_id").to_pylist(), batch.column("attributes").to_pylist(),
            strict=True,
        ):  # fmt: skip
            if attributes and attributes != "{}":
                yield {"item_id": item_id, "attributes": json.loads(attributes)}


def _feature_log_upkeep(services: Services, seconds: float, stop: threading.Event) -> None:
    """Until ``stop`` is set: write the feature log's buffered rows every ``seconds`` (so a
    crash loses at most that much of it: served features are not acknowledged writes), and
    delete the rows of users deleted through other processes as soon as the deletion is
    followed (woken by the follower; at least every ``FOLLOW_SECONDS``), and after each flush."""
    assert services.feature_log is not None
    wake = services.deletions.wake
    due = time.monotonic() + seconds
    while not stop.is_set():
        wake.wait(max(0.0, min(FOLLOW_SECONDS, due - time.monotonic())))
        wake.clear()
        if stop.is_set():
            return
        try:
            _follow_into_log(services)
            if time.monotonic() >= due:
                due = time.monotonic() + seconds
                services.feature_log.flush()
                _follow_into_log(services)
        except OSError as exc:  # rows stay buffered / deletions stay queued; retried next time
            log.warning("feature log upkeep failed, will retry: %s", exc)
        except Exception as exc:  # e.g. the store is unreachable for a moment
            log.warning("feature log upkeep failed, will retry: %r", exc)


def _follow_changes(services: Services, stop: threading.Event) -> None:
    """Until ``stop`` is set: follow the change log every ``FOLLOW_SECONDS``, so a worker
    without traffic stays current (and does not fall behind the log's window)."""
    while not stop.wait(FOLLOW_SECONDS):
        try:
            services.changes.follow()
        except Exception as exc:  # e.g. the store is unreachable for a moment
            log.warning("following the change log failed, will retry: %r", exc)


def _follow_into_log(services: Services) -> None:
    services.deletions.follow()
    services.deletions.delete_logged_rows()


def _apply(change: Change, services: Services) -> None:
    """Apply one change-log entry to this process's graph and served model."""
    friends, rows = services.friends, change.rows
    if change.kind == "users_deleted":
        services.deletions.follow()  # their feature-log rows too
        _forget([r[0] for r in rows], services)  # again, in log order: no later edge undone
    elif friends is None:
        pass
    elif change.kind == "edges":
        friends.apply_edges(
            {"src_user_id": r[0], "dst_user_id": r[1], "timestamp": r[2], "kind": r[3]}
            for r in rows
        )
    elif change.kind == "edges_removed":
        friends.remove_edges((r[0], r[1]) for r in rows)
    elif change.kind == "users":
        friends.add_profiles({"user_id": r[0], "attributes": r[1]} for r in rows)
    if change.kind == "items":
        current = services.models.current
        if current is not None and current.accepts_new_items:
            embed_items(current, [{"item_id": r[0], "attributes": r[1]} for r in rows])


def embed_items(rec: Recommender, rows: list[dict[str, Any]]) -> int:
    """Embed items into ``rec`` (those it knows are skipped); 0 when it cannot."""
    try:
        return rec.add_items(rows)
    except (ValueError, KeyError) as exc:  # stored anyway; embedding is best effort
        log.warning("items stored but not embedded into %s: %s", rec.version, exc)
        return 0


def _rebuild(services: Services) -> None:
    """The change log no longer holds everything since this process last read it: read the
    graph again and embed every item with attributes into the served model."""
    services.deletions.follow()
    services.friends = FriendService.from_store(services.store, services.settings.friends_model_dir)
    current = services.models.current
    if current is not None:
        _prepare(current, services)


def _swapped(rec: Recommender, services: Services) -> None:
    # Again after the swap: a deletion followed while the version loaded is in force too, and
    # an item followed into the previous version meanwhile (the log is past it) is embedded.
    rec.forget_users(set(services.forgotten))
    if rec.accepts_new_items:
        embed_items(rec, list(_items_with_attributes(services.store)))
    services.metrics.set_model(rec.version, rec.model_name)
    services.metrics.swaps.inc()


def _forget(user_ids: list[str], services: Services) -> None:
    """Drop what this process holds in memory about deleted users (the follower's
    callback; feature-log rows are the follower's)."""
    services.forgotten.update(user_ids)
    current = services.models.current
    if current is not None:
        current.forget_users(user_ids)
    if services.friends is not None:
        services.friends.forget(user_ids)


def _deleted_here(services: Services) -> None:
    """The store deleted users through this process: follow its deletion log now (these
    users included) and delete their feature-log rows before the request answers."""
    _follow_into_log(services)


__all__ = ["Services", "create_app", "embed_items", "get_services"]
