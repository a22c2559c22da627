"""The relay is transparent: what the upstream receives is what the caller sent, and back.

Judged on the wire: the caller writes its request as bytes on a socket, and the upstream
(`RawUpstream`) records the bytes that reached it and answers with bytes a test chose.
"""

import socket

import pytest

from tests.conftest import RELAY_PREFIXES, StartRelay
from tests.wire import Message, RawUpstream, assert_json_error, exchange, key, send

# What the relay adds to every request, by design.
RELAY_OWN = {
    b"host",
    b"x-request-id",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
}


def arrived(upstream: RawUpstream, name: str) -> Message:
    (request,) = upstream.received(name)
    return request


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
    assert arrived(raw_upstream, name).start == f"GET /api/{name}/{rest} HTTP/1.1".encode()


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
    assert callers_headers(arrived(raw_upstream, name)) == sent


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
    assert arrived(raw_upstream, name).values(b"x-name") == [b"caf\xe9"]
{%- endif %}


def test_a_body_goes_up_with_its_true_length_and_no_content_type_added(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    name = key()
    body = bytes(range(256))
    response = send(wire_relay, f"{prefix}/{name}", method="POST", body=body)
    assert response.status == 200, response.raw
    request = arrived(raw_upstream, name)
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
    request = arrived(raw_upstream, name)
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
    request = arrived(raw_upstream, name)
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
    request = arrived(raw_upstream, name)
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


def test_the_upstreams_request_id_is_replaced_by_the_relays(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    answer = b"HTTP/1.1 200 OK\r\nX-Request-ID: upstream-id\r\nContent-Length: 2\r\n\r\nok"
    path = raw_upstream.script(key(), answer)
    response = send(wire_relay, f"{prefix}/{path}", b"X-Request-ID: caller-id")
    assert response.status == 200, response.raw
    assert response.values(b"x-request-id") == [b"caller-id"]


def test_large_response_headers_pass_up_to_the_limit(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    # One 16 KiB field, and 60 KiB in all.
    fields = [(b"X-Big", b"b" * 16384)] + [(b"X-Many-%d" % n, b"m" * 100) for n in range(420)]
    head = b"".join(name + b": " + value + b"\r\n" for name, value in fields)
    answer = b"HTTP/1.1 200 OK\r\n" + head + b"Content-Length: 2\r\n\r\nok"
    response = send(wire_relay, f"{prefix}/{raw_upstream.script(key(), answer)}")
    assert response.status == 200, response.raw[:300]
    assert [pair for pair in response.headers if pair[0].startswith(b"x-")][:-1] == [
        (name.lower(), value) for name, value in fields
    ]


@pytest.mark.parametrize("fields", [400, 1], ids=["many-fields", "one-huge-field"])
def test_response_headers_over_the_limit_are_502_and_logged_without_them(
    wire_relay: str,
    raw_upstream: RawUpstream,
    prefix: str,
    fields: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    value = b"m" * (80_000 // fields)
    head = b"".join(b"X-Many-%d: %s\r\n" % (n, value) for n in range(fields))
    answer = b"HTTP/1.1 200 OK\r\n" + head + b"Content-Length: 2\r\n\r\nok"
    response = send(wire_relay, f"{prefix}/{raw_upstream.script(key(), answer)}")
    assert_json_error(response, 502)
    assert b"65536 bytes" in response.body
    assert "65536 bytes" in caplog.text
    assert "mmmmmmmmmm" not in caplog.text


@pytest.mark.parametrize(
    ("location", "relayed"),
    [
        ("{upstream}/api/next?x=%2F", "{prefix}/next?x=%2F"),
        ("/api/other", "{prefix}/other"),
        ("relative/path", "relative/path"),
        ("{upstream}/elsewhere", "{upstream}/elsewhere"),
        ("https://other.example/api/x", "https://other.example/api/x"),
    ],
)
def test_locations_under_the_upstream_point_at_the_relay(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str, location: str, relayed: str
) -> None:
    values = {"upstream": raw_upstream.url, "prefix": prefix}
    answer = (
        f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Location: {location}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).format(**values)
    response = send(wire_relay, f"{prefix}/{raw_upstream.script(key(), answer.encode())}")
    assert response.status == 302, response.raw
    expected = relayed.format(**values).encode()
    assert response.values(b"location") == [expected]
    assert response.values(b"content-location") == [expected]


def test_location_rewriting_can_be_turned_off(
    start_relay: StartRelay, raw_upstream: RawUpstream
) -> None:
    location = f"{raw_upstream.url}/api/next".encode()
    answer = b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
    path = raw_upstream.script(key(), answer)
    with start_relay(upstream_base_url=f"{raw_upstream.url}/api/", rewrite_location=False) as url:
        for prefix in RELAY_PREFIXES:
            assert send(url, f"{prefix}/{path}").values(b"location") == [location]


@pytest.mark.parametrize(
    "status",
    [b"100 Continue", b"101 Switching Protocols", b"103 Early Hints", b"600 Odd", b"999 Odd"],
)
def test_a_status_that_cannot_end_an_exchange_is_502(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str, status: bytes
) -> None:
    answer = b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nok"
    path = raw_upstream.script(key(), answer, close=True)
    assert_json_error(send(wire_relay, f"{prefix}/{path}"), 502)
    assert send(wire_relay, f"{prefix}/{key()}").status == 200


def test_a_304_with_a_content_length_is_relayed_without_a_body(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    answer = b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 12\r\n\r\n'
    response = send(wire_relay, f"{prefix}/{raw_upstream.script(key(), answer)}")
    assert response.status == 304, response.raw
    assert response.values(b"etag") == [b'"v1"']
    assert response.body == b""


def test_an_http10_caller_gets_a_declared_length_body_and_a_closed_connection(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    host = wire_relay.removeprefix("http://").encode()
    request = b"GET %s/%s HTTP/1.0\r\nHost: %s\r\n\r\n" % (prefix.encode(), key().encode(), host)
    response = exchange(wire_relay, request)
    assert (response.start, response.body) == (b"HTTP/1.1 200 OK", b"ok")
    assert response.values(b"content-length") == [b"2"]
    assert response.values(b"connection") == [b"close"]


def test_expect_100_continue_with_the_body_and_a_pipelined_request_at_once(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    host = wire_relay.removeprefix("http://").encode()
    first, second = key(), key()
    pipelined = (
        b"POST %s/%s HTTP/1.1\r\nHost: %s\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
        b"GET %s/%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
    ) % (prefix.encode(), first.encode(), host, prefix.encode(), second.encode(), host)
    host_name, port = wire_relay.removeprefix("http://").split(":")
    with socket.create_connection((host_name, int(port)), timeout=10) as sock:
        sock.sendall(pipelined)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == 2, received
    assert arrived(raw_upstream, first).body == b"hi"
    assert b"expect" not in arrived(raw_upstream, first).names()
    assert arrived(raw_upstream, second).start.startswith(b"GET ")
