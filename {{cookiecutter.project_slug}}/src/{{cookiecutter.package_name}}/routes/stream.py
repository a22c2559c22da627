"""Streaming relay, `/stream/...`: upstream bytes go to the caller as they arrive.

The request body streams upstream too, and neither is ever held whole in memory.
"""

import logging
from collections.abc import AsyncIterator

import anyio
{{ cookiecutter.__httpx_import }}
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from {{ cookiecutter.package_name }}.errors import InvalidUpstreamResponse
from {{ cookiecutter.package_name }}.headers import RawHeaders, declared_length
from {{ cookiecutter.package_name }}.pool import UpstreamResponse
from {{ cookiecutter.package_name }}.relay import Incoming, open_exchange
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.upstream import Upstream

logger = logging.getLogger(__name__)

# A body of at most this many bytes is sent whole when it arrives whole (see `stream`).
SMALL_BODY_BYTES = 64 * 1024


async def stream(upstream: Upstream, settings: Settings, request: Incoming, send: Send) -> None:
    """Relay the request upstream and stream the response back (the request body streams too).

    Streaming costs a task per response, to notice the caller leaving. A body that declares at
    most 64 KiB and came whole in the first chunk, as most API answers do, is sent back at once
    instead. Larger bodies, and bodies without a Content-Length such as event streams, start
    streaming with nothing awaited.
    """
    exchange = await open_exchange(upstream, settings, request)
    response, headers = exchange.response, exchange.headers
    length = declared_length(headers)
    if length is None or length > SMALL_BODY_BYTES:
        streamed = UpstreamStreamingResponse(response, headers, paced(response.body))
        await streamed(request.scope, request.receive, send)
        return
    try:
        first = await anext(response.body, None)
    except BaseException:
        await response.aclose()
        raise
    if first is not None and len(first) < length:
        chunks = paced(prepend(first, response.body))
        streamed = UpstreamStreamingResponse(response, headers, chunks)
        await streamed(request.scope, request.receive, send)
        return
    await send_whole(response, headers, first or b"", send)


async def send_whole(
    response: UpstreamResponse, headers: RawHeaders, body: bytes, send: Send
) -> None:
    """Read the body to its end, so the pool sees the exchange finish by its framing and may
    reuse the connection (closing it early would discard it), then send it in one piece."""
    try:
        rest = await anext(response.body, None)
    finally:
        await response.aclose()
    if rest is not None:
        raise InvalidUpstreamResponse("the upstream sent more bytes than its Content-Length")
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def paced(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The upstream's bytes as they arrive, yielding to the event loop after each chunk.

    When the upstream always has data ready and the caller has gone (the server then drops
    what is sent), nothing else would ever suspend, and the server's disconnect notice could
    not cancel the stream until the upstream finished.
    """
    async for chunk in chunks:
        yield chunk
        await anyio.lowlevel.checkpoint()


async def prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`first`, a chunk already read, then the rest of the body."""
    yield first
    async for chunk in rest:
        yield chunk


class UpstreamStreamingResponse(StreamingResponse):
    """Relays a streamed upstream response and always closes it, however the stream ends.

    Closing here, where the control flow is ours, returns the pooled connection whether the
    body ran to its end, the caller went away (Starlette then cancels the stream) or the
    upstream failed; a `background` task would be skipped on a disconnect by some servers.
    """

    def __init__(
        self, response: UpstreamResponse, headers: RawHeaders, chunks: AsyncIterator[bytes]
    ) -> None:
        super().__init__(chunks, status_code=response.status)
        # Raw bytes, so the upstream's Content-Encoding and Content-Length stay true.
        self.raw_headers = headers
        self.response = response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except httpx.TransportError as exc:
            # The status line is already sent: returning without finishing the body makes the
            # server break the connection off, so the caller can tell the body is incomplete.
            logger.error(
                "upstream failed mid-body, response cut short: %s: %s", type(exc).__name__, exc
            )
        finally:
            await self.response.aclose()
