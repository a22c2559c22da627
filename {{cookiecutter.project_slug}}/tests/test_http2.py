"""HTTP/2 to the upstream (`UPSTREAM_HTTP2`): a real HTTP/2 server, over TLS, on 127.0.0.1.

The upstream is Hypercorn, with a certificate from a test authority (`trustme`) that the
service trusts through `SSL_CERT_FILE`, as a private authority would be trusted in production.
"""

import asyncio
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

{{ cookiecutter.__httpx_import }}
import pytest
import trustme
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect

from tests.conftest import RELAY_PREFIXES
from tests.servers import relay_settings, serve_relay


async def describe(request: Request) -> Response:
    """What the upstream saw: the protocol version, the path and the body's size."""
    body = await request.body()
    seen = {"http_version": request.scope["http_version"], "size": len(body)}
    return JSONResponse(seen, headers={"x-padding": "p" * int(request.query_params.get("pad", 0))})


async def echo(websocket: WebSocket) -> None:
    """A WebSocket session that sends back the HTTP version of its handshake, then every message."""
    await websocket.accept()
    await websocket.send_text(websocket.scope["http_version"])
    async for message in websocket.iter_text():
        await websocket.send_text(message)


upstream_app = Starlette(
    routes=[
        WebSocketRoute("/api/ws/{rest:path}", echo),
        Route("/api/{rest:path}", describe, methods=["GET", "POST"]),
    ]
)


@contextmanager
def serve_http2(certificate: trustme.LeafCert) -> Iterator[str]:
    """Hypercorn serving `upstream_app` over TLS (HTTP/2 or HTTP/1.1, as the client asks)."""
    with tempfile.TemporaryDirectory() as directory:
        pem = Path(directory) / "server.pem"
        certificate.private_key_and_cert_chain_pem.write_to_path(str(pem))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        config = Config()
        # Hypercorn takes the listening socket over, and closes it when it stops.
        config.bind = [f"fd://{sock.detach()}"]
        config.certfile = config.keyfile = str(pem)
        config.loglevel = "WARNING"
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        run = hypercorn_serve(upstream_app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        thread = threading.Thread(target=loop.run_until_complete, args=(run,), daemon=True)
        thread.start()
        try:
            yield f"https://127.0.0.1:{port}"
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def upstream_http2(authority: trustme.CA) -> Iterator[str]:
    with serve_http2(authority.issue_cert("127.0.0.1")) as url:
        yield url


@pytest.fixture
def trusted(authority: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The service trusts the test authority, as `SSL_CERT_FILE` makes it trust any."""
    with authority.cert_pem.tempfile() as ca_file:
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)
        yield


@pytest.mark.usefixtures("trusted")
@pytest.mark.parametrize("http2", [True, False], ids=["http2", "http1.1"])
def test_requests_go_over_http2_when_asked_on_both_relays(upstream_http2: str, http2: bool) -> None:
    settings = relay_settings(upstream_http2, upstream_http2=http2)
    expected = "2" if http2 else "1.1"
    with serve_relay(settings) as url, httpx.Client(base_url=url, timeout=10) as client:
        for prefix in RELAY_PREFIXES:
            response = client.get(f"{prefix}/anything")
            assert response.status_code == 200, response.text
            assert response.json() == {"http_version": expected, "size": 0}
            body = bytes(range(256)) * 400
            response = client.post(f"{prefix}/upload", content=body)
            assert response.json() == {"http_version": expected, "size": len(body)}


@pytest.mark.usefixtures("trusted")
def test_response_headers_over_the_limit_are_502_over_http2_too(upstream_http2: str) -> None:
    settings = relay_settings(upstream_http2, upstream_http2=True, max_header_bytes=4096)
    with serve_relay(settings) as url, httpx.Client(base_url=url, timeout=10) as client:
        for prefix in RELAY_PREFIXES:
            assert client.get(f"{prefix}/small?pad=1000").status_code == 200
            response = client.get(f"{prefix}/large?pad=8000")
            assert response.status_code == 502
            assert "larger than 4096 bytes" in response.json()["detail"]


@pytest.mark.usefixtures("trusted")
def test_websocket_sessions_go_over_http11_beside_http2_requests(upstream_http2: str) -> None:
    """A 101 cannot come over HTTP/2: a session opens on an HTTP/1.1 connection of its own, over
    the same TLS, while requests keep to HTTP/2."""
    settings = relay_settings(upstream_http2, upstream_http2=True)
    with serve_relay(settings) as url, httpx.Client(base_url=url, timeout=10) as client:
        for prefix in RELAY_PREFIXES:
            with connect(f"{url.replace('http://', 'ws://')}{prefix}/ws/chat") as caller:
                assert caller.recv(timeout=10) == "1.1"
                caller.send("hello")
                assert caller.recv(timeout=10) == "hello"
            assert client.get(f"{prefix}/anything").json()["http_version"] == "2"
