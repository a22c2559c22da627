"""Buffered relay: the whole upstream response is read (up to a limit), then returned at once."""

import logging
from collections.abc import AsyncIterable

import anyio
{{ cookiecutter.__httpx_import }}
from fastapi import APIRouter, HTTPException, Request, Response

from {{ cookiecutter.package_name }}.headers import BODILESS_STATUSES
from {{ cookiecutter.package_name }}.relay import (
    RELAY_METHODS,
    build_upstream_request,
    caller_body,
    has_body,
    refuse_upgrade,
    response_headers,
)
from {{ cookiecutter.package_name }}.settings import Settings

logger = logging.getLogger(__name__)
router = APIRouter()
PREFIX = b"/buffered/"


async def read_within(
    stream: AsyncIterable[bytes], declared: str | None, limit: int
) -> bytes | None:
    """The whole body, or None as soon as it, or the length it declares, passes `limit` bytes."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return None
    return b"".join(chunks)


async def buffered(request: Request) -> Response:
    """Relay the request upstream, read the whole response, and return it as it came."""
    refuse_upgrade(request)
    upstream: httpx.AsyncClient = request.state.upstream
    settings: Settings = request.state.settings
    limit = settings.buffered_max_bytes
    body: bytes | None = None
    if has_body(request):
        declared = request.headers.get("content-length")
        pieces = caller_body(request, settings.client_body_timeout)
        body = await read_within(pieces, declared, limit)
        if body is None:
            raise HTTPException(413, f"the request body is larger than the limit of {limit} bytes")
    # The body as received: the upstream gets its true length, whatever the caller declared.
    upstream_request = build_upstream_request(upstream, request, PREFIX, body)
    # httpx's timeouts bound each step; this bounds the whole exchange.
    try:
        with anyio.fail_after(settings.upstream_timeout):
            response = await upstream.send(upstream_request, stream=True)
            try:
                headers = response_headers(response, settings, PREFIX)
                declared = response.headers.get("content-length")
                content = await read_within(response.aiter_raw(), declared, limit)
            finally:
                await response.aclose()
    except TimeoutError as exc:
        # Mapped to 504 like every other upstream timeout.
        raise httpx.TimeoutException("the whole exchange took too long") from exc
    if content is None:
        logger.warning("upstream response refused: larger than %s bytes", limit)
        raise HTTPException(502, f"the upstream response is larger than the limit of {limit} bytes")

    if request.method != "HEAD" and response.status_code not in BODILESS_STATUSES:
        # The body may have come chunked: say its length, as read.
        headers = [(name, value) for name, value in headers if name.lower() != b"content-length"]
        headers.append((b"content-length", str(len(content)).encode("ascii")))
    relayed = Response(content, status_code=response.status_code)
    relayed.raw_headers = headers
    return relayed


# A plain route, for speed: see relay.py.
router.add_route("/buffered/{path:path}", buffered, methods=RELAY_METHODS)
