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

**Several worker processes** (``recfunnel serve --workers N``): every worker counts into
memory-mapped files in one directory (``multiprocess_dir``; prometheus_client's multiprocess
mode, which needs ``PROMETHEUS_MULTIPROC_DIR`` set to that directory before the worker imports
prometheus_client: the CLI sets both), and ``/metrics``, whichever worker answers it, adds up
every worker's files: counters and histograms are sums over the workers, those of workers that
died included (totals never go back). ``recfunnel_model_info{version, model}`` is then the
number of live workers serving that version (``N`` once all have swapped; during a hot swap the
old and the new version each count their workers; a version no longer served shows 0). The
process-level metrics of the single-process mode (``process_*``, ``python_*``) and the
``*_created`` samples are not reported in this mode.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from recfunnel.core.errors import ConfigError
from recfunnel.service.security import ASGIApp, Message, Receive, Scope, Send

#: Latency buckets (seconds), dense where the serving target (20 ms p99) sits.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
)  # fmt: skip


class ServiceMetrics:
    """The metrics of one app; ``multiprocess_dir``: the directory the worker processes of
    one server share their metrics through (``None``: this process's metrics only).

    >>> m = ServiceMetrics()
    >>> with m.stage("retrieve"):
    ...     pass
    >>> m.set_model("v1", "als")
    >>> b'recfunnel_model_info{model="als",version="v1"} 1.0' in m.render()
    True
    """

    def __init__(self, multiprocess_dir: str | os.PathLike[str] | None = None) -> None:
        self.multiprocess_dir = None if multiprocess_dir is None else Path(multiprocess_dir)
        if self.multiprocess_dir is not None:
            from prometheus_client import values

            if getattr(values.ValueClass, "__name__", "") != "MmapedValue":
                raise ConfigError(
                    f"metrics shared through {self.multiprocess_dir} need the environment "
                    f"variable PROMETHEUS_MULTIPROC_DIR={self.multiprocess_dir} set before "
                    "prometheus_client is imported (recfunnel serve --workers sets it)"
                )
            if not self.multiprocess_dir.is_dir():
                raise ConfigError(f"metrics directory {self.multiprocess_dir} does not exist")
        self._model: tuple[str, str] | None = None
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
            "recfunnel_model_info",
            "The served model version (value 1; with several workers, how many serve it).",
            ["version", "model"], registry=r, multiprocess_mode="livesum",
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
        if self.multiprocess_dir is None:
            self.model_info.clear()
        elif self._model is not None:
            # A worker's file keeps every label it ever had (no clear() in this mode).
            self.model_info.labels(*self._model).set(0)
        self.model_info.labels(version, model).set(1)
        self._model = (version, model)

    def render(self) -> bytes:
        """The Prometheus text: this app's metrics, or every worker's added up."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        _forget_dead_workers(self.multiprocess_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def close(self) -> None:
        """At shutdown: this worker no longer serves (its live gauges stop counting)."""
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), str(self.multiprocess_dir))  # type: ignore[no-untyped-call]


def _forget_dead_workers(directory: Path) -> None:
    """Drop the live-gauge files of workers that died without shutting down (killed): the
    supervisor starts a replacement, and the dead one must not count as serving."""
    from prometheus_client import multiprocess

    for path in directory.glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), str(directory))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the id now names another user's process: cannot tell, count it
        return True
    return True


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
        recorded = False

        def record() -> None:
            nonlocal recorded
            recorded = True
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, template, str(status)).inc()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Counted before the last byte leaves: a client holding its answer finds the
                # request in /metrics (of any worker).
                record()
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if not recorded:
                record()
