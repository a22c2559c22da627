"""WebSocket relay: a handshake to a relay path opens a session with the same path upstream.

The handshake goes through the relay's pipeline (`relay.open_session`): the upstream's refusal
reaches the caller as it came, with its status, headers and body (ASGI's
`websocket.http.response`), and failures as the HTTP relay answers them (502, 503, 504). Once
the upstream has switched, the caller's handshake is accepted with the upstream's subprotocol,
and messages go both ways, in order, whole, each as it arrives, until either side closes: its
close code and reason go to the other side. Each side is read only while the other can take
what it sends, so a side that stops reading holds the other back. A peer that no longer answers
pings (`WEBSOCKET_PING_INTERVAL`, `WEBSOCKET_PING_TIMEOUT`) ends its session.
"""

import asyncio
import contextlib

from starlette.types import Message, Receive, Send

from {{ cookiecutter.package_name }}.headers import RawHeaders
from {{ cookiecutter.package_name }}.relay import Incoming, open_session
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.upstream import Upstream
from {{ cookiecutter.package_name }}.websocket import CLOSE_TIMEOUT, Ending, Session, UpstreamSocket

# What the upstream is told when the caller leaves or breaks a rule: a code the server in front
# gives that only reports, or that says what the caller did wrong, is not the caller's to send.
_FROM_CALLER = {
    1002: 1011,  # the caller broke the protocol: the caller was told 1002
    1005: 1000,  # closed without a code, or gone: uvicorn says 1005 for both
    1006: 1011,
    1007: 1011,  # the caller's text was not UTF-8: the caller was told 1007
    1009: 1011,  # its message was over the limit: the caller was told 1009
    1012: 1001,  # the server is shutting down: the relay is going away
}
# The server in front refuses to send once it has closed the caller's side itself.
_CALLER_GONE = (OSError, RuntimeError)


async def websocket(
    upstream: Upstream,
    settings: Settings,
    request: Incoming,
    send: Send,
    session: Session,
) -> None:
    """Relay a WebSocket session: the handshake upstream, then messages both ways."""
    await request.receive()  # websocket.connect
    exchange = await open_session(upstream, settings, request)
    socket = exchange.socket
    if socket is None:
        await refuse(send, exchange.response.status, exchange.headers, exchange.content or b"")
        return
    caller, receive = Caller(send), request.receive
    try:
        accept = {"subprotocol": socket.subprotocol, "headers": exchange.headers}
        if await caller.message({"type": "websocket.accept", **accept}):
            session.ending = await relay_messages(socket, receive, caller, settings, session)
        else:
            session.ending = Ending(1001, "the caller went away", "caller")
            await socket.close(session.ending.code, session.ending.reason)
    finally:
        await socket.aclose()


async def refuse(send: Send, status: int, headers: RawHeaders, body: bytes) -> None:
    """Answer the caller's handshake with the upstream's refusal, as it came."""
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


class Caller:
    """The caller's side of a session, as the relay sends to it: whether it is still there, and
    since when a message has waited for it to read."""

    __slots__ = ("loop", "send", "waiting_since")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.loop = asyncio.get_running_loop()
        self.waiting_since: float | None = None

    async def message(self, message: Message) -> bool:
        """Send `message`, waiting while the caller does not read; False if it has gone."""
        self.waiting_since = self.loop.time()
        try:
            await self.send(message)
        except _CALLER_GONE:
            return False
        finally:
            self.waiting_since = None
        return True

    async def close(self, ending: Ending) -> None:
        """Close the caller's side with the session's ending, unless it has gone meanwhile or
        does not read even that."""
        close = {"type": "websocket.close", "code": ending.code, "reason": ending.reason}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.message(close)


async def relay_messages(
    socket: UpstreamSocket, receive: Receive, caller: Caller, settings: Settings, session: Session
) -> Ending:
    """Messages both ways until a side ends the session; then the other side is told."""
    directions = {
        asyncio.create_task(from_caller(receive, socket, session)),
        asyncio.create_task(from_upstream(socket, caller, session)),
        asyncio.create_task(keepalive(socket, caller, settings)),
    }
    try:
        done, _ = await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in directions:
            task.cancel()
        await asyncio.gather(*directions, return_exceptions=True)
    ending: Ending = next(iter(done)).result()
    if ending.by == "caller":
        await socket.close(ending.code, ending.reason)
    else:
        await caller.close(ending)
        if ending.by == "relay":
            await socket.close(1011, ending.reason)
    return ending


async def from_caller(receive: Receive, socket: UpstreamSocket, session: Session) -> Ending:
    """The caller's messages to the upstream, until the caller leaves."""
    ahead: Message | None = None
    while True:
        message = ahead or await receive()
        if message["type"] == "websocket.disconnect":
            code: int = message.get("code") or 1005
            return Ending(_FROM_CALLER.get(code, code), message.get("reason") or "", "caller")
        text = message.get("text")
        data = text if text is not None else message.get("bytes") or b""
        session.from_caller(socket.send(data))
        ahead = None if socket.ready else await drain(socket, receive)


async def drain(socket: UpstreamSocket, receive: Receive) -> Message | None:
    """Wait until the upstream takes what it was sent, or the caller leaves, whichever first.

    The caller's next message is read meanwhile, and held (one at most), so that a caller that
    leaves while the upstream is not reading is noticed, unless it sent another message first.
    """
    drained = asyncio.ensure_future(socket.drain())
    received = asyncio.ensure_future(receive())
    try:
        await asyncio.wait((drained, received), return_when=asyncio.FIRST_COMPLETED)
        if not received.done():
            return None
        message: Message = received.result()
        if message["type"] != "websocket.disconnect":
            await drained
        return message
    finally:
        drained.cancel()
        received.cancel()


async def from_upstream(socket: UpstreamSocket, caller: Caller, session: Session) -> Ending:
    """The upstream's messages to the caller, until the upstream closes or breaks a rule."""
    while True:
        message = await socket.receive()
        if isinstance(message, Ending):
            return message
        session.from_upstream(socket.received_bytes)
        if isinstance(message, str):
            sent = await caller.message({"type": "websocket.send", "text": message})
        else:
            sent = await caller.message({"type": "websocket.send", "bytes": message})
        if not sent:
            # The caller's side is closed: its disconnect, with its code, comes next to
            # `from_caller`; if it does not come soon, the caller has simply gone.
            await asyncio.sleep(CLOSE_TIMEOUT)
            return Ending(1001, "the caller went away", "caller")


async def keepalive(socket: UpstreamSocket, caller: Caller, settings: Settings) -> Ending:
    """End a session whose side has stopped answering.

    The upstream, when it has been quiet for `WEBSOCKET_PING_INTERVAL` while the relay waited
    for it, is pinged, and has `WEBSOCKET_PING_TIMEOUT` to answer; an upstream the relay is not
    reading from (its caller is slow) is not pinged. The caller is pinged by the server in front
    on the same terms; one that has not read a message for as long has stopped answering those
    pings too, and the server has given up on it.
    """
    interval, answer_within = settings.websocket_ping_interval, settings.websocket_ping_timeout
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        waiting = caller.waiting_since
        if waiting is not None and loop.time() - waiting >= interval + answer_within:
            return Ending(1011, "the caller stopped reading", "relay")
        since = socket.reading_since
        if since is None or loop.time() - max(since, socket.heard_at) < interval:
            continue
        pinged = loop.time()
        socket.ping()
        await asyncio.sleep(answer_within)
        if socket.heard_at < pinged and socket.reading_since is not None:
            return Ending(1011, "the upstream did not answer a ping in time", "relay")
