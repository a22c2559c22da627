"""Upstream failures become prompt JSON errors (502, 503, 504), and the service keeps serving."""

import asyncio
import socket
import threading
from collections.abc import Iterator

{{ cookiecutter.__httpx_import }}
import pytest

from {{ cookiecutter.package_name }}.app import create_app

from tests.conftest import StartRelay
from tests.servers import refused_port, relay_settings, serve
from tests.upstream_app import Recorder


def assert_json_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"]


@pytest.fixture
def garbage_upstream() -> Iterator[str]:
    """A TCP server on loopback that answers every connection with bytes that are not HTTP."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"this is not HTTP\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    stop.set()
    thread.join(5)
    listener.close()


def test_upstream_down_is_502(upstream: str, prefix: str) -> None:
    with refused_port() as port:
        settings = relay_settings(upstream, upstream_base_url=f"http://127.0.0.1:{port}/")
        with serve(create_app(settings)) as url:
            response = httpx.get(f"{url}{prefix}/anything")
    assert_json_error(response, 502)


def test_garbage_from_upstream_is_502(upstream: str, garbage_upstream: str, prefix: str) -> None:
    settings = relay_settings(upstream, upstream_base_url=garbage_upstream)
    with serve(create_app(settings)) as url:
        response = httpx.get(f"{url}{prefix}/anything")
        assert_json_error(response, 502)
        assert httpx.get(f"{url}/healthz").status_code == 200


@pytest.mark.slow
def test_slow_upstream_is_504_promptly(start_relay: StartRelay, prefix: str) -> None:
    with start_relay(upstream_timeout=0.3) as url:
        response = httpx.get(f"{url}{prefix}/slow?seconds=3", timeout=2)
        assert_json_error(response, 504)
        assert httpx.get(f"{url}{prefix}/status/200").status_code == 200


@pytest.mark.slow
def test_exhausted_pool_is_503_with_retry_after_and_recovers(
    start_relay: StartRelay, recorder: Recorder, prefix: str
) -> None:
    name = "pool" + prefix.replace("/", "-")
    hold = recorder.hold(name)

    async def scenario(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            # The only pooled connection stays busy until the test releases it.
            holder = asyncio.create_task(client.get(f"{prefix}/held/{name}"))
            await asyncio.to_thread(hold.wait_until_arrived)
            refused = await client.get(f"{prefix}/status/200")
            assert_json_error(refused, 503)
            assert refused.headers["retry-after"] == "1"
            hold.released.set()
            assert (await holder).status_code == 200
            assert (await client.get(f"{prefix}/status/200")).status_code == 200

    with start_relay(upstream_max_connections=1, upstream_pool_timeout=0.2) as url:
        asyncio.run(scenario(url))


@pytest.mark.slow
def test_errors_do_not_leak_pooled_connections(upstream: str, prefix: str) -> None:
    settings = relay_settings(
        upstream, upstream_timeout=0.1, upstream_max_connections=2, upstream_pool_timeout=0.5
    )
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=5) as client:
        # One failure more than the pool has connections: had any leaked, the last would be 503.
        for _ in range(3):
            assert client.get(f"{prefix}/slow?seconds=1").status_code == 504
        assert client.get(f"{prefix}/status/200").status_code == 200
