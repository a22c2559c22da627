"""Traces with OpenTelemetry: a server span for each request, a client span for each upstream call.

The server span continues the caller's W3C `traceparent`; the upstream receives the same trace,
with the client span as its parent. Everything is set through OpenTelemetry's own environment
variables (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...): spans
are sent over OTLP when an endpoint is set; `OTEL_SDK_DISABLED=true` turns tracing off.

Without an endpoint no span is made at all: spans cost much of the service's small-request
throughput even when they go nowhere (docs/deploy.md has the figures). The caller's
`traceparent` then reaches the upstream as it came, so the trace still joins up wherever the
caller's spans are recorded.
"""

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract, inject
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from starlette.types import Scope

from {{ cookiecutter.package_name }}.pool import Pool, UpstreamRequest, UpstreamResponse

{% if cookiecutter.metrics -%}
# Probes and scrapes arrive every few seconds and say nothing about the traffic.
_UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})
{%- else -%}
# Probes arrive every few seconds and say nothing about the traffic.
_UNTRACED = frozenset({"/healthz", "/readyz"})
{%- endif %}
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# A span is named after its method, or `HTTP` for any other, so no caller can add span names.
_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
_NO_SPAN = nullcontext(None)


class _ScopeHeaders(Getter[Scope]):
    """Reads the trace context from the request's headers as the server handed them over."""

    def get(self, carrier: Scope, key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for field, value in carrier["headers"] if field == name]
        return values or None

    def keys(self, carrier: Scope) -> list[str]:
        return [field.decode("latin-1") for field, _ in carrier["headers"]]


_SCOPE_HEADERS = _ScopeHeaders()


class Tracing:
    """OpenTelemetry for one app: its spans go to `provider`, or none are made without one."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(__name__) if provider is not None else None

    @classmethod
    def from_environment(cls) -> "Tracing":
        """The SDK as the `OTEL_*` variables configure it, if they name an endpoint."""
        if not any(os.environ.get(name) for name in _ENDPOINTS):
            return cls(None)
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def server_span(self, scope: Scope) -> AbstractContextManager[Span | None]:
        """A server span for the request, current while it is handled; none for probes{{ " and scrapes" if cookiecutter.metrics }}.

        Its name and status are given once the request is answered (`end_server_span`).
        """
        if self.tracer is None or scope["path"] in _UNTRACED:
            return _NO_SPAN
        return self._server_span(self.tracer, scope)

    @contextmanager
    def _server_span(self, tracer: Tracer, scope: Scope) -> Iterator[Span]:
        method = scope.get("method", "GET")  # a WebSocket handshake is a GET
        attributes = {
            "http.request.method": method if method in _METHODS else "_OTHER",
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        with tracer.start_as_current_span(
            method if method in _METHODS else "HTTP",
            context=extract(scope, getter=_SCOPE_HEADERS),
            kind=SpanKind.SERVER,
            attributes=attributes,
        ) as span:
            yield span

    def traced(self, pool: Pool) -> Pool:
        """`pool` with a client span for each call, its context sent in `traceparent`."""
        if self.tracer is None:
            return pool
        return TracedPool(pool, self.tracer)


def end_server_span(span: Span | None, method: str, route: str, status: int) -> None:
    """Name the server span after the route that answered, and say how it ended."""
    if span is None or not span.is_recording():
        return
    if route:
        span.update_name(f"{method if method in _METHODS else 'HTTP'} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(StatusCode.ERROR)


class TracedPool:
    """A client span around each upstream call, named and described as OpenTelemetry's HTTP
    conventions say, ending when the response headers arrive.

    Written here rather than taken from opentelemetry-instrumentation-httpx, whose wrapper spent
    about a fifth of the service's time on each small request, and would not see the relay's
    calls, which do not go through httpx.
    """

    def __init__(self, pool: Pool, tracer: Tracer) -> None:
        self.pool = pool
        self.tracer = tracer

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        name = request.method if request.method in _METHODS else "HTTP"
        with self.tracer.start_as_current_span(name, kind=SpanKind.CLIENT) as span:
            origin = request.origin
            if span.is_recording():
                span.set_attributes(
                    {
                        "http.request.method": request.method,
                        "server.address": origin.host,
                        "server.port": origin.port,
                        "url.full": origin.url + request.target.decode("ascii"),
                    }
                )
            # Replaces any `traceparent` the caller sent: the upstream's parent is this span.
            context: dict[str, str] = {}
            inject(context)
            request.headers = [
                (field, value)
                for field, value in request.headers
                if field.lower() not in _TRACE_HEADERS
            ] + [(key.encode("latin-1"), value.encode("latin-1")) for key, value in context.items()]
            try:
                response = await self.pool.send(request)
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                raise
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 400:
                span.set_attribute("error.type", str(response.status))
                span.set_status(StatusCode.ERROR)
            return response

    async def aclose(self) -> None:
        await self.pool.aclose()
