"""Real servers on 127.0.0.1 for the tests: the upstream API and the relay, both under uvicorn."""

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import {{ cookiecutter.httpx_package }}
import pytest
import uvicorn
from starlette.types import ASGIApp

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.settings import Settings

from tests.upstream_app import Recorder, create_upstream
{%- set prefixes = {"both": '"/stream", "/buffered"', "stream": '"/stream"', "buffered": '"/buffered"'} %}

# The relay endpoints this service has; tests that hold for every variant run once for each.
RELAY_PREFIXES = [{{ prefixes[cookiecutter.response_mode] }}]

StartRelay = Callable[..., AbstractContextManager[str]]


@contextmanager
def serve(app: ASGIApp, **options: Any) -> Iterator[str]:
    """Run `app` under uvicorn in a thread on a free loopback port; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options.setdefault("log_level", "warning")
    # A test that leaves a stream open must not hang the run on shutdown.
    options.setdefault("timeout_graceful_shutdown", 2)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def free_port() -> int:
    """A loopback port that nothing listens on (for an upstream that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(scope="session")
def upstream(recorder: Recorder) -> Iterator[str]:
    """Base URL of the test upstream (its API lives under /api/)."""
    # Quiet: some routes misbehave on purpose, and the server would log each time.
    with serve(create_upstream(recorder), log_level="critical") as url:
        yield url


def relay_settings(upstream: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"upstream_base_url": f"{upstream}/api/", "upstream_timeout": 5.0}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def start_relay(upstream: str) -> StartRelay:
    """Start a relay with some settings changed: `with start_relay(upstream_timeout=1) as url:`."""

    def start(**overrides: Any) -> AbstractContextManager[str]:
        return serve(create_app(relay_settings(upstream, **overrides)), proxy_headers=False)

    return start


@pytest.fixture(scope="session")
def relay(upstream: str) -> Iterator[str]:
    """Base URL of a relay with default settings, shared by the tests that need nothing else."""
    # Facing callers directly: their X-Forwarded-* headers are not trusted.
    with serve(create_app(relay_settings(upstream)), proxy_headers=False) as url:
        yield url


@pytest.fixture
def client(relay: str) -> Iterator[{{ cookiecutter.httpx_package }}.Client]:
    with {{ cookiecutter.httpx_package }}.Client(base_url=relay, timeout=10) as client:
        yield client


@pytest.fixture(params=RELAY_PREFIXES)
def prefix(request: pytest.FixtureRequest) -> str:
    """Each relay endpoint prefix this service has, in turn."""
    value: str = request.param
    return value


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
