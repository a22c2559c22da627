"""WebSocket sessions through the relay, with a WebSocket server no one here wrote upstream (the
`websockets` library's), judged by what each side really sent and received."""

import socket
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.sync.client import ClientConnection

from tests.conftest import RELAY_PREFIXES
from tests.servers import collect_logs, relay_settings, serve_relay
from tests.websocket_upstream import WebSocketUpstream, handshake, session_to
from tests.wire import exchange, key

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def ws_relay(ws_upstream: WebSocketUpstream) -> Iterator[str]:
    """A relay in front of `ws_upstream` with the default limits, as a ws:// base URL."""
    with serve_relay(relay_settings(ws_upstream.url)) as url:
        yield url.replace("http://", "ws://")


def host_of(url: str) -> str:
    """`127.0.0.1:8000`, from `ws://127.0.0.1:8000` or `http://127.0.0.1:8000`."""
    return url.split("://", 1)[1]


def test_messages_pass_both_ways_in_order_and_unchanged(
    ws_relay: str, ws_upstream: WebSocketUpstream, prefix: str
) -> None:
    name = key()
    messages: list[str | bytes] = ["héllo €", b"\x00\xff\x80", "", b"", "x" * MiB, bytes(MiB)]
    with session_to(f"{ws_relay}{prefix}/echo/{name}") as caller:
        for message in messages:
            caller.send(message)
        echoed = [caller.recv(timeout=10) for _ in messages]
    assert echoed == messages
    assert ws_upstream.session(name).received == messages


def test_a_fragmented_message_reaches_the_caller_whole(ws_relay: str) -> None:
    with session_to(f"{ws_relay}{RELAY_PREFIXES[0]}/echo/{key()}") as caller:
        caller.send("fragments")
        assert caller.recv(timeout=10) == "fragmented"


def test_the_handshake_follows_the_request_header_rules(
    ws_relay: str, ws_upstream: WebSocketUpstream, prefix: str
) -> None:
    """The caller's cookies, `Origin` and offer of subprotocols pass; hop-by-hop headers, its
    own handshake fields and forged forwarding headers do not; the path and query arrive as
    sent; the subprotocol the upstream chose comes back."""
    name = key()
    headers = {"Cookie": "a=1", "X-Forwarded-For": "203.0.113.9", "X-Custom": "kept"}
    url = f"{ws_relay}{prefix}/echo/{name}?sig=%2Fa%zz&b=1"
    with session_to(url, origin="https://app.example", subprotocols=["chat.v2", "chat.v1"],
                 additional_headers=headers) as caller:  # fmt: skip
        caller.send("ping")
        caller.recv(timeout=10)
        sent, answered = caller.request, caller.response
    assert sent is not None
    assert answered is not None
    seen = ws_upstream.session(name)
    upstream_headers = seen.headers
    assert seen.path == f"/api/echo/{name}"
    assert upstream_headers["Cookie"] == "a=1"
    assert upstream_headers["Origin"] == "https://app.example"
    assert upstream_headers["X-Custom"] == "kept"
    assert upstream_headers["X-Forwarded-For"] == "127.0.0.1"
    assert upstream_headers["Sec-WebSocket-Protocol"] == "chat.v2, chat.v1"
    assert upstream_headers["Sec-WebSocket-Key"] != sent.headers["Sec-WebSocket-Key"]
    # The caller offered compression (the client does by default): not the upstream's leg.
    assert "permessage-deflate" in sent.headers["Sec-WebSocket-Extensions"]
    assert "Sec-WebSocket-Extensions" not in upstream_headers
    assert upstream_headers.get_all("X-Request-ID") == answered.headers.get_all("X-Request-ID")
    assert len(answered.headers.get_all("X-Request-ID")) == 1
    assert caller.subprotocol == seen.subprotocol == "chat.v2"


def test_the_path_and_query_reach_the_upstream_byte_for_byte(
    ws_relay: str, ws_upstream: WebSocketUpstream
) -> None:
    name = key()
    with session_to(f"{ws_relay}{RELAY_PREFIXES[0]}/echo/{name}?sig=%2Fa%zz&b=1;v") as caller:
        caller.send("x")
        caller.recv(timeout=10)
    assert ws_upstream.session(name).target == f"/api/echo/{name}?sig=%2Fa%zz&b=1;v"


def test_without_a_subprotocol_chosen_none_comes_back(ws_relay: str) -> None:
    url = f"{ws_relay}{RELAY_PREFIXES[0]}/echo/{key()}"
    with session_to(url, subprotocols=["other"]) as caller:
        assert caller.subprotocol is None


def test_a_refusal_reaches_the_caller_as_it_came(ws_relay: str, prefix: str) -> None:
    """The upstream's status, headers and body, as bytes on the wire: each header once."""
    request = handshake(host_of(ws_relay), f"{prefix}/deny/{key()}")
    answer = exchange(ws_relay.replace("ws://", "http://"), request)
    assert answer.status == 403, answer.raw
    assert answer.body == b"denied: token expired\n"
    assert answer.values(b"x-reason") == [b"expired"]
    for name in (b"content-type", b"content-length", b"x-request-id"):
        assert len(answer.values(name)) == 1, answer.raw


def test_a_caller_without_a_key_is_refused_before_the_upstream_is_asked(
    ws_upstream: WebSocketUpstream,
) -> None:
    name = key()
    settings = relay_settings(ws_upstream.url, service_api_keys="k1", upstream_api_key="secret")
    with serve_relay(settings) as url:
        relay = url.replace("http://", "ws://")
        target = f"{RELAY_PREFIXES[0]}/echo/{name}"
        refused = exchange(url, handshake(host_of(relay), target))
        key_header = {"Authorization": "Bearer k1"}
        with session_to(relay + target, additional_headers=key_header) as caller:
            caller.send("x")
            caller.recv(timeout=10)
    assert refused.status == 401
    assert refused.values(b"www-authenticate") == [b"Bearer"]
    # Only the second handshake reached the upstream, with the upstream's credential.
    assert ws_upstream.session(name).headers.get_all("Authorization") == ["Bearer secret"]


def test_close_codes_and_reasons_pass_both_ways(
    ws_relay: str, ws_upstream: WebSocketUpstream, prefix: str
) -> None:
    by_caller, by_upstream = key(), key()
    with session_to(f"{ws_relay}{prefix}/echo/{by_caller}") as caller:
        caller.close(4002, "see you")
    assert ws_upstream.session(by_caller).close_code == 4002
    assert ws_upstream.session(by_caller).close_reason == "see you"

    with session_to(f"{ws_relay}{prefix}/echo/{by_upstream}") as caller:
        caller.send("close 4001 bye now")
        with pytest.raises(ConnectionClosed):
            caller.recv(timeout=10)
    assert caller.close_code == 4001
    assert caller.close_reason == "bye now"


def test_a_close_without_a_code_goes_on_as_1000(ws_relay: str) -> None:
    """1005 only reports that a close frame had no code: it is never sent."""
    with session_to(f"{ws_relay}{RELAY_PREFIXES[0]}/echo/{key()}") as caller:
        caller.send("empty-close")
        with pytest.raises(ConnectionClosed):
            caller.recv(timeout=10)
    assert caller.close_code == 1000


def test_a_caller_that_vanishes_ends_the_upstream_side_with_1000(
    ws_relay: str, ws_upstream: WebSocketUpstream
) -> None:
    name = key()
    host, port = ws_relay.removeprefix("ws://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(handshake(host_of(ws_relay), f"{RELAY_PREFIXES[0]}/echo/{name}"))
        assert raw.recv(65536).startswith(b"HTTP/1.1 101 ")
        ws_upstream.started(name)
    # Gone without a close frame: the upstream gets a close frame all the same, never 1005.
    assert ws_upstream.session(name).close_code == 1000


def read_to_the_end(caller: ClientConnection) -> None:
    """Read what comes until the session is closed, and `recv` raises."""
    while True:
        caller.recv(timeout=10)


def test_a_message_over_the_limit_ends_the_session(ws_upstream: WebSocketUpstream) -> None:
    """1009 to the side that sent it, 1011 to the other, whichever side it was."""
    from_caller, from_upstream = key(), key()
    settings = relay_settings(ws_upstream.url, websocket_max_message_bytes=64 * 1024)
    with serve_relay(settings) as url:
        relay = url.replace("http://", "ws://") + RELAY_PREFIXES[0]
        with session_to(f"{relay}/echo/{from_caller}") as caller:
            caller.send(bytes(64 * 1024))  # at the limit: passes
            assert len(caller.recv(timeout=10)) == 64 * 1024
            # While messages are on their way to it, which the relay must stop sending.
            caller.send("burst 1000")
            caller.send(bytes(64 * 1024 + 1))
            with pytest.raises(ConnectionClosed):
                read_to_the_end(caller)
        assert caller.close_code == 1009
        assert ws_upstream.session(from_caller).close_code == 1011

        with session_to(f"{relay}/echo/{from_upstream}") as caller:
            caller.send(f"big {64 * 1024 + 1}")
            with pytest.raises(ConnectionClosed):
                caller.recv(timeout=10)
        assert caller.close_code == 1011
        assert ws_upstream.session(from_upstream).close_code == 1009


def test_a_session_is_one_log_line_when_it_ends(ws_upstream: WebSocketUpstream) -> None:
    name = key()
    with serve_relay(relay_settings(ws_upstream.url)) as url, collect_logs() as logs:
        relay = url.replace("http://", "ws://") + RELAY_PREFIXES[0]
        with session_to(f"{relay}/echo/{name}") as caller:
            caller.send("hello")
            caller.recv(timeout=10)
            caller.send(b"\x00" * 10)
            caller.recv(timeout=10)
        line = f"GET {RELAY_PREFIXES[0]}/echo/{name} 101 "
        assert logs.wait_for(line)
    (logged,) = [entry for entry in logs.lines if line in entry]
    assert logged.endswith(
        ": 2 messages (15B) from the caller, 2 (15B) from the upstream, closed 1000 by caller"
    )


def test_a_caller_that_stops_reading_is_let_go(ws_upstream: WebSocketUpstream) -> None:
    """A caller that reads nothing stops answering the server's pings too: its session ends,
    and the upstream is told 1011, rather than the relay waiting on it for ever."""
    name = key()
    settings = {"websocket_ping_interval": 0.2, "websocket_ping_timeout": 0.2}
    with serve_relay(relay_settings(ws_upstream.url, **settings)) as url:
        host, port = host_of(url).split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.sendall(handshake(host_of(url), f"{RELAY_PREFIXES[0]}/echo/{name}"))
            assert raw.recv(4096).startswith(b"HTTP/1.1 101 ")
            raw.sendall(Frame(Opcode.TEXT, b"burst 20000").serialize(mask=True, extensions=[]))
            assert ws_upstream.session(name, seconds=30).close_code == 1011


def test_a_caller_that_breaks_the_protocol_is_not_passed_on(
    ws_relay: str, ws_upstream: WebSocketUpstream
) -> None:
    """A caller's text that is not UTF-8 gets it 1007 from the server in front; the upstream,
    which never saw it, is told 1011."""
    name = key()
    host, port = host_of(ws_relay).split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(handshake(host_of(ws_relay), f"{RELAY_PREFIXES[0]}/echo/{name}"))
        assert raw.recv(4096).startswith(b"HTTP/1.1 101 ")
        raw.sendall(Frame(Opcode.TEXT, b"\xff\xfe").serialize(mask=True, extensions=[]))
        assert ws_upstream.session(name).close_code == 1011


def test_a_caller_gone_before_its_session_opened_closes_the_upstream_side(
    ws_relay: str, ws_upstream: WebSocketUpstream
) -> None:
    """The upstream takes its time to answer the handshake, and the caller leaves meanwhile:
    the session the upstream opened is closed with 1001 (going away), not dropped."""
    name = key()
    host, port = host_of(ws_relay).split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(handshake(host_of(ws_relay), f"{RELAY_PREFIXES[0]}/slow/{name}"))
    assert ws_upstream.session(name).close_code == 1001
