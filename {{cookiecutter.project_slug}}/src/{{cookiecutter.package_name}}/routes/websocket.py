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
from {{ cookiecutter.package_name }}.websocket import Ending, Session, UpstreamSocket

# What the caller's side is told, and sent on, when the caller leaves or breaks a rule: a code
# the server in front gives that only reports, or that is its own doing, is not the caller's.
_FROM_CALLER = {
    1005: 1000,  # closed without a code, or gone: uvicorn says 1005 for both
    1006: 1011,
    1009: 1011,  # its message was over the limit: the caller was told 1009
    1012: 1001,  # the server is shutting down: the relay is going away
}


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
    try:
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": socket.subprotocol,
                "headers": exchange.headers,
            }
        )
        session.ending = await relay_messages(socket, request.receive, send, settings, session)
    finally:
        await socket.aclose()


async def refuse(send: Send, status: int, headers: RawHeaders, body: bytes) -> None:
    """Answer the caller's handshake with the upstream's refusal, as it came."""
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


async def relay_messages(
    socket: UpstreamSocket, receive: Receive, send: Send, settings: Settings, session: Session
) -> Ending:
    """Messages both ways until a side ends the session; then the other side is told."""
    directions = {
        asyncio.create_task(from_caller(receive, socket, session)),
        asyncio.create_task(from_upstream(socket, send, session)),
        asyncio.create_task(keepalive(socket, settings)),
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
        await tell_caller(send, ending)
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
    leaves while the upstream is not reading is noticed at once.
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


async def from_upstream(socket: UpstreamSocket, send: Send, session: Session) -> Ending:
    """The upstream's messages to the caller, until the upstream closes or breaks a rule."""
    while True:
        message = await socket.receive()
        if isinstance(message, Ending):
            return message
        session.from_upstream(socket.received_bytes)
        try:
            if isinstance(message, str):
                await send({"type": "websocket.send", "text": message})
            else:
                await send({"type": "websocket.send", "bytes": message})
        except OSError:  # the caller has gone
            return Ending(1001, "the caller went away", "caller")


async def keepalive(socket: UpstreamSocket, settings: Settings) -> Ending:
    """Ping an upstream that has been quiet for `WEBSOCKET_PING_INTERVAL` while the relay waited
    for it; it has `WEBSOCKET_PING_TIMEOUT` to answer. An upstream the relay is not reading
    from (its caller is slow) is not pinged: its bytes wait in the socket."""
    interval, answer_within = settings.websocket_ping_interval, settings.websocket_ping_timeout
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        since = socket.reading_since
        if since is None or loop.time() - max(since, socket.heard_at) < interval:
            continue
        pinged = loop.time()
        socket.ping()
        await asyncio.sleep(answer_within)
        if socket.heard_at < pinged and socket.reading_since is not None:
            return Ending(1011, "the upstream did not answer a ping in time", "relay")


async def tell_caller(send: Send, ending: Ending) -> None:
    """Close the caller's side with the session's ending; nothing if the caller has gone."""
    with contextlib.suppress(OSError):
        await send({"type": "websocket.close", "code": ending.code, "reason": ending.reason})
