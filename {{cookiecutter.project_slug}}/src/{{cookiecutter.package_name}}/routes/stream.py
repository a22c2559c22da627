"""Streaming relay: upstream bytes go to the caller as they arrive, never held whole in memory."""

import logging
from collections.abc import AsyncIterator

import anyio
{{ cookiecutter.__httpx_import }}
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from {{ cookiecutter.package_name }}.headers import RawHeaders
from {{ cookiecutter.package_name }}.relay import (
    RELAY_METHODS,
    InvalidUpstreamResponse,
    build_upstream_request,
    caller_body,
    has_body,
    refuse_upgrade,
    response_headers,
)
from {{ cookiecutter.package_name }}.settings import Settings

logger = logging.getLogger(__name__)
router = APIRouter()
PREFIX = b"/stream/"

# A body of at most this many bytes is sent whole when it arrives whole (see relay_response).
SMALL_BODY_BYTES = 64 * 1024


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
        self,
        upstream: httpx.Response,
        headers: RawHeaders,
        chunks: AsyncIterator[bytes],
    ) -> None:
        super().__init__(paced(chunks), status_code=upstream.status_code)
        # Raw bytes, so the upstream's Content-Encoding and Content-Length stay true.
        self.raw_headers = headers
        self.upstream = upstream

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
            await self.upstream.aclose()


async def relay_response(upstream: httpx.Response, headers: RawHeaders) -> Response:
    """The upstream's response for the caller: streamed, unless it is small and already here.

    Streaming costs a task per response that watches for the caller leaving. A body that
    declares at most 64 KiB and came whole in the first chunk, as most API answers do, is sent
    back at once instead. Larger bodies, and bodies without a Content-Length such as event
    streams, start streaming with nothing awaited.
    """
    chunks = upstream.aiter_raw()
    declared = next((value for name, value in headers if name.lower() == b"content-length"), b"")
    length = int(declared) if declared.isdigit() else None
    if length is None or length > SMALL_BODY_BYTES:
        return UpstreamStreamingResponse(upstream, headers, chunks)
    first = await anext(chunks, None)
    if first is not None and len(first) < length:
        return UpstreamStreamingResponse(upstream, headers, prepend(first, chunks))
    # Read to the end of the body, so the client sees the exchange finish by its framing and
    # can give the connection back to the pool; closing it early would discard it.
    rest = await anext(chunks, None)
    await upstream.aclose()
    if rest is not None:
        raise InvalidUpstreamResponse("the upstream sent more bytes than its Content-Length")
    whole = Response(first or b"", status_code=upstream.status_code)
    whole.raw_headers = headers
    return whole


async def stream(request: Request) -> Response:
    """Relay the request upstream and stream the response back (the request body streams too)."""
    refuse_upgrade(request)
    upstream: httpx.AsyncClient = request.state.upstream
    settings: Settings = request.state.settings
    content = caller_body(request, settings.client_body_timeout) if has_body(request) else None
    upstream_request = build_upstream_request(upstream, request, PREFIX, content)
    response = await upstream.send(upstream_request, stream=True)
    try:
        return await relay_response(response, response_headers(response, settings, PREFIX))
    except BaseException:
        await response.aclose()
        raise


# A plain route, for speed: see relay.py.
router.add_route("/stream/{path:path}", stream, methods=RELAY_METHODS)
