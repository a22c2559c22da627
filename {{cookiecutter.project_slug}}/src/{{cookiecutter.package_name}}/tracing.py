"""Traces with OpenTelemetry: a server span for each request, a client span for each upstream call.

FastAPI makes the server spans itself, continuing the caller's W3C `traceparent`; the upstream
receives the same trace, with the client span as its parent. Everything is set through
OpenTelemetry's own environment variables (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`,
`OTEL_EXPORTER_OTLP_ENDPOINT`, ...): spans are sent over OTLP when an endpoint is set;
`OTEL_SDK_DISABLED=true` turns tracing off.

Without an endpoint no span is made at all: spans cost much of the service's small-request
throughput even when they go nowhere (docs/deploy.md has the figures). The caller's
`traceparent` then reaches the upstream as it came, so the trace still joins up wherever the
caller's spans are recorded.
"""

import os

{{ cookiecutter.__httpx_import }}
from fastapi.telemetry import TelemetryConfig
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, StatusCode, Tracer
from starlette.types import Scope

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


def _untraced(scope: Scope) -> bool:
    return scope["path"] in _UNTRACED


class Tracing:
    """OpenTelemetry for one app: its spans go to `provider`, or none are made without one."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider

    @classmethod
    def from_environment(cls) -> "Tracing":
        """The SDK as the `OTEL_*` variables configure it, if they name an endpoint."""
        if not any(os.environ.get(name) for name in _ENDPOINTS):
            return cls(None)
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def telemetry(self) -> TelemetryConfig:
        """FastAPI's own telemetry: a span for each request, none for probes{{ " and scrapes" if cookiecutter.metrics }}."""
        if self.provider is None:
            return {"tracing": False}
        return {"tracer_provider": self.provider, "exclude": _untraced}

    def traced(self, transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        """`transport` with a client span for each call, its context sent in `traceparent`."""
        if self.provider is None:
            return transport
        return TracedTransport(transport, self.provider.get_tracer(__name__))


class TracedTransport(httpx.AsyncBaseTransport):
    """A client span around each upstream call, named and described as OpenTelemetry's HTTP
    conventions say, ending when the response headers arrive.

    Written here rather than taken from opentelemetry-instrumentation-httpx, whose wrapper spent
    about a fifth of the service's time on each small request, parsing again what the request
    already holds.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport, tracer: Tracer) -> None:
        self.transport = transport
        self.tracer = tracer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        name = request.method if request.method in _METHODS else "HTTP"
        with self.tracer.start_as_current_span(name, kind=SpanKind.CLIENT) as span:
            if span.is_recording():
                url = request.url
                span.set_attributes(
                    {
                        "http.request.method": request.method,
                        "server.address": url.host,
                        "server.port": url.port or (443 if url.scheme == "https" else 80),
                        "url.full": str(url),
                    }
                )
            # Replaces any `traceparent` the caller sent: the upstream's parent is this span.
            inject(request.headers)
            try:
                response = await self.transport.handle_async_request(request)
            except Exception as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_attribute("error.type", str(response.status_code))
                span.set_status(StatusCode.ERROR)
            return response

    async def aclose(self) -> None:
        await self.transport.aclose()
