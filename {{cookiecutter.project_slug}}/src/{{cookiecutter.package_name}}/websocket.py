"""The upstream leg of a relayed WebSocket session: its handshake checked, then whole messages.

The relay speaks WebSocket to the upstream itself, over the connection the pool hands over after
a 101 (`pool.Tunnel`), with the sans-I/O protocol of the `websockets` library, the one uvicorn
speaks to callers: frames, masks, fragments, answering pings and the closing handshake are its
job. Reading and writing are this module's, one message at a time, so that a side that does not
read holds the other back instead of filling the service's memory.

A close code that only reports (1005: none was given, 1006: the connection dropped, 1015: TLS
failed) never goes on the wire: `wire_code` says what is sent instead.
"""

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import cast

from websockets.client import ClientProtocol
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from {{ cookiecutter.package_name }}.errors import InvalidUpstreamResponse
from {{ cookiecutter.package_name }}.pool import Tunnel, UpstreamResponse

# What goes on the wire for a code that only reports how a session ended.
_REPORTED_ONLY = {1005: 1000, 1006: 1011, 1015: 1011}
# The longest close reason a frame can carry, in UTF-8 bytes.
MAX_REASON_BYTES = 123
# Seconds the upstream gets to answer the relay's close frame before its connection is closed.
CLOSE_TIMEOUT = 1.0


def wire_code(code: int) -> int:
    """The close code to send for `code`: itself, unless it only reports."""
    return _REPORTED_ONLY.get(code, code)


def short(reason: str) -> str:
    """`reason`, cut to what a close frame can carry."""
    encoded = reason.encode()
    if len(encoded) <= MAX_REASON_BYTES:
        return reason
    return encoded[:MAX_REASON_BYTES].decode(errors="ignore")


@dataclass(frozen=True, slots=True)
class Ending:
    """How a session ended: the close code and reason to pass on, and which side ended it
    (`caller`, `upstream`, or `relay` when the service did, as when a peer broke the rules)."""

    code: int
    reason: str
    by: str


@dataclass(slots=True)
class Traffic:
    """Messages and bytes relayed each way: one session's, or every session's."""

    from_caller: int = 0
    from_caller_bytes: int = 0
    from_upstream: int = 0
    from_upstream_bytes: int = 0

    def add(self, other: "Traffic") -> None:
        self.from_caller += other.from_caller
        self.from_caller_bytes += other.from_caller_bytes
        self.from_upstream += other.from_upstream
        self.from_upstream_bytes += other.from_upstream_bytes


class Session:
    """What a session relayed, and how it ended, as the service reports it."""

    __slots__ = ("ending", "traffic")

    def __init__(self) -> None:
        self.traffic = Traffic()
        self.ending: Ending | None = None

    def from_caller(self, size: int) -> None:
        self.traffic.from_caller += 1
        self.traffic.from_caller_bytes += size

    def from_upstream(self, size: int) -> None:
        self.traffic.from_upstream += 1
        self.traffic.from_upstream_bytes += size


def upstream_protocol(offered: list[str], max_message_bytes: int) -> ClientProtocol:
    """The protocol of a new upstream leg, offering the caller's subprotocols and no extension
    (compression is each leg's own: the caller's is negotiated with the server in front).

    It starts open: the relay makes the handshake itself, through the pool, with its `key`.
    """
    return ClientProtocol(
        parse_uri("ws://upstream/"),  # its handshake request is never made
        subprotocols=cast("list[Subprotocol]", offered) or None,
        state=State.OPEN,
        max_size=max_message_bytes,
    )


def check_switch(protocol: ClientProtocol, response: UpstreamResponse) -> None:
    """Raise `InvalidUpstreamResponse` unless the upstream's 101 opens a WebSocket as the relay
    asked: its accept key, no extension, and one of the caller's subprotocols, if any."""
    headers = Headers(
        [(name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers]
    )
    try:
        protocol.process_response(Response(101, response.reason.decode("latin-1"), headers))
    except InvalidHandshake as exc:
        detail = f"the upstream's 101 does not open a WebSocket: {exc}"
        raise InvalidUpstreamResponse(detail) from None


class UpstreamSocket:
    """The upstream leg: whole messages in and out over the tunnel, and how it ended."""

    def __init__(self, response: UpstreamResponse, protocol: ClientProtocol) -> None:
        assert response.tunnel is not None
        self.response = response
        self.tunnel: Tunnel = response.tunnel
        self.protocol = protocol
        self.frames: deque[Frame] = deque()
        self.fragments: list[bytes] = []
        self.fragmented_text = False
        self.received_bytes = 0  # the size of the last message `receive` returned
        self.loop = asyncio.get_running_loop()
        # When a read began that has not returned yet, and when bytes last came.
        self.reading_since: float | None = None
        self.heard_at = self.loop.time()

    @property
    def subprotocol(self) -> str | None:
        return self.protocol.subprotocol

    async def receive(self) -> str | bytes | Ending:
        """The upstream's next whole message, or how the session ended on its side."""
        protocol = self.protocol
        while True:
            while self.frames:
                message = self._message(self.frames.popleft())
                if message is not None:
                    return message
            if protocol.close_rcvd is not None:
                close = protocol.close_rcvd
                return Ending(wire_code(close.code), close.reason, "upstream")
            if protocol.state is not State.OPEN:
                self._flush()  # the close frame of a failure
                return self._failure()
            self.reading_since = self.loop.time()
            data = await self.tunnel.read()
            self.reading_since = None
            self.heard_at = self.loop.time()
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            self._flush()  # pongs, and the answer to a close
            # After the handshake, every event is a frame.
            self.frames.extend(cast("list[Frame]", protocol.events_received()))

    def _message(self, frame: Frame) -> str | bytes | None:
        """A whole message, once its last frame came; None for control frames and fragments."""
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if not frame.fin:
                self.fragments = [bytes(frame.data)]
                self.fragmented_text = opcode is Opcode.TEXT
                return None
            data = bytes(frame.data)
            self.received_bytes = len(data)
            return self._text(data) if opcode is Opcode.TEXT else data
        if opcode is Opcode.CONT:
            self.fragments.append(bytes(frame.data))
            if frame.fin:
                whole = b"".join(self.fragments)
                self.fragments = []
                self.received_bytes = len(whole)
                return self._text(whole) if self.fragmented_text else whole
        return None

    def _text(self, data: bytes) -> str | None:
        """A text message as text; None, with the upstream failed (1007), if it is not UTF-8."""
        try:
            return data.decode()
        except UnicodeDecodeError:
            self.protocol.fail(1007, "invalid UTF-8 in a text message")
            self.frames.clear()
            return None

    def _failure(self) -> Ending:
        """How the session ends when the upstream broke the protocol or went away: what the
        relay sent the upstream (`websockets` fails the connection with a close frame) says."""
        sent = self.protocol.close_sent
        if sent is None:  # the connection ended without a close frame
            return Ending(1011, "the upstream went away", "upstream")
        if sent.code == 1009:
            return Ending(1011, "the upstream sent a message over the relay's limit", "relay")
        reason = short(f"the upstream broke the WebSocket protocol: {sent.reason}")
        return Ending(1014, reason, "relay")

    def send(self, message: str | bytes) -> int:
        """Send a whole message; its size in bytes. Once the session is closing, none is sent.

        It is taken at once: while the upstream does not read, the socket is not `ready`, and
        the sender should `drain()` before sending more.
        """
        data = message.encode() if isinstance(message, str) else message
        if self.protocol.state is State.OPEN:
            if isinstance(message, str):
                self.protocol.send_text(data)
            else:
                self.protocol.send_binary(data)
            self._flush()
        return len(data)

    @property
    def ready(self) -> bool:
        """Whether the upstream is taking what it is sent."""
        return self.tunnel.ready

    async def drain(self) -> None:
        """Wait until the upstream has taken what it was sent."""
        await self.tunnel.drain()

    def ping(self) -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_ping(b"relay")
            self._flush()

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake, if it is not under way, and give the upstream a moment
        to finish it."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(wire_code(code), short(reason))
            self._flush()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                while await self.tunnel.read():
                    pass
        except TimeoutError:
            pass

    async def aclose(self) -> None:
        """Close the connection and give back its place in the pool."""
        await self.response.aclose()

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:  # b"" asks for the end of the stream: `aclose` closes it whole
                self.tunnel.write(data)
