"""What the relay endpoints share: the methods they carry, the request sent upstream, and the
checks every upstream answer passes before it goes back to the caller.

The relay endpoints are plain routes (`router.add_route`) that read the shared client and the
settings from `request.state`. They take the request as it comes, so FastAPI's parameter and
dependency handling would do nothing for them but cost about a quarter of a small relayed
request. Endpoints of your own declare `Upstream` and `AppSettings` parameters as usual.
"""

from collections.abc import AsyncIterable, AsyncIterator

import anyio
{{ cookiecutter.__httpx_import }}
from fastapi import Request

from {{ cookiecutter.package_name }}.headers import (
    RawHeaders,
    relayed_response_headers,
    upstream_request_headers,
)
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.urls import InvalidTarget, upstream_url

RELAY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class UpgradeRefused(ValueError):
    """The caller asked to switch protocols: the relay carries HTTP requests, not tunnels."""


class CallerTooSlow(Exception):
    """The caller's body stopped arriving for longer than `CLIENT_BODY_TIMEOUT`."""


class InvalidUpstreamResponse(httpx.RemoteProtocolError):
    """The upstream's answer cannot be relayed as it is: its status cannot end an exchange."""


def refuse_upgrade(request: Request) -> None:
    """Refuse a request to switch protocols before anything else is done for it.

    The server in front stops reading such a request after its headers, so its body would
    never arrive; and the relay carries HTTP exchanges, not tunnels.
    """
    connection = request.headers.get("connection", "").lower()
    if "upgrade" in request.headers and "upgrade" in connection:
        raise UpgradeRefused("the relay does not switch protocols: send a plain HTTP request")


async def caller_body(request: Request, seconds: float) -> AsyncIterator[bytes]:
    """The caller's body as it arrives, each piece within `seconds` of the last.

    Without this, a caller that trickles its body holds a pooled upstream connection for as
    long as it likes (nginx's `client_body_timeout` does the same job).
    """
    pieces = request.stream()
    while True:
        try:
            with anyio.fail_after(seconds):
                piece = await anext(pieces, None)
        except TimeoutError:
            raise CallerTooSlow(
                f"the request body stopped arriving for {seconds:g} seconds"
            ) from None
        if piece is None:
            return
        yield piece


def has_body(request: Request) -> bool:
    """Whether the caller sent a body (a GET without one must not go upstream chunked)."""
    return (
        request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    )


def build_upstream_request(
    client: httpx.AsyncClient,
    request: Request,
    prefix: bytes,
    content: bytes | AsyncIterable[bytes] | None,
) -> httpx.Request:
    """The caller's request, addressed to the upstream, with the relay's headers.

    Built as a bare request rather than with `client.build_request`, which would add the client
    library's default headers (`User-Agent`, `Accept`, `Accept-Encoding`) the caller never sent.
    """
    settings: Settings = request.state.settings
    raw_path: bytes = request.scope["raw_path"]
    if not raw_path.startswith(prefix):
        raise InvalidTarget("the relay prefix must be spelled out, not percent-encoded")
    url = upstream_url(client.base_url, raw_path[len(prefix) :], request.scope["query_string"])
    headers = upstream_request_headers(request.scope, request.state.request_id, settings)
    if isinstance(content, AsyncIterable) and "content-length" in request.headers:
        # A streamed body keeps its declared length (the server in front holds the caller to
        # it) rather than going upstream chunked.
        headers.append((b"content-length", request.headers["content-length"].encode("latin-1")))
    return httpx.Request(
        request.method,
        url,
        headers=headers,
        content=content,
        extensions={"timeout": client.timeout.as_dict()},
    )


def response_headers(upstream: httpx.Response, settings: Settings, prefix: bytes) -> RawHeaders:
    """Check the upstream's answer can be relayed; the headers the caller gets with it.

    Raises `InvalidUpstreamResponse` (a 502 for the caller) for a status that cannot end an
    exchange: 1xx, 101, or outside 100-599. (The transport has already refused headers over
    `MAX_HEADER_BYTES`: see `framing.py`.)
    """
    status = upstream.status_code
    if not 200 <= status <= 599:
        raise InvalidUpstreamResponse(f"the upstream answered with status {status}")
    locations = (settings.upstream_base_url.encode(), prefix) if settings.rewrite_location else None
    return relayed_response_headers(upstream.headers.raw, status, locations)
