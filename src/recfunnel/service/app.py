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
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request

from recfunnel.core.store import Store
from recfunnel.service import errors
from recfunnel.service.friends import FriendService
from recfunnel.service.metrics import RequestMetrics, ServiceMetrics
from recfunnel.service.recommender import Recommender, RequestLog
from recfunnel.service.registry import ModelHolder, load_recommender
from recfunnel.service.security import APIKeys, BodyLimit
from recfunnel.service.settings import ServiceSettings

if TYPE_CHECKING:
    from recfunnel.pipeline.feature_log import FeatureLogger

log = logging.getLogger("recfunnel.service")

API_VERSION = "1"


@dataclass
class Services:
    """What the routers use, one per app (``request.app.state.services``)."""

    settings: ServiceSettings
    store: Store
    models: ModelHolder
    metrics: ServiceMetrics
    requests: RequestLog
    #: Served features of funnel requests (``settings.feature_log_dir``), or None.
    feature_log: FeatureLogger | None = None
    #: The live social graph and friend model (``None`` until ``create_app`` builds it).
    friends: FriendService | None = None
    #: Users deleted while this process runs: a model version loaded later (trained before
    #: the deletion) must not use what it holds about them either.
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
    the_store = open_store(settings.store_url) if store is None else store
    metrics = ServiceMetrics()
    services = Services(
        settings=settings,
        store=the_store,
        models=ModelHolder(None),
        metrics=metrics,
        requests=RequestLog(settings.request_log_size),
    )
    if settings.feature_log_dir is not None:
        from recfunnel.pipeline.feature_log import FeatureLogger

        services.feature_log = FeatureLogger(
            settings.feature_log_dir, sample_rate=settings.feature_log_sample_rate
        )
    services.models = ModelHolder(
        settings.model_dir,
        loader=lambda path, version: load_recommender(
            path,
            version,
            stage=metrics.stage,
            observe=metrics.observe_stage,
            feature_log=services.feature_log,
        ),
        prepare=lambda rec: _prepare(rec, services),
        on_swap=lambda rec: _swapped(rec, metrics),
    )
    the_store.add_deletion_hook(lambda ids: _forget(ids, services))
    # The live graph first: a content model with social sources attaches it when it loads.
    services.friends = FriendService.from_store(the_store, settings.friends_model_dir)
    services.models.reload()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.poll_seconds is not None:
            services.models.start_polling(settings.poll_seconds)
        stop_flushing = threading.Event()
        if services.feature_log is not None:
            threading.Thread(
                target=_flush_every,
                args=(services.feature_log, settings.feature_log_flush_seconds, stop_flushing),
                name="recfunnel-feature-log-flush",
                daemon=True,
            ).start()
        try:
            yield
        finally:
            services.models.stop_polling()
            stop_flushing.set()
            if services.feature_log is not None:
                services.feature_log.flush()
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


def _flush_every(feature_log: FeatureLogger, seconds: float, stop: threading.Event) -> None:
    """Write the feature log's buffered rows every ``seconds`` until ``stop`` is set, so a
    crash loses at most that much of it (served features are not acknowledged writes)."""
    while not stop.wait(seconds):
        try:
            feature_log.flush()
        except OSError as exc:  # the rows stay buffered; the next flush retries
            log.warning("feature log flush failed, will retry: %s", exc)


def _swapped(rec: Recommender, metrics: ServiceMetrics) -> None:
    metrics.set_model(rec.version, rec.model_name)
    metrics.swaps.inc()


def _forget(user_ids: Iterable[str], services: Services) -> None:
    ids = list(user_ids)
    services.forgotten.update(ids)
    services.requests.forget_users(ids)
    current = services.models.current
    if current is not None:
        current.forget_users(ids)
    if services.friends is not None:
        services.friends.forget(ids)
    if services.feature_log is not None:
        for user_id in ids:
            services.feature_log.delete_user(user_id)


__all__ = ["Services", "create_app", "get_services"]
