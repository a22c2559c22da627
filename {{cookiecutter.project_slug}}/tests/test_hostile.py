"""No exchange bleeds into another: the relay holds against broken and hostile upstreams.

The relay here has a pool of one connection, so every exchange reuses the previous one's
connection if the relay judged it clean. After each misbehaviour, the next callers must get
their own responses, never bytes that belong to another exchange.
"""

import pytest

from tests.wire import RawUpstream, assert_json_error, key, send, stalled_body

ELSEWHERE = b"HTTP/1.1 200 OK\r\nContent-Length: 23\r\n\r\nsomeone else's response"


def answer(body: bytes, *headers: bytes) -> bytes:
    head = b"".join(line + b"\r\n" for line in headers)
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)


def assert_next_callers_get_their_own(relay: str, upstream: RawUpstream, prefix: str) -> None:
    for _ in range(3):
        name = key()
        response = send(relay, f"{prefix}/{upstream.script(name, answer(name.encode()))}")
        assert (response.status, response.body) == (200, name.encode()), response.raw[:300]


@pytest.mark.parametrize(
    ("response", "how"),
    [
        (answer(b"mine") + ELSEWHERE, {}),
        (answer(b"mine"), {"later": ELSEWHERE, "delay": 0.05}),
        (answer(b"mine")[:-2], {"later": b"ne" + ELSEWHERE, "delay": 0.05}),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nmine, and then some", {}),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nmine\r\n0\r\n\r\n" + ELSEWHERE,
            {},
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n" + ELSEWHERE, {}),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 4\r\n\r\nmine" + ELSEWHERE, {}),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n", {}),
    ],
    ids=[
        "extra-response-at-once",
        "extra-response-while-idle",
        "extra-response-after-the-body",
        "more-than-content-length",
        "content-length-and-chunked",
        "body-on-204",
        "body-on-304",
        "invalid-chunk-size",
    ],
)
def test_leftover_bytes_never_reach_the_next_caller(
    wire_relay: str,
    raw_upstream: RawUpstream,
    prefix: str,
    response: bytes,
    how: dict[str, float],
) -> None:
    # The first caller gets its own response, a 502, or (once a streamed body has begun) a
    # response broken off; never another exchange's bytes.
    path = raw_upstream.script(key(), response, **how)
    try:
        first = send(wire_relay, f"{prefix}/{path}").raw
    except (EOFError, ConnectionError, ValueError) as broken:
        first = str(broken).encode()
    assert b"someone else" not in first
    if "later" in how:
        # The connection sits idle in the pool while the stray bytes arrive.
        raw_upstream.wait_for_later(path)
    assert_next_callers_get_their_own(wire_relay, raw_upstream, prefix)


def test_a_body_on_a_head_response_never_reaches_the_next_caller(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    path = raw_upstream.script(key(), answer(b"mine") + ELSEWHERE)
    # A parser may fail on the whole piece, so the caller may get 502 rather than the head.
    assert send(wire_relay, f"{prefix}/{path}", method="HEAD").status in {200, 502}
    assert_next_callers_get_their_own(wire_relay, raw_upstream, prefix)


def test_an_early_answer_leaves_the_callers_body_unread_as_a_request(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    # The upstream answers 401 before reading the body, and keeps the connection: the body,
    # which holds an HTTP request, would be read as the next request on that connection.
    name = key()
    smuggled = f"GET /api/smuggled-{name} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    refusal = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\ndenied"
    path = raw_upstream.script(name, refusal, early=True)
    first = send(wire_relay, f"{prefix}/{path}", method="POST", body=smuggled)
    assert first.status in {401, 502}, first.raw
    assert_next_callers_get_their_own(wire_relay, raw_upstream, prefix)


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nX-A: 1\nSet-Cookie: smuggled=1\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
    ],
    ids=[
        "bare-lf-in-a-header",
        "bare-lf-lines",
        "two-lengths",
        "negative-length",
        "length-and-chunked",
    ],
)
def test_malformed_framing_or_header_lines_are_502(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str, response: bytes
) -> None:
    first = send(wire_relay, f"{prefix}/{raw_upstream.script(key(), response)}")
    assert b"smuggled" not in first.raw
    assert_json_error(first, 502)
    assert_next_callers_get_their_own(wire_relay, raw_upstream, prefix)


def test_clean_exchanges_reuse_the_pooled_connection(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    assert_next_callers_get_their_own(wire_relay, raw_upstream, prefix)
    connections = raw_upstream.connections
    assert_next_callers_get_their_own(wire_relay, raw_upstream, prefix)
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    assert send(wire_relay, f"{prefix}/{raw_upstream.script(key(), chunked)}").body == b"ok"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    assert (
        send(wire_relay, f"{prefix}/{raw_upstream.script(key(), head)}", method="HEAD").status
        == 200
    )
    assert raw_upstream.connections == connections


def test_a_caller_that_stalls_its_body_gets_408_and_frees_its_connection(
    wire_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    response = stalled_body(wire_relay, f"{prefix}/{key()}")
    assert response.startswith(b"HTTP/1.1 408 "), response
    assert b"connection: close" in response
    # The relay's one pooled connection is free again for the next caller.
    assert_next_callers_get_their_own(wire_relay, raw_upstream, prefix)
