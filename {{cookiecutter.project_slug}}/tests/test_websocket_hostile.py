"""WebSocket sessions with a broken or hostile upstream: each failure ends as the HTTP relay's
do (502, 503, 504) before the session opens, and with a close code the caller can act on after,
never with a hang."""

import base64
import hashlib
import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.service import Service

from tests.conftest import RELAY_PREFIXES
from tests.servers import refused_port, relay_settings, serve_service
from tests.websocket_upstream import session_to
from tests.wire import key

PREFIX = RELAY_PREFIXES[0]
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
# What follows the 101: bytes that are no frame (an unknown opcode, a length past the bytes),
# a text message that is not UTF-8, and the first frame of a text message whose end never comes.
_AFTER = {
    "garbage": b"\x8f\x7f" + b"\xff" * 16,
    "bad-text": b"\x81\x02\xff\xfe",
    "half": b"\x01\x03par",
}


class HostileUpstream:
    """A WebSocket server written by hand, which misbehaves as the path's first segment under
    /api/ says:

    - `hang-up`: reads the handshake and closes the connection without answering;
    - `never`: reads the handshake and never answers it;
    - `bad-accept`: answers 101 with the wrong `Sec-WebSocket-Accept`;
    - `extension`: answers 101 with an extension that was not offered;
    - `garbage`: completes the handshake, then sends bytes that are no frame;
    - `bad-text`: completes the handshake, then sends a text message that is not UTF-8;
    - `half`: completes the handshake, sends the first frame of a message, and closes;
    - `vanish`: completes the handshake and closes the connection at once;
    - `deaf`: completes the handshake, then neither reads nor sends anything.

    `received[name]` holds what came after each handshake, once the connection ended.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.handshakes: list[str] = []
        self.received: dict[str, bytes] = {}
        self.ended: dict[str, threading.Event] = {}

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                if not (data := conn.recv(65536)):
                    return
                head += data
            start, *lines = head.split(b"\r\n")
            path = start.split(b" ")[1].decode()
            name, behaviour = path.rsplit("/", 1)[-1], path.split("/")[2]
            self.handshakes.append(name)
            ended = self.ended.setdefault(name, threading.Event())
            fields = {
                field.lower(): value
                for field, _, value in (line.partition(b": ") for line in lines)
            }
            digest = hashlib.sha1(fields[b"sec-websocket-key"] + _GUID).digest()
            try:
                self.received[name] = self._misbehave(
                    conn, behaviour, base64.b64encode(digest), ended
                )
            finally:
                ended.set()

    def _misbehave(
        self, conn: socket.socket, behaviour: str, accept: bytes, ended: threading.Event
    ) -> bytes:
        """Do what `behaviour` says once the handshake has come; what the relay sent after it."""
        if behaviour == "hang-up":
            return b""
        if behaviour != "never":
            head = _SWITCH + b"Sec-WebSocket-Accept: "
            head += b"d3Jvbmc=\r\n" if behaviour == "bad-accept" else accept + b"\r\n"
            if behaviour == "extension":
                head += b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
            conn.sendall(head + b"\r\n" + _AFTER.get(behaviour, b""))
        if behaviour in {"half", "vanish"}:
            return b""
        if behaviour == "deaf":
            ended.wait(30)
            return b""
        return _rest(conn)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @contextmanager
    def running(self) -> Iterator["HostileUpstream"]:
        threading.Thread(target=self._accept, daemon=True).start()
        try:
            yield self
        finally:
            for ended in self.ended.values():
                ended.set()
            self.listener.close()


def _rest(conn: socket.socket) -> bytes:
    """What the peer sends until it closes the connection, or until its close frame (masked,
    as a client sends it) has come whole: then this side closes, as a server does."""
    data = b""
    conn.settimeout(30)
    try:
        while chunk := conn.recv(65536):
            data += chunk
            if data[:1] == b"\x88" and len(data) >= 6 + (data[1] & 0x7F):
                break
    except OSError:
        pass
    return data


def close_code(frames: bytes) -> int | None:
    """The code of the first frame in `frames` (masked, as a client sends them) if it is a
    close frame."""
    if len(frames) < 8 or frames[0] & 0x0F != 0x8:
        return None
    mask = frames[2:6]
    payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(frames[6:8]))
    code: int = struct.unpack("!H", payload)[0]
    return code


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream().running() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def relay(hostile: HostileUpstream) -> Iterator[str]:
    """A relay in front of `hostile` for the tests that need nothing of their own: a short
    timeout, and pings to an upstream quiet for 0.2 s, answered within 0.2 s."""
    settings = {
        "upstream_timeout": 1,
        "websocket_ping_interval": 0.2,
        "websocket_ping_timeout": 0.2,
    }
    with relay_to(hostile.url, **settings) as (url, _):
        yield url


@contextmanager
def relay_to(upstream: str, **overrides: object) -> Iterator[tuple[str, Service]]:
    """A relay of its own (its retry budget and breaker are its own), and its app."""
    app = create_app(relay_settings(upstream, **overrides))
    with serve_service(app, app.settings) as url:
        yield url.replace("http://", "ws://") + PREFIX, app


def refusal(url: str) -> tuple[int, dict[str, str], dict[str, str]]:
    """The status, headers and JSON body of the relay's refusal of a handshake to `url`."""
    with pytest.raises(InvalidStatus) as refused:
        session_to(url).close()
    response = refused.value.response
    return response.status_code, dict(response.headers.raw_items()), json.loads(response.body)


def test_an_upstream_that_never_answers_the_handshake_is_504_within_the_timeout(
    relay: str,
) -> None:
    status, _, body = refusal(f"{relay}/never/{key()}")
    assert status == 504
    assert body["detail"]


def test_an_upstream_that_is_down_is_502_and_the_handshake_is_retried() -> None:
    """Nothing reached an upstream that refused the connection: the handshake is sent again."""
    with refused_port() as port, relay_to(f"http://127.0.0.1:{port}") as (relay, app):
        status, _, _ = refusal(f"{relay}/echo/{key()}")
    assert status == 502
    assert app.upstream.tally.retries["ConnectError"] == 2


def test_a_handshake_that_reached_the_upstream_is_never_sent_again(
    relay: str, hostile: HostileUpstream
) -> None:
    name = key()
    status, _, _ = refusal(f"{relay}/hang-up/{name}")
    assert status == 502
    assert hostile.handshakes.count(name) == 1


@pytest.mark.parametrize("behaviour", ["hang-up", "bad-accept"])
def test_failed_handshakes_open_the_breaker(hostile: HostileUpstream, behaviour: str) -> None:
    """Handshakes are upstream calls like any other: with a breaker that judges four of them,
    four that got no answer, or a 101 that is not the one asked for, open it, and the next
    caller is refused at once with `Retry-After`."""
    with relay_to(hostile.url, upstream_breaker=True, upstream_breaker_min_calls=4) as (relay, _):
        statuses = [refusal(f"{relay}/{behaviour}/{key()}")[0] for _ in range(4)]
        name = key()
        status, headers, _ = refusal(f"{relay}/{behaviour}/{name}")
    assert statuses == [502] * 4
    assert status == 503
    assert int(headers["retry-after"]) >= 1
    assert name not in hostile.handshakes


@pytest.mark.parametrize("behaviour", ["bad-accept", "extension"])
def test_a_101_that_is_not_the_websocket_asked_for_is_502(relay: str, behaviour: str) -> None:
    status, _, body = refusal(f"{relay}/{behaviour}/{key()}")
    assert status == 502
    assert "WebSocket" in body["detail"]


@pytest.mark.parametrize(
    ("behaviour", "code", "told"),
    [
        ("garbage", 1014, 1002),
        ("bad-text", 1014, 1007),
        ("half", 1011, None),
        ("vanish", 1011, None),
    ],
)
def test_an_upstream_that_breaks_off_or_breaks_the_protocol_closes_the_caller(
    relay: str, hostile: HostileUpstream, behaviour: str, code: int, told: int | None
) -> None:
    """No hang: the caller is closed with a code it can act on (1014 for a broken protocol,
    1011 for an upstream gone), and an upstream that broke the protocol is told how."""
    name = key()
    with session_to(f"{relay}/{behaviour}/{name}") as caller, pytest.raises(ConnectionClosed):
        caller.recv(timeout=10)
    assert caller.close_code == code
    if told is not None:
        assert hostile.ended[name].wait(10)
        assert close_code(hostile.received[name]) == told


def test_an_upstream_that_stops_answering_pings_ends_its_session(relay: str) -> None:
    with session_to(f"{relay}/deaf/{key()}") as caller, pytest.raises(ConnectionClosed):
        caller.recv(timeout=30)
    assert caller.close_code == 1011
    assert "did not answer a ping" in (caller.close_reason or "")
