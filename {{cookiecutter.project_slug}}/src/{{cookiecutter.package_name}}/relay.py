"""The relay's one pipeline: a caller's request checked, sent upstream, and the answer checked.

`open_exchange` owns a relayed exchange from the first check to the response headers.
{%- if cookiecutter.response_mode == "both" %}
The relay endpoints, `routes/stream.py` and `routes/buffered.py`, call it and differ only in how
the body goes back.
{%- else %}
The relay endpoint, `routes/{{ cookiecutter.response_mode }}.py`, calls it and then sends the body back.
{%- endif %}
Each rule is one function, called here in the order it applies; to change or switch off a rule,
change that call:

1. `RELAY_METHODS` (405) and `refuse_upgrade`: no protocol switches (400).
2. `relayed_target`, with `upstream_target` (`urls.py`): the caller's raw path and query, kept
   under the base path (400).
3. `upstream_request_headers` (`headers.py`): which of the caller's headers go, and the relay's
   own (`X-Request-ID`, `X-Forwarded-*`, the upstream credential).
4. `request_body`: read whole before a connection is taken, up to a limit (413 when held, else
   streamed past it), each piece within `CLIENT_BODY_TIMEOUT` and all of it within
   `CLIENT_BODY_DEADLINE` (408); `framed` then says its length as httpx would.
5. `upstream.pool.send`: the shared pool, with retries and the circuit breaker (`resilience.py`;
   502, 503, 504: `errors.py`). It answers only with a status that ends an exchange (502).
6. `relayed_response_headers` (`headers.py`): what may go back, and `held_body` when the
   response is held (502 past the limit).

What it needs comes in as arguments: the shared upstream, the settings, and the request as the
server handed it over, with its id (`Incoming`). `service.py` calls the endpoints for every
request under their prefixes, before and without FastAPI's routing and middleware.
"""

import asyncio
import functools
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

{{ cookiecutter.__httpx_import }}
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope

from {{ cookiecutter.package_name }}.errors import (
    BodyTooLarge,
    CallerTooSlow,
    InvalidTarget,
    InvalidUpstreamResponse,
    MethodNotAllowed,
    UpgradeRefused,
)
from {{ cookiecutter.package_name }}.headers import (
    RawHeaders,
    accepted_headers,
    declared_length,
    first_value,
    relayed_response_headers,
    upstream_handshake_headers,
    upstream_request_headers,
)
from {{ cookiecutter.package_name }}.pool import UpstreamRequest, UpstreamResponse
from {{ cookiecutter.package_name }}.resilience import Tally
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.upstream import Upstream
from {{ cookiecutter.package_name }}.urls import upstream_target
from {{ cookiecutter.package_name }}.websocket import UpstreamSocket, check_switch, upstream_protocol

RELAY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Methods that httpx sends with `Content-Length: 0` when they carry no body.
_LENGTH_EXPECTED = frozenset({"POST", "PUT", "PATCH"})

Body = bytes | AsyncIterable[bytes] | None


@dataclass(slots=True)
class Incoming:
    """A request to relay, as the server handed it over, with what the service knows of it."""

    scope: Scope
    receive: Receive
    request_id: str
    prefix: bytes  # the relay endpoint's, which the path starts with: `/{{ "buffered" if cookiecutter.response_mode == "buffered" else "stream" }}/`


@dataclass(slots=True)
class Exchange:
    """An upstream answer that may be relayed, and the headers the caller gets with it."""

    response: UpstreamResponse
    headers: RawHeaders
    # The whole body, when it was held; else None, and `response.body` streams it.
    content: bytes | None
    # The upstream leg of a WebSocket session, when the answer opened one.
    socket: UpstreamSocket | None = None


async def open_exchange(
    upstream: Upstream, settings: Settings, request: Incoming, *, hold: int | None = None
) -> Exchange:
    """Relay the request upstream; its answer, not yet sent to the caller.

    By default both bodies stream, each step of the exchange timed on its own, and the caller
    must `aclose()` the response. With `hold`, both bodies are read whole first, up to `hold`
    bytes each (413, or 502 for the upstream's), and the whole upstream exchange must end within
    `UPSTREAM_TIMEOUT` (504): `content` is the body, and the response is closed.
    """
    scope, prefix = request.scope, request.prefix
    method: str = scope["method"]
    if method not in RELAY_METHODS:
        raise MethodNotAllowed(method, RELAY_METHODS)
    headers = scope["headers"]
    refuse_upgrade(headers)
    target = relayed_target(upstream, request)
    outgoing = upstream_request_headers(scope, request.request_id, settings)
    body = await request_body(headers, request.receive, settings, hold, upstream.tally)
    declared = first_value(headers, b"content-length")
    outgoing = framed(outgoing, upstream.host, method, body, declared)
    timeouts = upstream.timeouts if hold is None else upstream.held_timeouts
    upstream_request = UpstreamRequest(method, upstream.origin, target, outgoing, body, timeouts)
    locations = (upstream.base_url, prefix) if settings.rewrite_location else None
    if hold is None:
        response = await upstream.pool.send(upstream_request)
        relayed = relayed_response_headers(response.headers, response.status, locations)
        return Exchange(response, relayed, None)
    # httpx's timeouts bound each step of an exchange, never the whole of it: the pool holds
    # the response's headers to this deadline, and its body is read within it too.
    deadline = asyncio.get_running_loop().time() + settings.upstream_timeout
    upstream_request.deadline = deadline
    response = await upstream.pool.send(upstream_request)
    relayed = relayed_response_headers(response.headers, response.status, locations)
    content = await held_within(response, relayed, hold, deadline)
    return Exchange(response, relayed, content)


async def open_session(upstream: Upstream, settings: Settings, request: Incoming) -> Exchange:
    """Relay a WebSocket handshake upstream; its answer, not yet given to the caller.

    The same rules apply as to a request, and the handshake must end within `UPSTREAM_TIMEOUT`
    (504). A 101 that opens a WebSocket as asked comes with `socket`, the session's upstream
    leg (502 for any other 101). Any other answer is read whole, up to
    `WEBSOCKET_MAX_MESSAGE_BYTES` (502 past it), to be relayed as the handshake's refusal.
    """
    scope, prefix = request.scope, request.prefix
    target = relayed_target(upstream, request)
    limit = settings.websocket_max_message_bytes
    protocol = upstream_protocol(scope.get("subprotocols", []), limit)
    key = protocol.key.encode("ascii")
    outgoing = upstream_handshake_headers(scope, request.request_id, settings, key)
    outgoing = framed(outgoing, upstream.host, "GET", None, None)
    deadline = asyncio.get_running_loop().time() + settings.upstream_timeout
    upstream_request = UpstreamRequest(
        "GET",
        upstream.origin,
        target,
        outgoing,
        None,
        upstream.held_timeouts,
        deadline=deadline,
        # Checked in the pool, so that a 101 that is not this switch counts against the upstream.
        upgrade=functools.partial(check_switch, protocol),
    )
    response = await upstream.pool.send(upstream_request)
    locations = (upstream.base_url, prefix) if settings.rewrite_location else None
    relayed = relayed_response_headers(response.headers, response.status, locations)
    if response.tunnel is None:
        content = await held_within(response, relayed, limit, deadline)
        return Exchange(response, relayed, content)
    return Exchange(response, accepted_headers(relayed), None, UpstreamSocket(response, protocol))


def relayed_target(upstream: Upstream, request: Incoming) -> bytes:
    """The upstream target for the caller's raw path after the relay prefix, and its query
    (`urls.py`: 400 for anything that could leave the base path)."""
    raw_path: bytes = request.scope["raw_path"]
    if not raw_path.startswith(request.prefix):
        raise InvalidTarget("the relay prefix must be spelled out, not percent-encoded")
    path = raw_path[len(request.prefix) :]
    return upstream_target(upstream.base_path, path, request.scope["query_string"])


def refuse_upgrade(headers: RawHeaders) -> None:
    """Refuse a request to switch protocols before anything else is done for it.

    The server in front stops reading such a request after its headers, so its body would
    never arrive; and the relay carries HTTP exchanges, not tunnels.
    """
    connection = first_value(headers, b"connection")
    upgrade = first_value(headers, b"upgrade")
    if connection and b"upgrade" in connection.lower() and upgrade is not None:
        raise UpgradeRefused


async def request_body(
    headers: RawHeaders, receive: Receive, settings: Settings, hold: int | None, tally: Tally
) -> Body:
    """The caller's body: None if it sent none; whole when `hold` is set (413 past it); else
    whole if it fits in `CLIENT_BODY_BUFFER_BYTES`, so that no upstream connection waits on a
    slow caller and the call may be retried, and streamed if it does not."""
    length = first_value(headers, b"content-length")
    if (length is None or length == b"0") and first_value(headers, b"transfer-encoding") is None:
        return None  # a GET without a body must not go upstream chunked
    pieces = caller_pieces(
        receive, settings.client_body_timeout, settings.client_body_deadline, tally
    )
    declared = int(length) if length is not None and length.isdigit() else None
    if hold is None:
{%- if cookiecutter.response_mode != "buffered" %}
        ahead = settings.client_body_buffer_bytes
        if declared is None or declared <= ahead:
            return await read_ahead(pieces, ahead)
{%- endif %}
        return pieces
    body = await read_within(pieces, hold, declared)
    if body is None:
        raise BodyTooLarge(f"the request body is larger than the limit of {hold} bytes")
    return body


async def caller_pieces(
    receive: Receive, pause: float, total: float, tally: Tally
) -> AsyncIterator[bytes]:
    """The caller's body as it arrives, each piece within `pause` seconds of the last, and all of
    it within `total`.

    Without this, a caller that trickles its body holds a pooled upstream connection, or a
    server slot, for as long as it likes (nginx's `client_body_timeout` does the same job).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total
    while True:
        give_up = min(loop.time() + pause, deadline)
        try:
            async with asyncio.timeout_at(give_up):
                message = await receive()
        except TimeoutError:
            reason = "deadline" if give_up >= deadline else "pause"
            tally.cut_off[reason] += 1
            if reason == "deadline":
                detail = f"the request body took longer than {total:g} seconds"
            else:
                detail = f"the request body stopped arriving for {pause:g} seconds"
            raise CallerTooSlow(detail) from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        if piece := message.get("body", b""):
            yield piece
        if not message.get("more_body", False):
            return
{%- if cookiecutter.response_mode != "buffered" %}


async def read_ahead(pieces: AsyncIterator[bytes], limit: int) -> Body:
    """The whole body if it ends within `limit` bytes; else what was read, then the rest."""
    chunks, whole = await read_up_to(pieces, limit)
    return b"".join(chunks) if whole else _joined(chunks, pieces)


async def _joined(first: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in first:
        yield chunk
    async for chunk in rest:
        yield chunk
{%- endif %}


async def read_within(
    pieces: AsyncIterable[bytes], limit: int, declared: int | None = None
) -> bytes | None:
    """The whole body, or None as soon as it, or the length it declares, passes `limit` bytes."""
    if declared is not None and declared > limit:
        return None
    chunks, whole = await read_up_to(pieces, limit)
    return b"".join(chunks) if whole else None


async def read_up_to(pieces: AsyncIterable[bytes], limit: int) -> tuple[list[bytes], bool]:
    """The chunks read until the body ended (True) or passed `limit` bytes (False); the rest,
    if any, is left unread."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in pieces:
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return chunks, False
    return chunks, True


def framed(
    headers: RawHeaders, host: bytes, method: str, body: Body, declared: bytes | None
) -> RawHeaders:
    """`Host` first, and the body's framing, where and as httpx would put them.

    A body read whole goes with its true length, whatever the caller declared. A streamed body
    keeps its declared length (the server in front holds the caller to it), or goes chunked.
    """
    host_line = (b"Host", host)
    if body is None or body == b"":
        if method in _LENGTH_EXPECTED:
            return [host_line, (b"Content-Length", b"0"), *headers]
        return [host_line, *headers]
    if isinstance(body, bytes):
        return [host_line, *headers, (b"Content-Length", b"%d" % len(body))]
    length = (b"content-length", declared) if declared else (b"Transfer-Encoding", b"chunked")
    return [host_line, *headers, length]


async def held_within(
    response: UpstreamResponse, headers: RawHeaders, limit: int, deadline: float
) -> bytes:
    """`held_body`, read by the exchange's `deadline` (504 past it)."""
    try:
        async with asyncio.timeout_at(deadline):
            return await held_body(response, headers, limit)
    except TimeoutError as exc:
        raise httpx.TimeoutException("the whole exchange took too long") from exc


async def held_body(response: UpstreamResponse, headers: RawHeaders, limit: int) -> bytes:
    """The response's whole body, read to its end so its connection may be reused; 502 past
    `limit` bytes."""
    try:
        content = await read_within(response.body, limit, declared_length(headers))
    finally:
        await response.aclose()
    if content is None:
        raise InvalidUpstreamResponse(
            f"the upstream response is larger than the limit of {limit} bytes"
        )
    return content
