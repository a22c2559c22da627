"""Traces with OpenTelemetry: a server span for each request, a client span for each upstream call.

FastAPI makes the server spans itself, continuing the caller's W3C `traceparent`; the upstream
receives the same trace, with the client span as its parent. Everything is set through
OpenTelemetry's own environment variables (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`,
`OTEL_EXPORTER_OTLP_ENDPOINT`, ...): spans are sent over OTLP when an endpoint is set;
`OTEL_SDK_DISABLED=true` turns tracing off.

Without an endpoint no span is made at all: spans that go nowhere would cost over a third of the
service's small-request throughput, and the caller's `traceparent` then reaches the upstream
as it came, so the trace still joins up where the caller's spans are recorded.
"""

import os

{{ cookiecutter.__httpx_import }}
from fastapi.telemetry import TelemetryConfig
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import {{ "AsyncOpenTelemetryTransportHttpx2" if cookiecutter.httpx_package == "httpx2" else "AsyncOpenTelemetryTransport" }} as TracedTransport
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from starlette.types import Scope

{% if cookiecutter.metrics -%}
# Probes and scrapes arrive every few seconds and say nothing about the traffic.
_UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})
{%- else -%}
# Probes arrive every few seconds and say nothing about the traffic.
_UNTRACED = frozenset({"/healthz", "/readyz"})
{%- endif %}
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


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
{%- if cookiecutter.httpx_package == "httpx2" %}
        # The instrumentation annotates its httpx2 transport's argument with httpx's class, which
        # mypy sees only where some other package has installed httpx too.
        return TracedTransport(transport, tracer_provider=self.provider)  # type: ignore[arg-type,unused-ignore]
{%- else %}
        return TracedTransport(transport, tracer_provider=self.provider)
{%- endif %}
