"""The tests' fixtures: the upstreams, the relays in front of them, and the service."""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

{{ cookiecutter.__httpx_import }}
import pytest

from tests.servers import CLIENT_TLS, Service, relay_settings, run_service, serve, serve_relay
from tests.upstream_app import Recorder, create_upstream
from tests.websocket_upstream import WebSocketUpstream
from tests.wire import RawUpstream
{%- set prefixes = {"both": '"/stream", "/buffered"', "stream": '"/stream"', "buffered": '"/buffered"'} %}

# The relay endpoints this service has; tests that hold for every variant run once for each.
RELAY_PREFIXES = [{{ prefixes[cookiecutter.response_mode] }}]

StartRelay = Callable[..., AbstractContextManager[str]]


@pytest.fixture(scope="session")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="session")
def upstream(recorder: Recorder) -> Iterator[str]:
    """Base URL of the test upstream (its API lives under /api/)."""
    # Quiet: some routes misbehave on purpose, and the server would log each time.
    with serve(create_upstream(recorder), log_level="critical") as url:
        yield url


@pytest.fixture
def start_relay(upstream: str) -> StartRelay:
    """Start a relay with some settings changed: `with start_relay(upstream_timeout=1) as url:`."""

    def start(**overrides: Any) -> AbstractContextManager[str]:
        return serve_relay(relay_settings(upstream, **overrides))

    return start


@pytest.fixture(scope="session")
def relay(upstream: str) -> Iterator[str]:
    """Base URL of a relay with default settings, shared by the tests that need nothing else."""
    with serve_relay(relay_settings(upstream)) as url:
        yield url


@pytest.fixture(scope="session")
def raw_upstream() -> Iterator[RawUpstream]:
    """An upstream that records requests as bytes and answers with the bytes a test scripts."""
    with RawUpstream().running() as upstream:
        yield upstream


@pytest.fixture(scope="session")
def ws_upstream() -> Iterator[WebSocketUpstream]:
    """A WebSocket upstream no one here wrote (the `websockets` library's server)."""
    with WebSocketUpstream().running() as upstream:
        yield upstream


@pytest.fixture(scope="session")
def wire_relay(raw_upstream: RawUpstream) -> Iterator[str]:
    """A relay in front of `raw_upstream` (base path /api/), with one pooled connection.

    So each exchange reuses the last one's connection, if the relay judged it clean. A caller's
    body may pause for 0.2 s at most: it is the arriving pieces that are timed, not the
    machine, so a short limit is safe.
    """
    settings = relay_settings(
        raw_upstream.url, upstream_max_connections=1, upstream_timeout=2, client_body_timeout=0.2
    )
    with serve_relay(settings) as url:
        yield url


@pytest.fixture
def client(relay: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=relay, timeout=10, verify=CLIENT_TLS) as client:
        yield client


@pytest.fixture(params=RELAY_PREFIXES)
def prefix(request: pytest.FixtureRequest) -> str:
    """Each relay endpoint prefix this service has, in turn."""
    value: str = request.param
    return value


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# The shared service's pool: smaller than the load some tests put on it.
SERVICE_POOL = 100
{%- if cookiecutter.response_mode != "stream" %}
# Its limit on a buffered body: small enough to be reached quickly.
SERVICE_BUFFERED_MAX_BYTES = 1024 * 1024
{%- endif %}


@pytest.fixture(scope="session")
def service(upstream: str) -> Iterator[Service]:
    """The service in its own process as in production, shared by the tests that need one.

    Tests that read its log read only their own part (`log_mark`), and tests that measure its
    memory reset the peak first (`reset_peak_rss`).
    """
    settings = {
        "LOG_FORMAT": "plain",
        "UPSTREAM_MAX_CONNECTIONS": str(SERVICE_POOL),
        # Hundreds of requests at once keep a busy machine's cores busier still: these tests
        # are about load, not deadlines (those have tests of their own), so none is tight.
        "UPSTREAM_POOL_TIMEOUT": "30",
        "UPSTREAM_CONNECT_TIMEOUT": "30",
        # Some tests fail on purpose: the breaker they would open is tested on relays of its own.
        "UPSTREAM_BREAKER": "false",
{%- if cookiecutter.response_mode != "stream" %}
        "BUFFERED_MAX_BYTES": str(SERVICE_BUFFERED_MAX_BYTES),
{%- endif %}
    }
    with run_service(upstream, **settings) as service:
        yield service
