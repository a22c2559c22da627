"""Which headers cross the relay, in each direction, and what the relay adds or rewrites.

End-to-end headers pass in order, with their bytes, and repeated lines stay separate pairs
(merging them would break `Cookie` and `Set-Cookie`). Hop-by-hop headers (RFC 9110 section
7.6.1) describe one connection, not the message, so they never cross; nor do the headers that a
`Connection` header names. The relay's own additions are exactly `Host`, `X-Request-ID`, when
enabled `X-Forwarded-For`, `-Proto` and `-Host`, and the upstream credential when one is set.
"""

from collections.abc import Iterable

from starlette.types import Scope

from {{ cookiecutter.package_name }}.settings import Settings

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
# Set by the relay itself (from what it knows, never from what a caller claims), or answered by
# the server in front (`Expect`: uvicorn sends the 100 Continue itself).
_NOT_FROM_CALLER = frozenset(
    {
        b"content-length",
        b"expect",
        b"forwarded",
        b"host",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-request-id",
    }
)
# Set by the server that sends the response, or by the relay (its own request id).
_NOT_FROM_UPSTREAM = frozenset({b"date", b"server", b"x-request-id"})
# Statuses whose responses have no body: a Content-Length there describes another response.
BODILESS_STATUSES = frozenset({204, 304})
_REQUEST_DROPS = HOP_BY_HOP | _NOT_FROM_CALLER
_RESPONSE_DROPS = HOP_BY_HOP | _NOT_FROM_UPSTREAM
_BODILESS_RESPONSE_DROPS = _RESPONSE_DROPS | {b"content-length"}
_REWRITTEN_LOCATIONS = frozenset({b"location", b"content-location"})
# A WebSocket handshake's own fields: each leg has its own handshake.
_HANDSHAKE = frozenset(
    {
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"sec-websocket-key",
        b"sec-websocket-version",
    }
)


def first_value(headers: RawHeaders, name: bytes) -> bytes | None:
    """The value of the first header called `name` (lower case, as the server hands them over)."""
    for candidate, value in headers:
        if candidate == name:
            return value
    return None


def value_in_any_case(headers: RawHeaders, name: bytes) -> bytes | None:
    """The value of the first header called `name` (lower case) in any case, as an upstream or
    an httpx request may spell it."""
    for candidate, value in headers:
        if candidate.lower() == name:
            return value
    return None


def declared_length(headers: RawHeaders) -> int | None:
    """The body length a response's headers declare, if they declare one."""
    value = value_in_any_case(headers, b"content-length")
    return int(value) if value is not None and value.isdigit() else None


def _end_to_end(
    headers: Iterable[tuple[bytes, bytes]], drop: frozenset[bytes], *, underscores: bool = True
) -> RawHeaders:
    """Keep the headers that describe the message, in order: minus `drop` (hop-by-hop headers
    included), minus the headers `Connection` names, and minus names holding `_` unless
    `underscores`."""
    kept: list[tuple[bytes, bytes, bytes]] = []
    named: set[bytes] = set()
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
        elif lowered not in drop and (underscores or b"_" not in lowered):
            kept.append((lowered, name, value))
    return [(name, value) for lowered, name, value in kept if lowered not in named]


def upstream_request_headers(scope: Scope, request_id: str, settings: Settings) -> RawHeaders:
    """Headers to send upstream: the caller's end-to-end headers plus the relay's own.

    Names holding `_` are dropped unless `UNDERSCORES_IN_HEADERS` (as nginx does): WSGI and CGI
    upstreams read `X_Request_ID` as `X-Request-ID`, so such a name could pose as the relay's own
    header. A caller's `Authorization` that authenticated it to the service (`SERVICE_API_KEYS`)
    stays here, and the upstream credential replaces any header the caller sent under its name.
    """
    drop = _REQUEST_DROPS
    if settings.service_api_keys is not None:
        drop = drop | {b"authorization"}
    credential = settings.upstream_credential_header()
    if credential:
        drop = drop | {credential[0]}
    headers = _end_to_end(scope["headers"], drop, underscores=settings.underscores_in_headers)
    if credential:
        headers.append(credential)
    headers.append((b"x-request-id", request_id.encode("latin-1")))
    if settings.forwarded_headers:
        headers.extend(_forwarded_headers(scope))
    return headers


def upstream_handshake_headers(
    scope: Scope, request_id: str, settings: Settings, key: bytes
) -> RawHeaders:
    """Headers to open a WebSocket upstream: the caller's, by the rules for a request's (its
    `Origin`, cookies and offer of subprotocols pass), minus its own handshake with the relay,
    plus the relay's handshake with the upstream (`key`), which offers no extension."""
    headers = upstream_request_headers(scope, request_id, settings)
    headers = [(name, value) for name, value in headers if name.lower() not in _HANDSHAKE]
    return [
        *headers,
        (b"connection", b"Upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-key", key),
        (b"sec-websocket-version", b"13"),
    ]


def accepted_headers(headers: RawHeaders) -> RawHeaders:
    """Headers to open the caller's WebSocket with, from the upstream's 101 (already through
    `relayed_response_headers`): its own, such as `Set-Cookie`, minus its handshake with the
    relay. The subprotocol it chose goes to the caller too, named by the server in front."""
    return [
        (name, value)
        for name, value in headers
        if name.lower() not in _HANDSHAKE and name.lower() != b"sec-websocket-protocol"
    ]


def _forwarded_headers(scope: Scope) -> RawHeaders:
    """X-Forwarded-For, -Proto and -Host: the hop the relay itself saw.

    A caller's own X-Forwarded-* headers are never passed on. When a proxy in front is trusted
    (uvicorn's `--forwarded-allow-ips`), uvicorn has already put the address and scheme it
    vouches for into the scope, and those are what is sent.
    """
    client = scope.get("client")
    host = first_value(scope["headers"], b"host") or b""
    return [
        (b"x-forwarded-for", (client[0] if client else "unknown").encode("latin-1")),
        (b"x-forwarded-proto", scope.get("scheme", "http").encode("latin-1")),
        (b"x-forwarded-host", host),
    ]


def relayed_response_headers(
    headers: Iterable[tuple[bytes, bytes]], status: int, locations: tuple[bytes, bytes] | None
) -> RawHeaders:
    """Headers to return to the caller: the upstream's end-to-end headers, minus Date and Server.

    `locations` is (upstream base URL, relay prefix): a `Location` or `Content-Location` under
    the base URL is rewritten to point at the relay (as nginx's `proxy_redirect default`).
    """
    drop = _BODILESS_RESPONSE_DROPS if status in BODILESS_STATUSES else _RESPONSE_DROPS
    relayed = _end_to_end(headers, drop)
    if locations is not None:
        relayed = [
            (name, _relocated(value, *locations))
            if name.lower() in _REWRITTEN_LOCATIONS
            else (name, value)
            for name, value in relayed
        ]
    return relayed


def _relocated(value: bytes, base_url: bytes, prefix: bytes) -> bytes:
    """`value` moved from under the upstream base URL (whole, or its path) to the relay prefix."""
    base_path = b"/" + base_url.split(b"://", 1)[-1].partition(b"/")[2]
    for base in (base_url, base_path):
        if value.startswith(base):
            return prefix + value[len(base) :]
    return value
