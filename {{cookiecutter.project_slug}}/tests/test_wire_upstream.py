"""The relay is transparent, upstream: what the upstream receives is what the caller sent.

Judged on the wire: the caller writes its request as bytes on a socket, and the upstream
(`RawUpstream`) records the bytes that reached it.
"""

import pytest

from tests.wire import Message, RawUpstream, assert_json_error, key, send

# What the relay adds to every request, by design.
RELAY_OWN = {
    b"host",
    b"x-request-id",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
}


def callers_headers(request: Message) -> list[tuple[bytes, bytes]]:
    """The headers of a relayed request, less the relay's own additions."""
    return [(name, value) for name, value in request.headers if name.lower() not in RELAY_OWN]


@pytest.mark.parametrize(
    "rest",
    [
        "group%2Fproject/files/a%20b;v=1/caf%C3%A9",
        "x?sig=%zz&at=%40%3A%2C%24%21%27%28%29%2A%3F%2F&plus=a+b&empty=&=&&flag",
        "x?q=%E2%82%AC&q=2",
    ],
    ids=["path", "query", "repeated-query"],
)
def test_path_and_query_reach_the_upstream_byte_for_byte(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str, rest: str
) -> None:
    name = key()
    response = send(wire_relay, f"{prefix}/{name}/{rest}")
    assert response.status == 200, response.raw
    assert raw_upstream.received_once(name).start == f"GET /api/{name}/{rest} HTTP/1.1".encode()


@pytest.mark.parametrize(
    "rest",
    ["..;/admin", "..%3B/admin", ".;/x", "a/%2e%2e;x/admin", "a%2F..%2Fadmin", "%252e%252e/x"],
)
def test_dot_segments_in_any_spelling_are_refused(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str, rest: str
) -> None:
    name = key()
    assert_json_error(send(wire_relay, f"{prefix}/{name}/{rest}"), 400)
    assert raw_upstream.received(name) == []


def test_request_headers_pass_in_order_with_their_bytes_and_nothing_is_added(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    name = key()
    # Lower-case names: uvicorn hands them to the app so (names are case-insensitive).
    sent = [
        (b"cookie", b"a=1"),
        (b"x-order", b"1"),
        (b"cookie", b"b=2"),
        (b"x-name", "café €".encode()),
        (b"accept-language", b"en, fr;q=0.5"),
        (b"x-order", b"2"),
        (b"x-spaces", b"a  b"),
    ]
    response = send(wire_relay, f"{prefix}/{name}", *(n + b": " + v for n, v in sent))
    assert response.status == 200, response.raw
    # No User-Agent, Accept, Accept-Encoding, Content-Type or Connection of the client library's.
    assert callers_headers(raw_upstream.received_once(name)) == sent


def test_header_bytes_that_are_not_utf8_are_relayed_or_refused_never_changed(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    name = key()
    response = send(wire_relay, f"{prefix}/{name}", b"X-Name: caf\xe9")
{%- if cookiecutter.http_transport == "aiohttp" %}
    # aiohttp writes header values as UTF-8: it cannot send this byte, so the caller is told.
    assert_json_error(response, 400)
    assert raw_upstream.received(name) == []
{%- else %}
    assert response.status == 200, response.raw
    assert raw_upstream.received_once(name).values(b"x-name") == [b"caf\xe9"]
{%- endif %}


def test_a_body_goes_up_with_its_true_length_and_no_content_type_added(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    name = key()
    body = bytes(range(256))
    response = send(wire_relay, f"{prefix}/{name}", method="POST", body=body)
    assert response.status == 200, response.raw
    request = raw_upstream.received_once(name)
    assert request.body == body
    assert request.values(b"content-length") == [b"256"]
    assert b"content-type" not in request.names()


def test_trailers_of_a_chunked_request_never_become_headers(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    name = key()
    chunks = b"5\r\nhello\r\n0\r\nX-From-Trailer: t1\r\n\r\n"
    response = send(wire_relay, f"{prefix}/{name}", method="POST", chunks=chunks)
    assert response.status == 200, response.raw
    request = raw_upstream.received_once(name)
    assert request.body == b"hello"
    assert b"x-from-trailer" not in request.names()
    assert request.trailers == []


def test_callers_forwarded_headers_underscore_twins_and_expect_are_not_passed_on(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    name = key()
    response = send(
        wire_relay,
        f"{prefix}/{name}",
        b"X-Forwarded-For: 6.6.6.6",
        b"X-Forwarded-Proto: https",
        b"Forwarded: for=6.6.6.6",
        b"X_Forwarded_For: 6.6.6.6",
        b"X_Request_ID: forged",
        b"Content_Length: 99",
        b"Expect: 100-continue",
        b"X-Kept: yes",
        method="POST",
        body=b"hi",
    )
    assert response.status == 200, response.raw
    request = raw_upstream.received_once(name)
    assert request.values(b"x-forwarded-for") == [b"127.0.0.1"]
    assert request.values(b"x-forwarded-proto") == [b"http"]
    kept = [(name.lower(), value) for name, value in callers_headers(request)]
    assert kept == [(b"x-kept", b"yes"), (b"content-length", b"2")]
    assert request.body == b"hi"


def test_a_header_named_in_connection_is_removed_before_the_relay_adds_its_own(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    name = key()
    response = send(
        wire_relay,
        f"{prefix}/{name}",
        b"Connection: keep-alive, X-Forwarded-For, X-Private",
        b"X-Forwarded-For: 6.6.6.6",
        b"X-Private: hop",
    )
    assert response.status == 200, response.raw
    request = raw_upstream.received_once(name)
    assert request.values(b"x-forwarded-for") == [b"127.0.0.1"]
    assert b"x-private" not in request.names()


def test_upgrade_requests_are_refused_at_once(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    name = key()
    response = send(
        wire_relay,
        f"{prefix}/{name}",
        b"Connection: Upgrade, HTTP2-Settings",
        b"Upgrade: h2c",
        b"HTTP2-Settings: AAMAAABkAAQAAP__",
        method="POST",
        body=b"hello",
    )
    assert_json_error(response, 400)
    assert response.values(b"connection") == [b"close"]
    assert raw_upstream.received(name) == []
