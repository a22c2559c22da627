"""WebSocket sessions at scale and through a shutdown: bounded memory whichever side stops
reading, nothing left behind after a thousand sessions ended every way, a clean stop."""

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.asyncio.client import connect as connect_async
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from {{ cookiecutter.package_name }}.app import create_app

from tests.conftest import RELAY_PREFIXES
from tests.servers import Service, relay_settings, run_service, serve_service
from tests.websocket_upstream import WebSocketUpstream, handshake, session_to
from tests.wire import key

pytestmark = pytest.mark.slow

PREFIX = RELAY_PREFIXES[0]
MiB = 1024 * 1024
# What the service may hold for one session whose other side does not read, allocator noise
# included: a few socket buffers' worth, never what the sending side sends.
HELD_AT_MOST_KIB = 16 * 1024


@pytest.fixture(scope="module")
def ws_service(ws_upstream: WebSocketUpstream) -> Iterator[Service]:
    """The service in its own process, as in production, in front of `ws_upstream`."""
    with run_service(ws_upstream.url) as service:
        yield service


@contextmanager
def opened(service: Service, target: str) -> Iterator[socket.socket]:
    """A caller's WebSocket session to `target` as a bare socket, once the service accepted
    it: a caller that reads only what a test reads (a library's client reads ahead)."""
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(handshake(host, target))
        assert raw.recv(65536).startswith(b"HTTP/1.1 101 ")
        yield raw


def wait_until_still(count: Callable[[], int], seconds: float = 60) -> int:
    """`count()` once it has stopped growing for half a second."""
    deadline = time.monotonic() + seconds
    last = -1
    while (now := count()) != last:
        assert time.monotonic() < deadline, "still growing"
        last = now
        time.sleep(0.5)
    return now


def test_a_caller_that_does_not_read_holds_back_the_upstream(
    ws_service: Service, ws_upstream: WebSocketUpstream
) -> None:
    """The upstream sends 100 MiB to a caller that reads none of it: the upstream is held back
    at a few socket buffers' worth, and the service's memory does not grow with what it sent."""
    name = key()
    with opened(ws_service, f"{PREFIX}/echo/{name}") as raw:
        ws_service.reset_peak_rss()
        before = ws_service.peak_rss_kib()
        raw.sendall(Frame(Opcode.TEXT, b"burst 102400").serialize(mask=True, extensions=[]))
        session = ws_upstream.started(name)
        sent = wait_until_still(lambda: session.sent)
        grown = ws_service.peak_rss_kib() - before
    assert sent < 102400 // 2, "the upstream was not held back"
    assert grown < HELD_AT_MOST_KIB, f"the service grew by {grown} KiB"


def test_an_upstream_that_does_not_read_holds_back_the_caller(ws_service: Service) -> None:
    """A caller sends up to 100 MiB to an upstream that reads none of it: the caller is held
    back, and the service's memory does not grow with what it sent."""
    frame = Frame(Opcode.BINARY, bytes(64 * 1024)).serialize(mask=True, extensions=[])
    with opened(ws_service, f"{PREFIX}/deaf/{key()}") as raw:
        ws_service.reset_peak_rss()
        before = ws_service.peak_rss_kib()
        raw.settimeout(2)  # blocked this long: held back
        sent = 0
        try:
            while sent < 100 * MiB:
                raw.sendall(frame)
                sent += len(frame)
        except TimeoutError:
            pass
        grown = ws_service.peak_rss_kib() - before
    assert sent < 50 * MiB, "the caller was not held back"
    assert grown < HELD_AT_MOST_KIB, f"the service grew by {grown} KiB"


class LoopWatch:
    """The service's app, noting the event loop it runs on, to count its tasks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)

    def tasks(self) -> int:
        """The tasks on the service's loop, but the one counting them."""

        async def count() -> int:
            return len(asyncio.all_tasks()) - 1

        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(10)


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="open files are counted in /proc")
def test_a_thousand_sessions_ended_every_way_leave_nothing_behind(
    ws_upstream: WebSocketUpstream,
) -> None:
    """Sessions closed by either side, vanished callers and upstreams, refused handshakes and
    messages over the limit: afterwards the service holds no task, connection or session."""
    app = create_app(relay_settings(ws_upstream.url, websocket_max_message_bytes=64 * 1024))
    watched = LoopWatch(app)
    with serve_service(watched, app.settings) as url:
        relay = url.replace("http://", "ws://") + PREFIX
        host, port = url.removeprefix("http://").split(":")

        async def closed_by_caller() -> None:
            async with connect_async(f"{relay}/echo/{key()}") as caller:
                await caller.send("hello")
                await caller.recv()

        async def closed_by_upstream() -> None:
            async with connect_async(f"{relay}/echo/{key()}") as caller:
                await caller.send("close 4001 bye")
                with pytest.raises(ConnectionClosed):
                    await caller.recv()

        async def caller_vanished() -> None:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(handshake(host, f"{PREFIX}/echo/{key()}"))
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
            writer.close()

        async def upstream_vanished() -> None:
            async with connect_async(f"{relay}/echo/{key()}") as caller:
                await caller.send("abort")
                with pytest.raises(ConnectionClosed):
                    await caller.recv()

        async def refused() -> None:
            with pytest.raises(InvalidStatus):
                await connect_async(f"{relay}/deny/{key()}")

        async def over_the_limit() -> None:
            async with connect_async(f"{relay}/echo/{key()}") as caller:
                await caller.send(bytes(64 * 1024 + 1))
                with pytest.raises(ConnectionClosed):
                    await caller.recv()

        ways = [
            closed_by_caller,
            closed_by_upstream,
            caller_vanished,
            upstream_vanished,
            refused,
            over_the_limit,
        ]

        async def every_way(sessions: int) -> None:
            at_once = asyncio.Semaphore(16)

            async def one(number: int) -> None:
                async with at_once, asyncio.timeout(60):
                    await ways[number % len(ways)]()

            async with asyncio.TaskGroup() as group:
                for number in range(sessions):
                    group.create_task(one(number))

        asyncio.run(every_way(1))  # what is made once, the first session makes
        tasks, files = wait_until_still(watched.tasks), wait_until_still(open_files)
        asyncio.run(every_way(1000))
        assert wait_until_still(watched.tasks) <= tasks
        assert wait_until_still(open_files) <= files


def test_sigterm_closes_open_sessions_and_exits_cleanly(ws_upstream: WebSocketUpstream) -> None:
    """The caller is told the service restarts (1012, uvicorn's own close), the upstream that
    the relay goes away (1001), and the process exits 0."""
    name = key()
    with run_service(ws_upstream.url, SHUTDOWN_TIMEOUT="10") as service:
        url = service.url.replace("http://", "ws://")
        with session_to(f"{url}{PREFIX}/echo/{name}") as caller:
            caller.send("hello")
            caller.recv(timeout=10)
            service.terminate()
            with pytest.raises(ConnectionClosed):
                caller.recv(timeout=30)
        status = service.exit_status()
        log = service.log()
    assert caller.close_code == 1012
    assert ws_upstream.session(name).close_code == 1001
    assert status == 0, log
    assert "Traceback" not in log
