"""Buffered relay: the whole upstream response is read (up to a limit), then returned at once."""

import logging

import anyio
import {{ cookiecutter.httpx_package }}
from fastapi import APIRouter, HTTPException, Request, Response

from {{ cookiecutter.package_name }}.headers import relayed_response_headers
from {{ cookiecutter.package_name }}.relay import RELAY_METHODS, build_upstream_request
from {{ cookiecutter.package_name }}.upstream import AppSettings, Upstream

logger = logging.getLogger(__name__)
router = APIRouter(tags=["relay"])

# Statuses whose responses carry no body, and so no Content-Length of ours.
_NO_BODY_STATUSES = {204, 304}


def request_too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body is larger than the limit of {limit} bytes")


def upstream_too_large(limit: int) -> HTTPException:
    logger.warning("upstream response refused: larger than %s bytes", limit)
    return HTTPException(502, f"the upstream response is larger than the limit of {limit} bytes")


async def read_request_body(request: Request, limit: int) -> bytes:
    """The caller's body, refused as soon as it grows past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise request_too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise request_too_large(limit)
    return bytes(body)


async def read_response_body(response: {{ cookiecutter.httpx_package }}.Response, limit: int) -> bytes:
    """The upstream's raw body, refused as soon as it grows past `limit` bytes."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise upstream_too_large(limit)
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            raise upstream_too_large(limit)
    return bytes(body)


@router.api_route("/buffered/{path:path}", methods=RELAY_METHODS)
async def buffered(
    path: str, request: Request, upstream: Upstream, settings: AppSettings
) -> Response:
    """Relay the request upstream, read the whole response, and return it as it came."""
    body = await read_request_body(request, settings.buffered_max_bytes)
    upstream_request = build_upstream_request(upstream, request, path, settings, body or None)
    # httpx's timeouts bound each step; this bounds the whole exchange.
    try:
        with anyio.fail_after(settings.upstream_timeout):
            response = await upstream.send(upstream_request, stream=True)
            try:
                content = await read_response_body(response, settings.buffered_max_bytes)
            finally:
                await response.aclose()
    except TimeoutError as exc:
        # Mapped to 504 like every other upstream timeout.
        raise {{ cookiecutter.httpx_package }}.TimeoutException("the whole exchange took too long") from exc

    headers = relayed_response_headers(response.headers.raw)
    if request.method != "HEAD" and response.status_code not in _NO_BODY_STATUSES:
        # The body may have come chunked: say its length, as read.
        headers = [(name, value) for name, value in headers if name.lower() != b"content-length"]
        headers.append((b"content-length", str(len(content)).encode("ascii")))
    relayed = Response(content, status_code=response.status_code)
    relayed.raw_headers = headers
    return relayed
