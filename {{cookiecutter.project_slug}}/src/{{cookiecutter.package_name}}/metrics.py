"""Prometheus metrics, named after OpenTelemetry's HTTP semantic conventions.

- `http_server_request_duration_seconds`: every request the service answers, labelled with its
  route template (`/items/{item_id}`), never the raw path, so callers cannot grow the set
  of series.
- `http_client_request_duration_seconds`: every upstream call, until its response headers,
  labelled with the status or, for a call that failed, what failed (`error_type`).
- `http_client_open_connections` (`active` or `idle`) and
  `http_client_connection_pending_requests`: the upstream pool, read at each scrape.
- `http_client_request_retries_total` (by what the failed attempt met, as `error_type`) and
  `http_client_request_retries_denied_total` (by `reason`: budget, deadline, circuit,
  retry_after); `http_client_circuit_state` (1 for the state it is in),
  `http_client_circuit_transitions_total` (by the state entered) and
  `http_client_circuit_refused_total`; `http_server_request_body_cut_off_total` (by `reason`:
  pause, deadline). Read at each scrape from what `resilience.py` and `breaker.py` count.
- WebSocket sessions, which OpenTelemetry has no convention for yet:
  `websocket_server_active_sessions`, `websocket_server_sessions_total` (by the handshake's
  status, the close code, 3xxx and 4xxx as classes, and the side that closed), and
  `websocket_server_messages_total` and `websocket_server_message_bytes_total` (by
  `direction`: from the caller or from the upstream), read at each scrape, live sessions
  included.

Each app has a registry of its own. The numbers are those of one process: where metrics are
scraped, run one worker per container and scale with replicas (see docs/deploy.md).
"""

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import NamedTuple, Protocol

from fastapi import FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from {{ cookiecutter.package_name }}.breaker import Breaker, State
from {{ cookiecutter.package_name }}.pool import Pool, UpstreamRequest, UpstreamResponse
from {{ cookiecutter.package_name }}.resilience import DENIED_REASONS, Tally
from {{ cookiecutter.package_name }}.websocket import Session, Traffic

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


class ObservedPool(Pool, Protocol):
    """A pool that knows how its connections are used."""

    def pool_status(self) -> PoolStatus: ...


def _method(method: str) -> str:
    return method if method in _METHODS else "_OTHER"


class _Series:
    """A histogram's labelled series, each looked up once: `labels()` costs more than `observe()`.

    The label values are bounded (methods, route templates, statuses), and so is this cache.
    """

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram
        self.children: dict[tuple[str, ...], Histogram] = {}

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.histogram.labels(*labels)
        child.observe(seconds)


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
        self.server_series = _Series(self.server_duration)
        self.client_series = _Series(self.client_duration)
        self.pools: list[ObservedPool] = []
        self.registry.register(_PoolCollector(self.pools))
        self.sessions: set[Session] = set()  # relayed WebSocket sessions under way
        self.ended_traffic = Traffic()  # what the sessions that ended relayed
        # Handshakes answered and sessions ended: by status, close code and the side closing.
        self.endings: Counter[tuple[str, str, str]] = Counter()
        self.registry.register(_SessionCollector(self))

    def install(self, app: FastAPI, breaker: Breaker, tally: Tally) -> None:
        """Serve the numbers at `/metrics`, with what the retry policy and the breaker did."""
        self.registry.register(_ResilienceCollector(breaker, tally))
        app.add_route(METRICS_PATH, self.scrape, include_in_schema=False)

    def observe_request(self, scope: Scope, route: str, status: int, seconds: float) -> None:
        """One request answered (`route`: its template, "" if none matched); not the scrapes."""
        if scope["path"] != METRICS_PATH:
            self.server_series.observe((_method(scope["method"]), route, str(status)), seconds)

    def observe_session(self, status: int, session: Session | None) -> None:
        """A WebSocket handshake answered, and its session, if one was relayed, ended."""
        code = closed_by = ""
        if session is not None:
            self.sessions.discard(session)
            self.ended_traffic.add(session.traffic)
            if session.ending is not None:
                code, closed_by = _close_code(session.ending.code), session.ending.by
        self.endings[str(status), code, closed_by] += 1

    async def scrape(self, request: Request) -> Response:
        """The Prometheus text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def measured(self, pool: ObservedPool) -> Pool:
        """The pool with its every call measured; its connections are read at each scrape."""
        self.pools.append(pool)
        return MeasuredPool(pool, self)


class _PoolCollector(Collector):
    """Reads the pools' gauges when scraped: nothing is counted as requests come and go."""

    def __init__(self, pools: list[ObservedPool]) -> None:
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


class _ResilienceCollector(Collector):
    """Reads the counts kept by the retry policy and the breaker, when scraped."""

    def __init__(self, breaker: Breaker, tally: Tally) -> None:
        self.breaker = breaker
        self.tally = tally

    def collect(self) -> Iterable[Metric]:
        breaker, tally = self.breaker, self.tally
        yield _counter(
            "http_client_request_retries",
            "Upstream calls sent again, by what the attempt before met.",
            "error_type",
            tally.retries,
        )
        yield _counter(
            "http_client_request_retries_denied",
            "Upstream calls that could have been sent again but were not, by why.",
            "reason",
            {reason: tally.denied[reason] for reason in DENIED_REASONS},
        )
        state = GaugeMetricFamily(
            "http_client_circuit_state",
            "The upstream circuit breaker's state: 1 for the one it is in.",
            labels=["state"],
        )
        for name in State:
            state.add_metric([name.value], 1 if breaker.state is name else 0)
        yield state
        yield _counter(
            "http_client_circuit_transitions",
            "Times the upstream circuit breaker entered each state.",
            "state",
            {name.value: breaker.transitions[name] for name in State},
        )
        yield CounterMetricFamily(
            "http_client_circuit_refused",
            "Upstream calls refused, without trying, while the circuit breaker was open.",
            value=breaker.refused,
        )
        yield _counter(
            "http_server_request_body_cut_off",
            "Callers' request bodies cut off with 408, by why: a pause, or the whole too long.",
            "reason",
            {"pause": tally.cut_off["pause"], "deadline": tally.cut_off["deadline"]},
        )


class _SessionCollector(Collector):
    """Reads the WebSocket sessions' numbers when scraped, those under way included."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        metrics = self.metrics
        yield GaugeMetricFamily(
            "websocket_server_active_sessions",
            "Relayed WebSocket sessions under way, handshakes included.",
            value=len(metrics.sessions),
        )
        sessions = CounterMetricFamily(
            "websocket_server_sessions",
            "WebSocket handshakes answered, by status, and sessions ended, by close code and by "
            "the side that closed (caller, upstream, or relay).",
            labels=["http_response_status_code", "websocket_close_code", "websocket_closed_by"],
        )
        for labels, count in sorted(metrics.endings.items()):
            sessions.add_metric(list(labels), count)
        yield sessions
        total = Traffic()
        total.add(metrics.ended_traffic)
        for session in metrics.sessions:
            total.add(session.traffic)
        yield _counter(
            "websocket_server_messages",
            "WebSocket messages relayed, by direction.",
            "direction",
            {"from_caller": total.from_caller, "from_upstream": total.from_upstream},
        )
        yield _counter(
            "websocket_server_message_bytes",
            "Bytes of WebSocket messages relayed, by direction.",
            "direction",
            {"from_caller": total.from_caller_bytes, "from_upstream": total.from_upstream_bytes},
        )


def _close_code(code: int) -> str:
    """A close code as a label: the registered ones as they are, the applications' (3000-4999)
    by their thousand, so that no peer can add series."""
    return str(code) if code < 3000 else f"{code // 1000}xxx"


def _counter(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


class MeasuredPool:
    """Times each upstream call until its response headers, with its status or its failure."""

    def __init__(self, pool: ObservedPool, metrics: Metrics) -> None:
        self._pool = pool
        self._metrics = metrics
        self._series = metrics.client_series

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        method = _method(request.method)
        started = time.perf_counter()
        try:
            response = await self._pool.send(request)
        except Exception as exc:
            self._series.observe((method, "", type(exc).__name__), time.perf_counter() - started)
            raise
        # As OpenTelemetry says: a status that is an error is its own error type.
        status = str(response.status)
        error_type = status if response.status >= 400 else ""
        self._series.observe((method, status, error_type), time.perf_counter() - started)
        return response

    async def aclose(self) -> None:
        # A closed pool has nothing more to report.
        self._metrics.pools.remove(self._pool)
        await self._pool.aclose()
