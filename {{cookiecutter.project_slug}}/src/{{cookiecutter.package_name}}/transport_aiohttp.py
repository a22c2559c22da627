"""The connection pool on aiohttp: one shared session, made to relay faithfully.

aiohttp's client is much faster under concurrency than httpx's own transport, but on its own it
has no pool timeout, reports some failures under other names, and changes the request: it
re-quotes the URL, joins repeated headers, adds headers of its own, and lets a connection whose
exchange ended unclearly carry the next one. This pool sends each request byte for byte, counts
connections itself (so a full pool raises `PoolTimeout`), raises each failure as the httpx
exception that names it (so callers get the right 502, 503 or 504), reads bodies as they
arrive, and reuses a connection only after a clean exchange (see `framing.py`).
"""

import asyncio
import functools
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, cast

import aiohttp
{{ cookiecutter.__httpx_import }}
import yarl
from aiohttp.client_proto import ResponseHandler

from {{ cookiecutter.package_name }}.errors import MalformedResponse
from {{ cookiecutter.package_name }}.framing import ResponseFraming
from {{ cookiecutter.package_name }}.headers import RawHeaders
{%- if cookiecutter.metrics %}
from {{ cookiecutter.package_name }}.metrics import PoolStatus
{%- endif %}
from {{ cookiecutter.package_name }}.pool import UpstreamRequest, UpstreamResponse

# Bytes of a switched connection held unread before the socket is no longer read.
TUNNEL_BUFFER_BYTES = 64 * 1024
# Headers aiohttp would add of its own accord: the relay sends only what the caller sent.
_AUTO_HEADERS = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
# From the most specific aiohttp error to the most general: the first match names the failure.
_ERRORS: list[tuple[type[Exception], type[httpx.TransportError]]] = [
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
]


def translated(exc: aiohttp.ClientError) -> httpx.TransportError:
    """The httpx exception that says what an aiohttp failure was; for most, a broken response."""
    message = str(exc) or type(exc).__name__
    for aiohttp_error, httpx_error in _ERRORS:
        if isinstance(exc, aiohttp_error):
            return httpx_error(message)
    return httpx.RemoteProtocolError(message)


def aiohttp_headers(raw: RawHeaders) -> list[tuple[str, str]]:
    """The request's headers for aiohttp, each line kept apart and its bytes unchanged.

    aiohttp writes header values as UTF-8, so a value is decoded as UTF-8 to come out as the
    same bytes; a value that is not UTF-8 (a bare latin-1 byte) cannot, and is refused.
    """
    try:
        # aiohttp frames a streamed body itself.
        return [
            (name.decode("ascii"), value.decode("utf-8"))
            for name, value in raw
            if name.lower() != b"transfer-encoding"
        ]
    except UnicodeDecodeError:
        names = [name for name, value in raw if not _is_utf8(value)] or [b"?"]
        raise httpx.LocalProtocolError(
            f"the value of header {names[0].decode('ascii', 'replace')!r} is not UTF-8, which "
            "the aiohttp transport cannot send unchanged"
        ) from None


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _Tunnel:
    """The bytes of a connection switched to another protocol, both ways, with flow control:
    the socket is not read while `TUNNEL_BUFFER_BYTES` wait unread, and it is not `ready` for
    more while its send buffer is full."""

    def __init__(self, transport: asyncio.Transport, first: bytes, *, writable: bool) -> None:
        self._transport = transport
        self._chunks = [first] if first else []
        self._size = len(first)
        self._ended = False
        self._paused = False
        self._readable = asyncio.Event()
        self.writable = asyncio.Event()
        if writable:
            self.writable.set()

    def received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        self._readable.set()
        if self._size >= TUNNEL_BUFFER_BYTES and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def ended(self) -> None:
        self._ended = True
        self._readable.set()
        self.writable.set()

    def abort(self) -> None:
        """Close the connection now: bytes an upstream has not read would keep it open."""
        self.ended()
        self._transport.abort()

    async def read(self) -> bytes:
        while not self._chunks:
            if self._ended:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            self._transport.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        if not self._ended:
            self._transport.write(data)

    @property
    def ready(self) -> bool:
        return self.writable.is_set()

    async def drain(self) -> None:
        await self.writable.wait()


class _GuardedProtocol(ResponseHandler):
    """aiohttp's connection protocol, its bytes followed by `ResponseFraming`.

    aiohttp hands a connection back to its pool as soon as a body ends, before it parses what
    follows in the same piece; this protocol closes a connection whose exchange did not end
    cleanly, so the pool drops it, and fails a response whose head has a bare LF. After a 101,
    the bytes that follow its head are the new protocol's: they go to `tunnel`, not to aiohttp.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_head_bytes: int) -> None:
        super().__init__(loop)
        self._framing = ResponseFraming(max_head_bytes)
        self._write_paused = False
        self.tunnel: _Tunnel | None = None

    def set_response_params(self, **params: Any) -> None:
        super().set_response_params(**params)
        # Called as each request is sent: its response comes next.
        self._framing.expect(head=params.get("skip_payload", False))

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.received(data)
            return
        try:
            taken = self._framing.feed(data)
        except MalformedResponse as exc:
            # Raised as it is to whoever waits for this response.
            self.set_exception(exc)
            if self.transport is not None:
                self.transport.close()
            return
        if self._framing.switched and self.transport is not None:
            self.force_close()  # never back to the pool
            self.tunnel = _Tunnel(self.transport, data[taken:], writable=not self._write_paused)
            data = data[:taken]
        super().data_received(data)
        if not self._framing.reusable and self._framing.done:
            self.force_close()
            if self.transport is not None:
                self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._write_paused = True
        if self.tunnel is not None:
            self.tunnel.writable.clear()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._write_paused = False
        if self.tunnel is not None:
            self.tunnel.writable.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.tunnel is not None:
            self.tunnel.ended()
        super().connection_lost(exc)


class _GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector whose connections use `_GuardedProtocol`."""

    def __init__(self, max_head_bytes: int, **options: Any) -> None:
        super().__init__(**options)
        # Not public API, hence the upper bound on aiohttp in pyproject.toml.
        factory = functools.partial(
            _GuardedProtocol, loop=self._loop, max_head_bytes=max_head_bytes
        )
        self._factory = cast("functools.partial[ResponseHandler]", factory)


async def _chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body a piece at a time, as received: `iter_any` would join what has piled up, a copy."""
    content = response.content
    try:
        while not content.at_eof():
            chunk, _ = await content.readchunk()
            if chunk:  # empty at the end of each HTTP chunk (and of the body)
                yield chunk
    except aiohttp.ClientError as exc:
        raise translated(exc) from exc


async def _pieces(body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    async for piece in body:
        yield piece


class ConnectionPool:
    """One aiohttp session: at most `max_connections` connections to the upstream at once, each
    reused only after a clean exchange, and a request waits at most the pool timeout for one."""

    def __init__(self, limits: httpx.Limits, max_header_bytes: int, max_tunnels: int) -> None:
        self._max_connections = limits.max_connections or 100
        self._max_tunnels = max_tunnels
        self._keepalive_expiry = limits.keepalive_expiry
        self._max_header_bytes = max_header_bytes
        self._ssl = httpx.create_ssl_context()
        self._slots = asyncio.Semaphore(self._max_connections)
        # Connections switched to another protocol (WebSockets) live long: they are counted
        # apart, so that they never take the connections that requests need.
        self._tunnel_slots = asyncio.Semaphore(max_tunnels)
{%- if cookiecutter.metrics %}
        self._in_use = 0
        self._waiting = 0
{%- endif %}
        self._session: aiohttp.ClientSession | None = None
        # aiohttp's timeouts for each (connect, read) asked for: the relay asks for two.
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}

    def _timeout(self, connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get((connect, read))
        if timeout is None:
            if len(self._timeouts) > 16:  # an endpoint of yours asks for many: keep the last
                self._timeouts.clear()
            timeout = aiohttp.ClientTimeout(sock_connect=connect, sock_read=read)
            self._timeouts[connect, read] = timeout
        return timeout

    def _get_session(self) -> aiohttp.ClientSession:
        # Made on the first request, inside the running event loop, as aiohttp requires.
        if self._session is None:
            connector = _GuardedConnector(
                self._max_header_bytes,
                limit=self._max_connections + self._max_tunnels,
                keepalive_timeout=self._keepalive_expiry,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # A shared session must never keep one caller's cookies and send them for another.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=_AUTO_HEADERS,
                auto_decompress=False,
                # As large as the relay accepts: `framing.py` refuses larger heads first.
                max_line_size=self._max_header_bytes,
                max_field_size=self._max_header_bytes,
                max_headers=self._max_header_bytes // 8,
            )
            # aiohttp sends an idempotent request again, once, whenever its connection drops:
            # `resilience.py` decides on retries, within a budget. Not public API.
            self._session._retry_connection = False
        return self._session

    async def _acquire_slot(self, slots: asyncio.Semaphore, pool_timeout: float | None) -> None:
        """Take a connection slot, waiting at most `pool_timeout` when none is free."""
        if not slots.locked():
            # Free slot: taken at once, without the cost of a timeout.
            await slots.acquire()
{%- if cookiecutter.metrics %}
            self._in_use += 1
{%- endif %}
            return
{%- if cookiecutter.metrics %}
        self._waiting += 1
{%- endif %}
        try:
            async with asyncio.timeout(pool_timeout):
                await slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no upstream connection became free in time") from None
{%- if cookiecutter.metrics %}
        finally:
            self._waiting -= 1
        self._in_use += 1
{%- endif %}

    def _release_slot(self, slots: asyncio.Semaphore) -> None:
{%- if cookiecutter.metrics %}
        self._in_use -= 1
{%- endif %}
        slots.release()
{%- if cookiecutter.metrics %}

    def pool_status(self) -> PoolStatus:
        """Connections in use or being opened, idle ones kept for reuse, and requests waiting."""
        idle = 0
        if self._session is not None:
            # aiohttp keeps idle connections in a deque per host: not public API.
            connector: Any = self._session.connector
            idle = sum(len(connections) for connections in connector._conns.values())
        return PoolStatus(active=self._in_use, idle=idle, waiting=self._waiting)
{%- endif %}

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        timeouts = request.timeouts
        slots = self._tunnel_slots if request.upgrade else self._slots
        await self._acquire_slot(slots, timeouts.get("pool"))
        body = request.body
        try:
            response = await self._get_session().request(
                request.method,
                # Encoded: aiohttp would otherwise re-quote the path and query.
                yarl.URL(request.origin.url + request.target.decode("ascii"), encoded=True),
                headers=aiohttp_headers(request.headers),
                data=body if body is None or isinstance(body, bytes) else _pieces(body),
                allow_redirects=False,
                timeout=self._timeout(timeouts.get("connect"), timeouts.get("read")),
            )
        except aiohttp.ClientError as exc:
            self._release_slot(slots)
            raise translated(exc) from exc
        except BaseException:
            self._release_slot(slots)
            raise

        tunnel = None
        if request.upgrade and response.status == 101 and response.connection is not None:
            tunnel = cast("_GuardedProtocol", response.connection.protocol).tunnel

        async def close() -> None:
            try:
                if tunnel is not None:
                    tunnel.abort()
                # Back to the pool only if the body was read to its end; else it is closed.
                response.release()
                await response.wait_for_close()
            finally:
                self._release_slot(slots)

        return UpstreamResponse(
            response.status,
            list(response.raw_headers),
            _chunks(response),
            close,
            reason=(response.reason or "").encode("latin-1", "replace"),
            tunnel=tunnel,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
