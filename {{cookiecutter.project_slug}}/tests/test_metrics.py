"""Metrics at /metrics: what a Prometheus scrape sees after real requests to the relay."""

import asyncio
import time
from collections.abc import Callable

{{ cookiecutter.__httpx_import }}
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from tests.conftest import RELAY_PREFIXES, StartRelay
from tests.servers import refused_port, relay_settings, serve_relay
from tests.upstream_app import Recorder
from tests.websocket_upstream import WebSocketUpstream, session_to
from tests.wire import key

SERVER = "http_server_request_duration_seconds_count"
CLIENT = "http_client_request_duration_seconds_count"
CONNECTIONS = "http_client_open_connections"
PENDING = "http_client_connection_pending_requests"
SESSIONS_OPEN = "websocket_server_active_sessions"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of one scrape, by name and labels, read with Prometheus's own parser."""
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def scrape_when(url: str, ready: Callable[[Samples], bool], seconds: float = 10) -> Samples:
    """The first scrape that is `ready`: what ends as a response is sent is counted just after."""
    deadline = time.monotonic() + seconds
    while not ready(samples := scrape(url)):
        assert time.monotonic() < deadline, "the metrics never got there"
        time.sleep(0.01)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_counted(samples: Samples) -> float:
    return sum(count for (name, _), count in samples.items() if name == SERVER)


def test_requests_are_counted_by_route_template_never_by_path(relay: str, prefix: str) -> None:
    before = scrape(relay)
    response = httpx.get(f"{relay}{prefix}/echo/order-12345?page=2")
    assert response.status_code == 200
    after = scrape(relay)
    labels = {"http_request_method": "GET", "http_response_status_code": "200"}
    route = {"http_route": prefix + "/{path}"}
    assert value(after, SERVER, **labels, **route) - value(before, SERVER, **labels, **route) == 1
    client = {**labels, "error_type": ""}
    assert value(after, CLIENT, **client) - value(before, CLIENT, **client) == 1
    assert not any("order-12345" in str(labels) for _, labels in after)


def test_upstream_failures_are_counted_by_what_failed(relay: str, prefix: str) -> None:
    before = scrape(relay)
    assert httpx.get(f"{relay}{prefix}/status/503").status_code == 503
    with refused_port() as port, serve_relay(relay_settings(f"http://127.0.0.1:{port}")) as dead:
        assert httpx.get(f"{dead}{prefix}/anything").status_code == 502
        refused = scrape(dead)
    after = scrape(relay)
    status = {"http_request_method": "GET", "http_response_status_code": "503"}
    answered = value(after, CLIENT, **status, error_type="503")
    assert answered - value(before, CLIENT, **status, error_type="503") == 1
    failed = {"http_request_method": "GET", "http_response_status_code": ""}
    # Each attempt: the first, and UPSTREAM_RETRIES (2) more, since nothing was sent.
    assert value(refused, CLIENT, **failed, error_type="ConnectError") == 3
    retries = "http_client_request_retries_total"
    assert value(refused, retries, error_type="ConnectError") == 2


def test_metrics_are_neither_counted_nor_described_in_the_api(relay: str) -> None:
    first = scrape(relay)
    second = scrape(relay)
    assert requests_counted(second) == requests_counted(first)
    assert "/metrics" not in httpx.get(f"{relay}/openapi.json").json()["paths"]


def test_unknown_methods_cannot_add_series(relay: str, prefix: str) -> None:
    httpx.request("PROPFIND", f"{relay}{prefix}/echo/collection")
    samples = scrape(relay)
    methods = {dict(labels).get("http_request_method") for _, labels in samples}
    assert "_OTHER" in methods
    assert "PROPFIND" not in methods


def test_metrics_need_no_key_when_callers_do(start_relay: StartRelay, prefix: str) -> None:
    with start_relay(service_api_keys="secret-key") as url:
        assert httpx.get(f"{url}{prefix}/status/200").status_code == 401
        assert httpx.get(f"{url}/metrics").status_code == 200


def wait_for_pool(url: str, seconds: float = 30, **expected: float) -> Samples:
    """Scrape until the pool gauges read `active`, `idle` and `waiting` as expected."""
    deadline = time.monotonic() + seconds
    while True:
        samples = scrape(url)
        found = {
            "active": value(samples, CONNECTIONS, http_connection_state="active"),
            "idle": value(samples, CONNECTIONS, http_connection_state="idle"),
            "waiting": value(samples, PENDING),
        }
        if all(found[name] == count for name, count in expected.items()):
            return samples
        assert time.monotonic() < deadline, f"the pool read {found}, not {expected}"
        time.sleep(0.01)


def test_pool_gauges_show_connections_in_use_idle_and_callers_waiting(
    start_relay: StartRelay, recorder: Recorder, prefix: str
) -> None:
    name = "metrics-pool" + prefix.replace("/", "-")
    hold = recorder.hold(name)

    async def scenario(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            holder = asyncio.create_task(client.get(f"{prefix}/held/{name}"))
            await asyncio.to_thread(hold.wait_until_arrived)
            waiter = asyncio.create_task(client.get(f"{prefix}/status/200"))
            # The only connection is busy: the second request waits for it.
            await asyncio.to_thread(wait_for_pool, url, active=1, idle=0, waiting=1)
            hold.released.set()
            assert (await holder).status_code == 200
            assert (await waiter).status_code == 200
            await asyncio.to_thread(wait_for_pool, url, active=0, idle=1, waiting=0)

    with start_relay(upstream_max_connections=1, upstream_pool_timeout=30) as url:
        wait_for_pool(url, active=0, idle=0, waiting=0)
        asyncio.run(scenario(url))


def test_websocket_sessions_are_counted_by_how_they_ended_and_what_they_relayed(
    ws_upstream: WebSocketUpstream,
) -> None:
    ended_by_caller, refused = key(), key()
    with serve_relay(relay_settings(ws_upstream.url)) as url:
        relay = url.replace("http://", "ws://") + RELAY_PREFIXES[0]
        with session_to(f"{relay}/echo/{ended_by_caller}") as caller:
            caller.send("hello")
            caller.recv(timeout=10)
            during = scrape(url)
        with pytest.raises(InvalidStatus):
            session_to(f"{relay}/deny/{refused}").close()
        ws_upstream.session(ended_by_caller)
        after = scrape_when(url, lambda samples: value(samples, SESSIONS_OPEN) == 0)
    assert value(during, SESSIONS_OPEN) == 1
    sessions = "websocket_server_sessions_total"
    closed = {"websocket_close_code": "1000", "websocket_closed_by": "caller"}
    assert value(after, sessions, http_response_status_code="101", **closed) == 1
    refusal = {"websocket_close_code": "", "websocket_closed_by": ""}
    assert value(after, sessions, http_response_status_code="403", **refusal) == 1
    for direction in ("from_caller", "from_upstream"):
        assert value(after, "websocket_server_messages_total", direction=direction) == 1
        assert value(after, "websocket_server_message_bytes_total", direction=direction) == 5
