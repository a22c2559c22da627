"""Traces: a server span per request, a client span per upstream call, one trace end to end."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

{{ cookiecutter.__httpx_import }}
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.tracing import Tracing

from tests.conftest import RELAY_PREFIXES
from tests.servers import relay_settings, run_service, serve, serve_service
from tests.websocket_upstream import WebSocketUpstream, session_to
from tests.wire import key

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """Every span the traced relay ends, kept in memory."""
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def traced_relay(upstream: str, spans: InMemorySpanExporter) -> Iterator[str]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with serve(create_app(relay_settings(upstream), Tracing(provider))) as url:
        yield url


def traceparents(echoed: httpx.Response) -> list[str]:
    """The `traceparent` headers the upstream received, as its echo reports them."""
    return [value for name, value in echoed.json()["headers"] if name.lower() == "traceparent"]


def traceparent_of(span: ReadableSpan) -> str:
    """The `traceparent` that names `span` as the parent (W3C trace context, version 00)."""
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def one_span(spans: InMemorySpanExporter, kind: SpanKind) -> ReadableSpan:
    """The one span of `kind`, once ended: a server span ends as its response is sent, so it may
    end just after the caller has read that response."""
    deadline = time.monotonic() + 30
    while not (ended := [span for span in spans.get_finished_spans() if span.kind is kind]):
        assert time.monotonic() < deadline, f"no {kind.name} span ended"
        time.sleep(0.01)
    (span,) = ended
    return span


def test_the_callers_trace_continues_through_the_relay_to_the_upstream(
    traced_relay: str, spans: InMemorySpanExporter, prefix: str
) -> None:
    spans.clear()
    echoed = httpx.get(f"{traced_relay}{prefix}/echo/orders", headers={"traceparent": TRACEPARENT})
    assert echoed.status_code == 200
    server = one_span(spans, SpanKind.SERVER)
    client = one_span(spans, SpanKind.CLIENT)
    assert server.name == "GET " + prefix + "/{path}"
    assert server.context is not None
    assert client.context is not None
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == CALLER_SPAN_ID
    assert client.parent is not None
    assert client.parent.span_id == server.context.span_id
    # One traceparent upstream, the caller's replaced: same trace, the client span as parent.
    assert traceparents(echoed) == [traceparent_of(client)]
    assert traceparent_of(client).startswith(f"00-{TRACE_ID}-")
    assert client.name == "GET"
    assert client.attributes is not None
    assert client.attributes["http.request.method"] == "GET"
    assert client.attributes["http.response.status_code"] == 200
    assert client.attributes["server.address"] == "127.0.0.1"
    assert str(client.attributes["url.full"]).endswith("/echo/orders")


def test_a_failed_upstream_call_is_an_error_span_saying_what_failed(
    traced_relay: str, spans: InMemorySpanExporter, prefix: str
) -> None:
    spans.clear()
    assert httpx.get(f"{traced_relay}{prefix}/status/503").status_code == 503
    client = one_span(spans, SpanKind.CLIENT)
    assert client.status.status_code is StatusCode.ERROR
    assert client.attributes is not None
    assert client.attributes["error.type"] == "503"


def test_a_request_without_a_trace_starts_one(
    traced_relay: str, spans: InMemorySpanExporter, prefix: str
) -> None:
    spans.clear()
    echoed = httpx.get(f"{traced_relay}{prefix}/echo/orders")
    assert traceparents(echoed) == [traceparent_of(one_span(spans, SpanKind.CLIENT))]


def test_without_an_endpoint_no_span_is_made_and_the_callers_trace_passes_as_it_came(
    upstream: str, monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    for name in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]:
        monkeypatch.delenv(name, raising=False)
    with serve(create_app(relay_settings(upstream))) as relay:
        continued = httpx.get(f"{relay}{prefix}/echo/orders", headers={"traceparent": TRACEPARENT})
        started = httpx.get(f"{relay}{prefix}/echo/orders")
    assert traceparents(continued) == [TRACEPARENT]
    assert traceparents(started) == []


def test_a_websocket_session_is_a_server_span_and_its_handshake_a_client_span(
    ws_upstream: WebSocketUpstream, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    name = key()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = create_app(relay_settings(ws_upstream.url), Tracing(provider))
    with serve_service(app, app.settings) as url:
        target = f"{url.replace('http://', 'ws://')}{RELAY_PREFIXES[0]}/echo/{name}"
        with session_to(target, additional_headers={"traceparent": TRACEPARENT}) as caller:
            caller.send("hello")
            assert caller.recv(timeout=10) == "hello"
    received = ws_upstream.session(name).headers.get_all("traceparent")
    server, client = one_span(spans, SpanKind.SERVER), one_span(spans, SpanKind.CLIENT)
    assert server.name == "GET " + RELAY_PREFIXES[0] + "/{path}"
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 101
    assert server.context is not None
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert client.attributes is not None
    assert client.attributes["http.response.status_code"] == 101
    assert received == [traceparent_of(client)]


def test_probes_are_not_traced(traced_relay: str, spans: InMemorySpanExporter) -> None:
    spans.clear()
    assert httpx.get(f"{traced_relay}/healthz").status_code == 200
    assert httpx.get(f"{traced_relay}/readyz").status_code == 200
    assert spans.get_finished_spans() == ()


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP receiver on loopback: it keeps each export's path and body, and says 200."""

    def __init__(self) -> None:
        self.exports: list[tuple[str, bytes]] = []
        self.arrived = threading.Event()
        super().__init__(("127.0.0.1", 0), _CollectorHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _CollectorHandler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.exports.append((self.path, body))
        self.server.arrived.set()
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the test reads what arrived, not a log


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server
        server.shutdown()


@pytest.mark.slow
def test_the_service_exports_over_otlp_and_logs_the_trace_id(
    upstream: str, collector: Collector, prefix: str
) -> None:
    settings = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "relay-under-test",
        # Export each batch at once rather than every 5 s.
        "OTEL_BSP_SCHEDULE_DELAY": "10",
        "LOG_FORMAT": "json",
    }
    with run_service(upstream, **settings) as service:
        mark = service.log_mark()
        response = httpx.get(
            f"{service.url}{prefix}/echo/orders", headers={"traceparent": TRACEPARENT}
        )
        assert response.status_code == 200
        assert collector.arrived.wait(30), f"no spans were exported:\n{service.log()}"
        (line,) = service.log_lines_with(f"GET {prefix}/echo/orders", seconds=30, since=mark)
    access = json.loads(line)
    assert access["trace_id"] == TRACE_ID
    assert access["request_id"] == response.headers["x-request-id"]
    path, body = collector.exports[0]
    assert path == "/v1/traces"
    assert bytes.fromhex(TRACE_ID) in body
    assert b"relay-under-test" in body
