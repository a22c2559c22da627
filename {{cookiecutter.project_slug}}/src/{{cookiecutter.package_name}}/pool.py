"""The shared upstream connection pool as the service uses it: one request out, one response back.

`transport.py` implements `Pool` on a real connection pool. The relay sends through it directly,
with the raw target and headers it has already checked. Endpoints of your own use the shared
`httpx.AsyncClient`, whose transport (`ClientTransport`) turns each httpx request into an
`UpstreamRequest` for the same pool. So both share one set of connections, limits and timeouts,
and the instruments that wrap the pool (metrics, traces) see every upstream call.

The relay does not go through `client.send`: it needs none of what that adds (URL joining and
parsing, default headers, cookies, auth, redirects, event hooks), and building httpx's request
and response objects cost more than its own checks.
"""

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, cast

{{ cookiecutter.__httpx_import }}

from {{ cookiecutter.package_name }}.errors import InvalidUpstreamResponse
from {{ cookiecutter.package_name }}.headers import RawHeaders

# Seconds for each step, by httpx's names: "connect", "read", "write", "pool".
Timeouts = dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: a scheme, host and port, and the URL they begin."""

    scheme: str
    host: str
    port: int
    url: str  # "https://api.example.com:443"

    @classmethod
    def of(cls, url: httpx.URL) -> "Origin":
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        bracketed = f"[{host}]" if ":" in host else host
        return cls(url.scheme, host, port, f"{url.scheme}://{bracketed}:{port}")


@dataclass(slots=True)
class UpstreamRequest:
    """A request as it goes on the wire: the headers are sent as they are, in order."""

    method: str
    origin: Origin
    target: bytes  # the path and query, percent-encoded
    headers: RawHeaders  # `Host` and the body's framing included
    body: bytes | AsyncIterable[bytes] | None
    timeouts: Timeouts
    # The event loop's time by which the response's headers must have come, if there is one.
    deadline: float | None = None
    # It asks to switch protocols (a WebSocket handshake): the check a 101 must pass to hand
    # over its connection (it raises `InvalidUpstreamResponse`).
    upgrade: Callable[["UpstreamResponse"], None] | None = None


class Tunnel(Protocol):
    """A connection the upstream switched to another protocol: its bytes, both ways.

    The connection is read only when asked to, so bytes the service does not read wait in the
    socket. Writes are taken at once; while the upstream is not reading them, `ready` is false
    and the writer should `drain()` before writing more.
    """

    async def read(self) -> bytes:
        """The bytes received since the last read; b"" once the connection has ended."""
        ...

    def write(self, data: bytes) -> None:
        """Send `data`; nothing happens once the connection has ended (`read` says so)."""
        ...

    @property
    def ready(self) -> bool:
        """Whether the upstream is taking what it is sent."""
        ...

    async def drain(self) -> None:
        """Wait until the upstream has taken what it was sent, or the connection ended."""
        ...


@dataclass(slots=True)
class UpstreamResponse:
    """A response whose body has not been read yet.

    `body` yields the bytes as received (still compressed, if they were), once. `aclose()` gives
    the connection back to the pool, to be reused only if the body was read to its end. A 101
    to a request that asked to switch protocols has no body: its connection is `tunnel` until
    `aclose()` closes it.
    """

    status: int
    headers: RawHeaders
    body: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]
    http_version: bytes = b"HTTP/1.1"
    reason: bytes = b""
    closed: bool = False
    tunnel: Tunnel | None = None

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            await self.close()


async def final(request: UpstreamRequest, response: UpstreamResponse) -> UpstreamResponse:
    """`response`, if its status can end an exchange, or it is the switch of protocols the
    request asked for; else it is closed, and the answer is malformed: an interim 1xx, a 101
    that no request asked for or that is not the one asked for, or a status past 599."""
    try:
        if response.tunnel is not None and request.upgrade is not None:
            request.upgrade(response)
        elif not 200 <= response.status <= 599:
            raise InvalidUpstreamResponse(f"the upstream answered with status {response.status}")
    except InvalidUpstreamResponse:
        await response.aclose()
        raise
    return response


class Pool(Protocol):
    """What the relay and the client's transport send through."""

    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: UpstreamResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.body:
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


class ClientTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface on a `Pool`: what the shared `httpx.AsyncClient` sends with."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body: bytes | AsyncIterable[bytes] | None
        try:
            body = request.content or None
        except httpx.RequestNotRead:
            body = cast("httpx.AsyncByteStream", request.stream)
        url = request.url
        response = await self.pool.send(
            UpstreamRequest(
                request.method,
                Origin.of(url),
                url.raw_path,
                request.headers.raw,
                body,
                request.extensions.get("timeout", {}),
            )
        )
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response),
            request=request,
            extensions={"http_version": response.http_version, "reason_phrase": response.reason},
        )

    async def aclose(self) -> None:
        await self.pool.aclose()
