"""The relay is transparent, back: what the caller gets is what the upstream answered.

Judged on the wire: the upstream (`RawUpstream`) answers with bytes a test chose, and the
caller reads the bytes that come back on its socket.
"""

import socket

import pytest

from tests.conftest import RELAY_PREFIXES, StartRelay
from tests.wire import RawUpstream, assert_json_error, exchange, key, send


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
    assert raw_upstream.received_once(first).body == b"hi"
    assert b"expect" not in raw_upstream.received_once(first).names()
    assert raw_upstream.received_once(second).start.startswith(b"GET ")
