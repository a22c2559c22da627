"""Prometheus metrics, named after OpenTelemetry's HTTP semantic conventions.

- `http_server_request_duration_seconds`: every request the service answers, labelled with its
  route template (`/items/{item_id}`), never the raw path, so callers cannot grow the set
  of series.
- `http_client_request_duration_seconds`: every upstream call, until its response headers,
  labelled with the status or, for a call that failed, what failed (`error_type`).
- `http_client_open_connections` (`active` or `idle`) and
  `http_client_connection_pending_requests`: the upstream pool, read at each scrape.

Each app has a registry of its own. The numbers are those of one process: where metrics are
scraped, run one worker per container and scale with replicas (see docs/deploy.md).
"""

import time
from collections.abc import Iterable
from typing import Any, NamedTuple, Protocol

{{ cookiecutter.__httpx_import }}
from fastapi import APIRouter, FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METRICS_PATH = "/metrics"
# OpenTelemetry's advice for HTTP durations, in seconds.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# Any other method counts as `_OTHER`, as OpenTelemetry says: no caller can add series.
_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)

# Each histogram would otherwise carry a `_created` series beside it, which no one reads.
disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated in prometheus_client


class PoolStatus(NamedTuple):
    """How the upstream pool's connections are used at one moment."""

    active: int  # carrying an exchange, or being opened for one
    idle: int  # open, kept for the next exchange
    waiting: int  # requests waiting for a connection to become free


class Pool(Protocol):
    """The upstream transport: it sends requests and knows how its connections are used."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response: ...

    async def aclose(self) -> None: ...

    def pool_status(self) -> PoolStatus: ...


def _method(method: str) -> str:
    return method if method in _METHODS else "_OTHER"


class Metrics:
    """The service's instruments, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.server_duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, until the response's last byte.",
            ["http_request_method", "http_route", "http_response_status_code"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.client_duration = Histogram(
            "http_client_request_duration_seconds",
            "Duration of HTTP requests to the upstream, until the response headers.",
            ["http_request_method", "http_response_status_code", "error_type"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.pools: list[Pool] = []
        self.registry.register(_PoolCollector(self.pools))

    def install(self, app: FastAPI, relays: list[APIRouter]) -> None:
        """Measure every request `app` answers, and serve the numbers at `/metrics`."""
        # FastAPI names the route of its own endpoints in the request's scope; the relays
        # are plain routes, whose templates are looked up by endpoint.
        templates = {
            route.endpoint: route.path_format
            for router in relays
            for route in router.routes
            if isinstance(route, Route)
        }
        app.add_middleware(ServerMetrics, metrics=self, templates=templates)
        app.add_route(METRICS_PATH, self.scrape, include_in_schema=False)

    async def scrape(self, request: Request) -> Response:
        """The Prometheus text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def measured(self, pool: Pool) -> httpx.AsyncBaseTransport:
        """The pool's transport with its every call measured; the pool is read at each scrape."""
        self.pools.append(pool)
        return MeasuredTransport(pool, self)


class _PoolCollector(Collector):
    """Reads the pools' gauges when scraped: nothing is counted as requests come and go."""

    def __init__(self, pools: list[Pool]) -> None:
        self.pools = pools

    def collect(self) -> Iterable[Metric]:
        statuses = [pool.pool_status() for pool in self.pools]
        connections = GaugeMetricFamily(
            "http_client_open_connections",
            "Open connections to the upstream, by state.",
            labels=["http_connection_state"],
        )
        connections.add_metric(["active"], sum(status.active for status in statuses))
        connections.add_metric(["idle"], sum(status.idle for status in statuses))
        yield connections
        yield GaugeMetricFamily(
            "http_client_connection_pending_requests",
            "Upstream requests waiting for a pooled connection to become free.",
            value=sum(status.waiting for status in statuses),
        )


class ServerMetrics:
    """Times each request from its arrival to its response's last byte, by route template.

    Plain ASGI, like the request log: it neither buffers nor delays streamed bodies.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, templates: dict[Any, str]) -> None:
        self.app = app
        self.duration = metrics.server_duration
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts: what the caller gets for an unhandled error
        started = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            labels = (_method(scope["method"]), self.route_template(scope), str(status))
            self.duration.labels(*labels).observe(time.perf_counter() - started)

    def route_template(self, scope: Scope) -> str:
        """The template of the route that answered (`/items/{item_id}`), or "" if none did."""
        route = scope.get("route")
        if route is not None:
            return str(route.path_format)
        return self.templates.get(scope.get("endpoint"), "")


class MeasuredTransport(httpx.AsyncBaseTransport):
    """Times each upstream call until its response headers, with its status or its failure."""

    def __init__(self, pool: Pool, metrics: Metrics) -> None:
        self._pool = pool
        self._metrics = metrics
        self._duration = metrics.client_duration

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        method = _method(request.method)
        started = time.perf_counter()
        try:
            response = await self._pool.handle_async_request(request)
        except Exception as exc:
            self._duration.labels(method, "", type(exc).__name__).observe(
                time.perf_counter() - started
            )
            raise
        # As OpenTelemetry says: a status that is an error is its own error type.
        error_type = str(response.status_code) if response.status_code >= 400 else ""
        self._duration.labels(method, str(response.status_code), error_type).observe(
            time.perf_counter() - started
        )
        return response

    async def aclose(self) -> None:
        # A closed pool has nothing more to report.
        self._metrics.pools.remove(self._pool)
        await self._pool.aclose()
