"""The aiohttp transport: httpx's interface on one aiohttp session, made to relay faithfully.

`httpx-aiohttp` is much faster under concurrency than the native transport, but on its own it
has no pool timeout (a full pool surfaces as `ConnectTimeout`), reports a refused connection
or a server hang-up as `ConnectTimeout` too, lets some aiohttp errors escape unmapped, and lets
aiohttp change the request: re-quoting its URL, joining repeated headers and adding headers of
its own, and lets a connection whose exchange ended unclearly carry the next one. This
transport sends each request itself, byte for byte, counts connections itself (so a full pool
raises `PoolTimeout`), translates each failure from its aiohttp cause (so the relay answers
502, 503 and 504 correctly), reads bodies as they arrive, and reuses a connection only after a
clean exchange (see `framing.py`).
"""

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import aiohttp
import anyio
{{ cookiecutter.__httpx_import }}
import yarl
from aiohttp.client_proto import ResponseHandler
from {{ cookiecutter.__aiohttp_transport }} import AiohttpTransport
from multidict import CIMultiDict

from {{ cookiecutter.package_name }}.framing import MalformedResponse, ResponseFraming
{%- if cookiecutter.metrics %}
from {{ cookiecutter.package_name }}.metrics import PoolStatus
{%- endif %}

# Headers aiohttp would add of its own accord: the relay sends only what the caller sent.
_AUTO_HEADERS = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
# From the most specific aiohttp error to the most general: the first match names the failure.
_ERRORS: list[tuple[type[Exception], type[httpx.TransportError]]] = [
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientError, httpx.RemoteProtocolError),
]


@contextmanager
def translated_errors() -> Iterator[None]:
    """Raise each aiohttp failure as the httpx exception that says what happened."""
    try:
        yield
    except Exception as exc:
        for aiohttp_error, httpx_error in _ERRORS:
            if isinstance(exc, aiohttp_error):
                raise httpx_error(str(exc) or type(exc).__name__) from exc
        raise


def aiohttp_headers(request: httpx.Request) -> CIMultiDict[str]:
    """The request's headers for aiohttp, each line kept apart and its bytes unchanged.

    aiohttp writes header values as UTF-8, so a value is decoded as UTF-8 to come out as the
    same bytes; a value that is not UTF-8 (a bare latin-1 byte) cannot, and is refused.
    """
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.raw:
        if name.lower() == b"transfer-encoding":
            continue  # aiohttp frames a streamed body itself
        try:
            headers.add(name.decode("ascii"), value.decode("utf-8"))
        except UnicodeDecodeError:
            raise httpx.LocalProtocolError(
                f"the value of header {name.decode('ascii', 'replace')!r} is not UTF-8, which "
                "the aiohttp transport cannot send unchanged"
            ) from None
    return headers


class _GuardedProtocol(ResponseHandler):
    """aiohttp's connection protocol, its bytes followed by `ResponseFraming`.

    aiohttp hands a connection back to its pool as soon as a body ends, before it parses what
    follows in the same piece; this protocol closes a connection whose exchange did not end
    cleanly, so the pool drops it, and fails a response whose head has a bare LF.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_head_bytes: int) -> None:
        super().__init__(loop)
        self._framing = ResponseFraming(max_head_bytes)

    def set_response_params(self, **params: Any) -> None:
        super().set_response_params(**params)
        # Called as each request is sent: its response comes next.
        self._framing.expect(head=params.get("skip_payload", False))

    def data_received(self, data: bytes) -> None:
        try:
            self._framing.feed(data)
        except MalformedResponse as exc:
            # Raised as it is to whoever waits for this response.
            self.set_exception(exc)
            if self.transport is not None:
                self.transport.close()
            return
        super().data_received(data)
        if self._framing.done and not self._framing.reusable:
            self.force_close()
            if self.transport is not None:
                self.transport.close()


class _GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector whose connections use `_GuardedProtocol`."""

    def __init__(self, max_head_bytes: int, **options: Any) -> None:
        super().__init__(**options)
        # Not public API, hence the upper bound on aiohttp in pyproject.toml.
        factory = functools.partial(
            _GuardedProtocol, loop=self._loop, max_head_bytes=max_head_bytes
        )
        self._factory = cast("functools.partial[ResponseHandler]", factory)


class _AiohttpBody(httpx.AsyncByteStream):
    """A response body read as aiohttp receives it, that gives its pool slot back when closed."""

    def __init__(self, response: aiohttp.ClientResponse, release: Callable[[], None]) -> None:
        self._response = response
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with translated_errors():
            # A piece at a time, as received: `iter_any` joins what has piled up, a copy.
            while not content.at_eof():
                chunk, _ = await content.readchunk()
                if chunk:  # empty at the end of each HTTP chunk (and of the body)
                    yield chunk

    async def aclose(self) -> None:
        try:
            # Back to the pool only if the body was read to its end; else the connection closes.
            self._response.release()
            await self._response.wait_for_close()
        finally:
            if self._release is not None:
                self._release()
                self._release = None


async def _body(stream: httpx.AsyncByteStream) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk


class UpstreamTransport(AiohttpTransport):
    """An httpx transport on one aiohttp session, with a real pool timeout and no cookie jar."""

    def __init__(self, limits: httpx.Limits, max_header_bytes: int, *, http2: bool = False) -> None:
        if http2:
            raise ValueError("the aiohttp transport speaks HTTP/1.1 only")
        super().__init__(limits=limits)
        self._max_connections = limits.max_connections or 100
        self._max_header_bytes = max_header_bytes
        self._slots = asyncio.Semaphore(self._max_connections)
{%- if cookiecutter.metrics %}
        self._in_use = 0
        self._waiting = 0
{%- endif %}
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Made on the first request, inside the running event loop, as aiohttp requires.
        if self._session is None:
            connector = _GuardedConnector(
                self._max_header_bytes,
                limit=self._max_connections,
                keepalive_timeout=self.limits.keepalive_expiry,
                ssl=self.ssl_context,
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
        return self._session

    async def _acquire_slot(self, request: httpx.Request) -> None:
        """Take a connection slot, waiting at most the pool timeout when none is free."""
        if not self._slots.locked():
            # Free slot: taken at once, without the cost of a timeout scope.
            await self._slots.acquire()
{%- if cookiecutter.metrics %}
            self._in_use += 1
{%- endif %}
            return
        pool_timeout = request.extensions.get("timeout", {}).get("pool")
{%- if cookiecutter.metrics %}
        self._waiting += 1
{%- endif %}
        try:
            with anyio.fail_after(pool_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no upstream connection became free in time") from None
{%- if cookiecutter.metrics %}
        finally:
            self._waiting -= 1
        self._in_use += 1
{%- endif %}

    def _release_slot(self) -> None:
{%- if cookiecutter.metrics %}
        self._in_use -= 1
{%- endif %}
        self._slots.release()
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

    async def _send(self, request: httpx.Request) -> aiohttp.ClientResponse:
        headers = aiohttp_headers(request)
        timeout = request.extensions.get("timeout", {})
        try:
            data: bytes | AsyncIterator[bytes] | None = request.content or None
        except httpx.RequestNotRead:
            data = _body(request.stream)  # type: ignore[arg-type]
        with translated_errors():
            return await self._get_session().request(
                request.method,
                # Encoded: aiohttp would otherwise re-quote the path and query.
                yarl.URL(str(request.url), encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
            )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._acquire_slot(request)
        try:
            response = await self._send(request)
        except BaseException:
            self._release_slot()
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_AiohttpBody(response, self._release_slot),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
