"""The aiohttp transport, made to wait for connections and report failures the way httpx does.

`httpx-aiohttp` is much faster under concurrency than the native transport, but on its own it
has no pool timeout (a full pool surfaces as `ConnectTimeout`), reports a refused connection
or a server hang-up as `ConnectTimeout` too, and lets some aiohttp errors escape unmapped. This
subclass counts connections itself, so a full pool raises `PoolTimeout`, translates each
failure from its aiohttp cause, so the relay answers 502, 503 and 504 correctly, and reads
bodies as they arrive.
"""

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import anyio
import {{ cookiecutter.httpx_package }}
from {{ cookiecutter.httpx_package }} import AsyncByteStream, Request, Response
from httpx_aiohttp{% if cookiecutter.httpx_package == "httpx2" %}.httpx2{% endif %}.transport import AiohttpResponseStream, AiohttpTransport


def translate(exc: Exception) -> Exception:
    """The httpx exception that says what really happened to an aiohttp request."""
    cause = exc.__cause__ if isinstance(exc, {{ cookiecutter.httpx_package }}.TransportError) else exc
    if isinstance(cause, aiohttp.ClientConnectorError):
        return {{ cookiecutter.httpx_package }}.ConnectError(str(cause))
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return {{ cookiecutter.httpx_package }}.ConnectTimeout(str(cause))
    if isinstance(cause, aiohttp.ServerTimeoutError):
        return {{ cookiecutter.httpx_package }}.ReadTimeout(str(cause))
    if isinstance(cause, aiohttp.ClientError):
        return {{ cookiecutter.httpx_package }}.RemoteProtocolError(str(cause) or type(cause).__name__)
    return exc


class _AiohttpBody(AsyncByteStream):
    """A response body read as aiohttp receives it, that gives its pool slot back when closed.

    httpx-aiohttp reads bodies in 16 KiB slices, each copied out of what arrived; handing on
    each piece as it arrived, uncopied, more than doubles the throughput of a large streamed body.
    """

    def __init__(self, stream: AiohttpResponseStream, release: Callable[[], None]) -> None:
        self._stream = stream
        # Not public API, hence the upper bound on httpx-aiohttp in pyproject.toml.
        self._content = stream._aiohttp_response.content
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            # A piece at a time, as received: `iter_any` joins what has piled up, a copy.
            while not self._content.at_eof():
                chunk, _ = await self._content.readchunk()
                if chunk:  # empty at the end of each HTTP chunk (and of the body)
                    yield chunk
        except Exception as exc:
            translated = translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._release is not None:
                self._release()
                self._release = None


class PooledAiohttpTransport(AiohttpTransport):
    """`AiohttpTransport` with a real pool timeout, honest errors and no cookie jar."""

    def __init__(self, limits: {{ cookiecutter.httpx_package }}.Limits) -> None:
        super().__init__(limits=limits, client=self._new_session)
        self._max_connections = limits.max_connections or 100
        self._slots = asyncio.Semaphore(self._max_connections)

    def _new_session(self) -> aiohttp.ClientSession:
        # Called on the first request, inside the running event loop, as aiohttp requires.
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        # A shared session must never keep one caller's cookies and send them for another.
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def _acquire_slot(self, request: Request) -> None:
        """Take a connection slot, waiting at most the pool timeout when none is free."""
        if not self._slots.locked():
            # Free slot: taken at once, without the cost of a timeout scope.
            await self._slots.acquire()
            return
        pool_timeout = request.extensions.get("timeout", {}).get("pool")
        try:
            with anyio.fail_after(pool_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise {{ cookiecutter.httpx_package }}.PoolTimeout("no upstream connection became free in time") from None

    async def handle_async_request(self, request: Request) -> Response:
        await self._acquire_slot(request)
        try:
            response = await super().handle_async_request(request)
        except Exception as exc:
            self._slots.release()
            translated = translate(exc)
            if translated is exc:
                raise
            raise translated from exc
        except BaseException:
            self._slots.release()
            raise
        assert isinstance(response.stream, AiohttpResponseStream)
        response.stream = _AiohttpBody(response.stream, self._slots.release)
        return response
