"""Prometheus metrics, one registry per app (two apps in one process never share counters).

Exposed at ``GET /metrics`` in the Prometheus text format:

* ``recfunnel_http_requests_total{method, route, status}``: requests answered; ``route`` is
  the route template (``/v1/users/{user_id}/recommendations``), never the raw path, so ids
  do not explode the label set;
* ``recfunnel_http_request_duration_seconds{method, route}``: latency histogram;
* ``recfunnel_stage_duration_seconds{stage}``: time in each serving stage (``history``,
  ``retrieve``, ``fallback``, ``similar``, ``ingest``);
* ``recfunnel_model_info{version, model}``: 1 for the served model version;
* ``recfunnel_model_swaps_total``, ``recfunnel_events_total{result}`` (``accepted`` /
  ``already_present``), ``recfunnel_recommendations_total{path}`` (``model`` / ``fallback``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from recfunnel.service.security import ASGIApp, Message, Receive, Scope, Send

#: Latency buckets (seconds), dense where the serving target (20 ms p99) sits.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
)  # fmt: skip


class ServiceMetrics:
    """The metrics of one app.

    >>> m = ServiceMetrics()
    >>> with m.stage("retrieve"):
    ...     pass
    >>> m.set_model("v1", "als")
    >>> b'recfunnel_model_info{model="als",version="v1"} 1.0' in m.render()
    True
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "recfunnel_http_requests", "Requests answered.", ["method", "route", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "recfunnel_http_request_duration_seconds", "Request latency.", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.stages = Histogram(
            "recfunnel_stage_duration_seconds", "Time per serving stage.", ["stage"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.model_info = Gauge(
            "recfunnel_model_info", "The served model version (value 1).", ["version", "model"],
            registry=r,
        )  # fmt: skip
        self.swaps = Counter("recfunnel_model_swaps", "Model versions swapped in.", registry=r)
        self.events = Counter(
            "recfunnel_events", "Events received, by outcome.", ["result"], registry=r
        )
        self.served = Counter(
            "recfunnel_recommendations", "Recommendation lists served, by path.", ["path"],
            registry=r,
        )  # fmt: skip

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block into ``recfunnel_stage_duration_seconds{stage=name}``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages.labels(name).observe(time.perf_counter() - started)

    def observe_stage(self, name: str, seconds: float) -> None:
        """Record a stage timed elsewhere (the funnel times its own stages)."""
        self.stages.labels(name).observe(seconds)

    def set_model(self, version: str, model: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version, model).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting and timing every HTTP request by route template."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, template, str(status)).inc()
