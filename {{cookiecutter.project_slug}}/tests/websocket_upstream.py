"""A WebSocket upstream no one here wrote: the `websockets` library's server, on 127.0.0.1,
and a caller's side: `session_to`, a session as that library's client opens it, and
`handshake`, one written out by hand.

Every session is recorded under the last segment of its path (a test's `key()`): the handshake
as it arrived, the messages received, and the close frame the relay sent, if any. What it does
depends on the path's first segment under /api/:

- `echo`: sends every message back; a text message `close CODE REASON` closes with that code
  and reason instead, `fragments` sends a text message in three frames, `empty-close` sends a
  close frame without a code, `big N` sends N bytes in one message, `burst N` sends N
  binary messages of 1 KiB at once, and `abort` drops the connection without a close frame;
- `deny`: refuses the handshake with 403, a body and an `X-Reason` header;
- `slow`: answers the handshake after half a second, then as `echo`;
- `silent`: reads every message and answers none;
- `deaf`: reads nothing (the server reads a few messages ahead, then stops).
"""

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

# The subprotocols it speaks; it picks the first the caller offers.
SUBPROTOCOLS = [Subprotocol("chat.v1"), Subprotocol("chat.v2")]


@dataclass
class Session:
    """One session as the upstream saw it."""

    path: str
    target: str  # the path and query, as they arrived
    headers: Headers
    subprotocol: str | None = None
    received: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None  # of the close frame the relay sent; None without one
    close_reason: str | None = None
    sent: int = 0  # messages it managed to send
    ended: threading.Event = field(default_factory=threading.Event)


class WebSocketUpstream:
    """The server in a thread of its own; `sessions[key]` records each session."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.url = ""

    def started(self, key: str, seconds: float = 10) -> Session:
        """The session recorded under `key`, once it is: its handler may start after the
        caller already has its 101."""
        deadline = time.monotonic() + seconds
        while key not in self.sessions:
            assert time.monotonic() < deadline, f"no session {key}"
            time.sleep(0.01)
        return self.sessions[key]

    def session(self, key: str, seconds: float = 10) -> Session:
        """The session recorded under `key`, once it has ended."""
        session = self.started(key, seconds)
        assert session.ended.wait(seconds), f"session {key} did not end"
        return session

    def _select(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        return next((protocol for protocol in offered if protocol in SUBPROTOCOLS), None)

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        behaviour = request.path.split("?")[0].split("/")[2]
        if behaviour == "slow":
            await asyncio.sleep(0.5)
        if behaviour != "deny":
            return None
        response = connection.respond(HTTPStatus.FORBIDDEN, "denied: token expired\n")
        response.headers["X-Reason"] = "expired"
        return response

    async def _handle(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        path = request.path.split("?")[0]
        session = Session(path, request.path, request.headers, connection.subprotocol)
        self.sessions[path.rsplit("/", 1)[-1]] = session
        behaviour = path.split("/")[2]
        try:
            if behaviour == "deaf":
                await connection.wait_closed()
            async for message in connection:
                session.received.append(message)
                if behaviour in {"echo", "slow"}:
                    await self._echo(connection, session, message)
        except ConnectionClosed:
            pass
        finally:
            close = connection.protocol.close_rcvd
            if close is not None:
                session.close_code, session.close_reason = close.code, close.reason
            session.ended.set()

    async def _echo(
        self, connection: ServerConnection, session: Session, message: str | bytes
    ) -> None:
        if isinstance(message, str) and message.startswith("close "):
            _, code, reason = message.split(" ", 2)
            await connection.close(int(code), reason)
        elif message == "abort":
            connection.transport.abort()  # gone, without a close frame
        elif message == "fragments":
            await connection.send(["frag", "men", "ted"])
        elif message == "empty-close":
            # A close frame with no code, which the relay must not pass on as 1005.
            await connection.close(None)  # type: ignore[arg-type]  # the library allows it
        elif isinstance(message, str) and message.startswith("big "):
            await connection.send(bytes(int(message.split()[1])))
        elif isinstance(message, str) and message.startswith("burst "):
            for _ in range(int(message.split()[1])):
                await connection.send(b"x" * 1024)
                session.sent += 1
        else:
            await connection.send(message)
            session.sent += 1

    @contextmanager
    def running(self) -> Iterator["WebSocketUpstream"]:
        started = threading.Event()
        stop: list[Callable[[], object]] = []

        async def main() -> None:
            loop = asyncio.get_running_loop()
            stopped = loop.create_future()
            stop.append(lambda: loop.call_soon_threadsafe(stopped.set_result, None))
            async with serve(
                self._handle,
                "127.0.0.1",
                0,
                process_request=self._process_request,
                select_subprotocol=self._select,
                max_size=None,
                compression=None,
                # At the end, a session whose peer has gone silent holds the server this long.
                close_timeout=1,
            ) as server:
                self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
                started.set()
                await stopped

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        thread.start()
        assert started.wait(10)
        try:
            yield self
        finally:
            stop[0]()
            thread.join(10)


def session_to(url: str, **options: Any) -> ClientConnection:
    """A caller's session to `url`, as the `websockets` library's client opens it, with room
    for any message and for a slow machine."""
    opened: ClientConnection = connect(
        url, open_timeout=30, close_timeout=10, max_size=None, **options
    )
    return opened


def handshake(host: str, target: str, *lines: bytes) -> bytes:
    """A caller's WebSocket handshake to `host` (`127.0.0.1:8000`), written out by hand."""
    return b"\r\n".join(
        [
            f"GET {target} HTTP/1.1".encode(),
            b"Host: " + host.encode(),
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            b"Sec-WebSocket-Version: 13",
            *lines,
            b"",
            b"",
        ]
    )
