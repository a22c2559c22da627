"""Which headers cross the relay, in each direction.

Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection, not the message, so they
never cross; nor do the headers that a `Connection` header names. Repeated headers stay
separate pairs: merging them would break `Set-Cookie`.
"""

from collections.abc import Iterable

from starlette.requests import Request

RawHeaders = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set by the relay itself, or by the server that sends the response.
_NOT_FROM_CALLER = frozenset({b"host", b"content-length", b"x-request-id"})
_NOT_FROM_UPSTREAM = frozenset({b"date", b"server"})
_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})


def _end_to_end(headers: Iterable[tuple[bytes, bytes]], drop: frozenset[bytes]) -> RawHeaders:
    """Keep the headers that describe the message, in order, minus `drop`."""
    headers = list(headers)
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    return [
        (name, value)
        for name, value in headers
        if (lowered := name.lower()) not in HOP_BY_HOP
        and lowered not in drop
        and lowered not in named
    ]


def upstream_request_headers(request: Request, request_id: str, *, forwarded: bool) -> RawHeaders:
    """Headers to send upstream: the caller's end-to-end headers plus the relay's own."""
    drop = _NOT_FROM_CALLER | _FORWARDED if forwarded else _NOT_FROM_CALLER
    headers = _end_to_end(request.headers.raw, drop)
    if "accept-encoding" not in request.headers:
        # Bodies are relayed as raw bytes: never let the client library ask for a compression
        # that the caller did not.
        headers.append((b"accept-encoding", b"identity"))
    if "content-length" in request.headers:
        # Kept so that a streamed body goes upstream with its length, not chunked.
        headers.append((b"content-length", request.headers["content-length"].encode("latin-1")))
    headers.append((b"x-request-id", request_id.encode("latin-1")))
    if forwarded:
        headers.extend(_forwarded_headers(request))
    return headers


def _forwarded_headers(request: Request) -> RawHeaders:
    """X-Forwarded-For (the incoming chain plus the caller), -Proto and -Host.

    Behind a trusted proxy, uvicorn's `--proxy-headers` has already made the caller the last
    address of the chain: it is not added twice.
    """
    chain = [
        hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",") if hop.strip()
    ]
    peer = request.client.host if request.client else "unknown"
    if not chain or chain[-1] != peer:
        chain.append(peer)
    return [
        (b"x-forwarded-for", ", ".join(chain).encode("latin-1")),
        (b"x-forwarded-proto", request.scope.get("scheme", "http").encode("latin-1")),
        (b"x-forwarded-host", request.headers.get("host", "").encode("latin-1")),
    ]


def relayed_response_headers(headers: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    """Headers to return to the caller: the upstream's end-to-end headers, minus Date and Server."""
    return _end_to_end(headers, _NOT_FROM_UPSTREAM)
