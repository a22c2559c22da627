"""The connection pool on httpcore, httpx's own, reusing a connection only when it is clean.

httpcore, under the client's default transport, parses responses leniently and keeps whatever
follows the end of a response for the next response on that connection, so a broken or hostile
upstream could hand one caller's leftovers to the next. This transport runs the same pool with
every connection's bytes passing through `ResponseFraming`: a connection whose exchange did not
end cleanly is reported as readable, which makes the pool discard it instead of reusing it, and
a response head with a bare LF fails its exchange.

It speaks HTTP/1.1, and HTTP/2 when asked (`UPSTREAM_HTTP2`) and the upstream agrees during the
TLS handshake. HTTP/2 frames every message itself, so no bytes of one exchange can pass for
another's: its connections are not followed byte by byte, only their header size is bounded.
Requests that switch protocols (WebSocket handshakes) go through a pool of their own, on
HTTP/1.1, which is where a 101 can switch a connection: it hands over the connection's stream.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

{{ cookiecutter.__httpcore_import }}
{{ cookiecutter.__httpx_import }}

from {{ cookiecutter.package_name }}.errors import MalformedResponse
from {{ cookiecutter.package_name }}.framing import ResponseFraming
{%- if cookiecutter.metrics %}
from {{ cookiecutter.package_name }}.metrics import PoolStatus
{%- endif %}
from {{ cookiecutter.package_name }}.pool import UpstreamRequest, UpstreamResponse

# From the most specific httpcore error to the most general: the first match names the failure.
_ERRORS: list[tuple[type[Exception], type[httpx.TransportError]]] = [
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
]


_FAILURES = tuple(httpcore_error for httpcore_error, _ in _ERRORS)
# Bytes of a switched connection read at a time, and held to be written before the writer is
# asked to wait; and how the connection can fail.
TUNNEL_BUFFER_BYTES = 64 * 1024
_TUNNEL_FAILURES: tuple[type[Exception], ...] = (*_FAILURES, OSError)


def translated(exc: Exception) -> Exception:
    """The client's exception that says what an httpcore failure was."""
    for httpcore_error, httpx_error in _ERRORS:
        if isinstance(exc, httpcore_error):
            return httpx_error(str(exc))
    return exc


class _GuardedStream(httpcore.AsyncNetworkStream):
    """A connection's socket, its bytes followed by `ResponseFraming`."""

    def __init__(self, stream: httpcore.AsyncNetworkStream, max_head_bytes: int) -> None:
        self._stream = stream
        self._framing = ResponseFraming(max_head_bytes)

    # The names of the parameters are httpcore's: hence the noqa.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        data = await self._stream.read(max_bytes, timeout)
        # Raises `MalformedResponse`, which fails the exchange and closes the connection.
        self._framing.feed(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if self._framing.done:
            # The start of a request: h11 writes a request's head in one piece.
            self._framing.expect(head=buffer.startswith(b"HEAD "))
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        tls = stream.get_extra_info("ssl_object")
        if tls is not None and tls.selected_alpn_protocol() == "h2":
            return stream
        return _GuardedStream(stream, self._framing.max_head_bytes)

    def get_extra_info(self, info: str) -> Any:
        # The pool asks whether an idle connection is readable before it reuses it: one whose
        # last exchange did not end cleanly answers yes, and is closed instead.
        if info == "is_readable" and not self._framing.reusable:
            return True
        return self._stream.get_extra_info(info)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens connections as anyio does, each one guarded."""

    def __init__(self, max_head_bytes: int) -> None:
        self._backend = httpcore.AnyIOBackend()
        self._max_head_bytes = max_head_bytes

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _GuardedStream(stream, self._max_head_bytes)

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


async def _chunks(stream: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The body as it arrives, without the empty chunks HTTP/2 can end it with."""
    try:
        async for chunk in stream:
            if chunk:
                yield chunk
    except _FAILURES as exc:
        raise translated(exc) from exc


class _Tunnel:
    """A switched connection's stream, read as the session asks and written by a task of its
    own, so that a write is taken at once; never failing: a broken connection reads as ended."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._ended = False
        self._chunks: list[bytes] = []
        self._size = 0
        self._pending = asyncio.Event()
        self._taken = asyncio.Event()
        self._taken.set()
        self._writer = asyncio.create_task(self._write_all())

    async def read(self) -> bytes:
        if self._ended:
            return b""
        try:
            data = await self._stream.read(TUNNEL_BUFFER_BYTES)
        except _TUNNEL_FAILURES:
            data = b""
        if not data:
            self._end()
        return data

    def write(self, data: bytes) -> None:
        if self._ended:
            return
        self._chunks.append(data)
        self._size += len(data)
        self._pending.set()
        if self._size >= TUNNEL_BUFFER_BYTES:
            self._taken.clear()

    @property
    def ready(self) -> bool:
        return self._taken.is_set()

    async def drain(self) -> None:
        await self._taken.wait()

    async def _write_all(self) -> None:
        while not self._ended:
            await self._pending.wait()
            self._pending.clear()
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            try:
                await self._stream.write(data)
            except _TUNNEL_FAILURES:
                self._end()
            self._taken.set()

    def _end(self) -> None:
        self._ended = True
        self._taken.set()

    async def aclose(self) -> None:
        self._end()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer


class ConnectionPool:
    """A connection pool whose connections carry another exchange only when clean."""

    def __init__(
        self, limits: httpx.Limits, max_header_bytes: int, max_tunnels: int, *, http2: bool = False
    ) -> None:
        self._max_header_bytes = max_header_bytes
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            http2=http2,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(max_header_bytes),
        )
        # Connections switched to another protocol (WebSockets) live long: they are counted
        # apart, so that they never take the connections that requests need. Its own TLS
        # context: httpcore sets the protocols a context offers (ALPN) to the pool's own.
        self._tunnels = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=max_tunnels,
            max_keepalive_connections=0,
            network_backend=_GuardedBackend(max_header_bytes),
        )

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        origin = request.origin
        url = httpcore.URL(
            scheme=origin.scheme.encode("ascii"),
            host=origin.host.encode("ascii"),
            port=origin.port,
            target=request.target,
        )
        core_request = httpcore.Request(
            request.method,
            url,
            headers=request.headers,
            content=request.body,
            extensions={"timeout": request.timeouts},
        )
        pool = self._tunnels if request.upgrade else self._pool
        try:
            response = await pool.handle_async_request(core_request)
        except _FAILURES as exc:
            raise translated(exc) from exc
        version = response.extensions.get("http_version", b"HTTP/1.1")
        if version == b"HTTP/2":
            size = sum(len(name) + len(value) + 4 for name, value in response.headers)
            if size > self._max_header_bytes:
                await response.aclose()
                raise MalformedResponse(
                    f"the response headers are larger than {self._max_header_bytes} bytes"
                )
        stream: Any = response.stream

        tunnel = None
        if request.upgrade and response.status == 101:
            tunnel = _Tunnel(response.extensions["network_stream"])

        async def close() -> None:
            if tunnel is not None:
                await tunnel.aclose()
            try:
                await response.aclose()
            except _FAILURES as exc:
                raise translated(exc) from exc

        return UpstreamResponse(
            response.status,
            response.headers,
            _chunks(stream),
            close,
            http_version=version,
            reason=response.extensions.get("reason_phrase", b""),
            tunnel=tunnel,
        )

{%- if cookiecutter.metrics %}

    def pool_status(self) -> PoolStatus:
        """Connections in use or being opened, idle ones kept for reuse, and requests waiting."""
        pools = (self._pool, self._tunnels)
        connections = [connection for pool in pools for connection in pool.connections]
        idle = sum(connection.is_idle() for connection in connections)
        # The pool's queue of requests is not public API.
        waiting = sum(request.is_queued() for pool in pools for request in pool._requests)
        return PoolStatus(active=len(connections) - idle, idle=idle, waiting=waiting)
{%- endif %}

    async def aclose(self) -> None:
        await self._tunnels.aclose()
        await self._pool.aclose()
