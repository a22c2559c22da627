"""Streaming relay: upstream bytes go to the caller as they arrive, never held whole in memory."""

import logging
from collections.abc import AsyncIterator

import anyio
import {{ cookiecutter.httpx_package }}
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from {{ cookiecutter.package_name }}.headers import relayed_response_headers
from {{ cookiecutter.package_name }}.relay import RELAY_METHODS, build_upstream_request, has_body
from {{ cookiecutter.package_name }}.upstream import AppSettings, Upstream

logger = logging.getLogger(__name__)
router = APIRouter(tags=["relay"])


async def raw_chunks(upstream: {{ cookiecutter.httpx_package }}.Response) -> AsyncIterator[bytes]:
    """The upstream's bytes as they arrive, yielding to the event loop after each chunk.

    When the upstream always has data ready and the caller has gone (the server then drops
    what is sent), nothing else would ever suspend, and the server's disconnect notice could
    not cancel the stream until the upstream finished.
    """
    async for chunk in upstream.aiter_raw():
        yield chunk
        await anyio.lowlevel.checkpoint()


class UpstreamStreamingResponse(StreamingResponse):
    """Relays a streamed upstream response and always closes it, however the stream ends.

    Closing here, where the control flow is ours, returns the pooled connection whether the
    body ran to its end, the caller went away (Starlette then cancels the stream) or the
    upstream failed; a `background` task would be skipped on a disconnect by some servers.
    """

    def __init__(self, upstream: {{ cookiecutter.httpx_package }}.Response) -> None:
        super().__init__(raw_chunks(upstream), status_code=upstream.status_code)
        # Raw bytes, so the upstream's Content-Encoding and Content-Length stay true.
        self.raw_headers = relayed_response_headers(upstream.headers.raw)
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except {{ cookiecutter.httpx_package }}.TransportError as exc:
            # The status line is already sent: returning without finishing the body makes the
            # server break the connection off, so the caller can tell the body is incomplete.
            logger.error(
                "upstream failed mid-body, response cut short: %s: %s", type(exc).__name__, exc
            )
        finally:
            await self.upstream.aclose()


@router.api_route("/stream/{path:path}", methods=RELAY_METHODS)
async def stream(
    path: str, request: Request, upstream: Upstream, settings: AppSettings
) -> UpstreamStreamingResponse:
    """Relay the request upstream and stream the response back (the request body streams too)."""
    content = request.stream() if has_body(request) else None
    upstream_request = build_upstream_request(upstream, request, path, settings, content)
    response = await upstream.send(upstream_request, stream=True)
    try:
        return UpstreamStreamingResponse(response)
    except BaseException:
        await response.aclose()
        raise
