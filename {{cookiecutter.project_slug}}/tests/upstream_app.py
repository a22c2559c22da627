"""A small upstream API for the tests, served for real by uvicorn on 127.0.0.1.

Every route lives under /api/, the base path the relay is configured with, so a request that
escapes the base path lands in `escaped` and the tests can see it.
"""

import asyncio
import gzip
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

CHUNK = b"x" * 65536
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class BrokenBody:
    """Promises 1 MiB, sends 64 KiB, then hangs up: a body cut off mid-way."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", b"1048576"),
                    (b"content-type", b"application/octet-stream"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": CHUNK, "more_body": True})


async def until_set(event: threading.Event, seconds: float) -> None:
    """Wait for a test thread to set `event`, or for `seconds`, without blocking the loop."""
    for _ in range(int(seconds * 100)):
        if event.is_set():
            return
        await asyncio.sleep(0.01)


async def held_back(gate: threading.Event) -> AsyncIterator[bytes]:
    """`first`, then `last` once `gate` is set (or 10 s have passed)."""
    yield b"first"
    await until_set(gate, seconds=10)
    yield b"last"


@dataclass
class Hold:
    """A request to `/api/held/{name}`: the test sees it arrive and decides when it is answered.

    So a test keeps a request in flight for exactly as long as it needs, however slow the
    machine, instead of guessing how long a sleep upstream will be enough.
    """

    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def wait_until_arrived(self, seconds: float = 30) -> None:
        assert self.arrived.wait(seconds), "the held request never reached the upstream"


class Recorder:
    """What the upstream saw, for assertions: every raw path that reached it."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.open_streams = 0
        # `/api/gated` holds back the end of its body until a test sets this.
        self.gate = threading.Event()
        self.holds: dict[str, Hold] = {}

    def hold(self, name: str) -> Hold:
        """The hold for requests to `/api/held/{name}`: take it before sending one."""
        return self.holds.setdefault(name, Hold())


async def cookies(request: Request) -> Response:
    response = Response(b"cookies", media_type="text/plain")
    response.raw_headers += [
        (b"set-cookie", b"a=1; Path=/"),
        (b"set-cookie", b"b=2; Path=/"),
        (b"vary", b"Accept"),
        (b"vary", b"Origin"),
        (b"connection", b"x-private"),
        (b"x-private", b"hop-by-hop"),
    ]
    return response


async def gzipped(request: Request) -> Response:
    body = gzip.compress(json.dumps({"compressed": True}).encode())
    return Response(body, media_type="application/json", headers={"content-encoding": "gzip"})


async def not_found(request: Request) -> Response:
    return JSONResponse({"detail": "no such upstream route"}, status_code=404)


class Held:
    """Answers once the test releases the request's hold, named in its path (or after 30 s)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hold = self.recorder.hold(scope["path_params"]["name"])
        hold.arrived.set()
        await until_set(hold.released, seconds=30)
        await JSONResponse({"held": True})(scope, receive, send)


def create_upstream(recorder: Recorder) -> Starlette:
    async def echo(request: Request) -> Response:
        """Answer with what arrived: method, raw path, query, headers (as pairs) and body.

        `?delay=S` waits S seconds first, to keep many requests in flight at once.
        """
        body = await request.body()
        await asyncio.sleep(float(request.query_params.get("delay", "0")))
        return JSONResponse(
            {
                "method": request.method,
                "raw_path": request.scope["raw_path"].decode("latin-1"),
                "query": request.scope["query_string"].decode("latin-1"),
                "headers": [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw
                ],
                "body": body.decode("latin-1"),
            }
        )

    async def sink(request: Request) -> Response:
        """Count the request body as it streams in, never holding it whole."""
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
        except ClientDisconnect:
            return Response(status_code=499)
        return JSONResponse({"received": received})

    async def raw(request: Request) -> Response:
        """Return exactly the body and content type asked for in the query."""
        return Response(
            bytes.fromhex(request.query_params.get("hex", "")),
            media_type=request.query_params.get("type", "application/octet-stream"),
        )

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        if code in {204, 304}:
            return Response(status_code=code)
        return JSONResponse({"status": "chosen"}, status_code=code)

    async def sized(request: Request) -> Response:
        """A streamed body of `size` bytes, sent in 64 KiB chunks, without Content-Length."""
        size = int(request.path_params["size"])

        async def chunks() -> AsyncIterator[bytes]:
            recorder.open_streams += 1
            try:
                remaining = size
                while remaining > 0:
                    piece = CHUNK[: min(remaining, len(CHUNK))]
                    remaining -= len(piece)
                    yield piece
                    # Let the server notice a disconnect; uvicorn drops sends to a closed peer.
                    await asyncio.sleep(0)
            finally:
                recorder.open_streams -= 1

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    async def gated(request: Request) -> Response:
        """`first`, then `last` once the gate opens; `?sized` declares the length up front."""
        headers = {"content-length": "9"} if "sized" in request.query_params else None
        return StreamingResponse(
            held_back(recorder.gate), headers=headers, media_type="application/octet-stream"
        )

    async def drip(request: Request) -> Response:
        """`chunks` small chunks, `interval` seconds apart."""
        count = int(request.query_params["chunks"])
        interval = float(request.query_params["interval"])

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(count):
                await asyncio.sleep(interval)
                yield b"drop\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(float(request.query_params.get("seconds", "1")))
        return JSONResponse({"slow": True})

    async def escaped(request: Request) -> Response:
        recorder.paths.append(request.scope["raw_path"].decode("latin-1"))
        return JSONResponse({"escaped": True}, status_code=418)

    return Starlette(
        routes=[
            Route("/api/echo/{rest:path}", echo, methods=METHODS),
            Route("/api/raw", raw),
            Route("/api/sink", sink, methods=["POST", "PUT"]),
            Route("/api/status/{code:int}", status, methods=["GET", "POST", "HEAD"]),
            Route("/api/bytes/{size:int}", sized),
            Route("/api/slow", slow),
            Route("/api/drip", drip),
            Route("/api/gated", gated),
            Route("/api/held/{name}", Held(recorder)),
            Route("/api/cookies", cookies),
            Route("/api/gzip", gzipped),
            Route("/api/broken", BrokenBody()),
            Route("/api/{rest:path}", not_found, methods=METHODS),
            Route("/{rest:path}", escaped, methods=METHODS),
        ]
    )


def wait_for_no_open_streams(recorder: Recorder, seconds: float) -> bool:
    """Whether the upstream's streamed bodies all end within `seconds` (it notices a close late)."""
    deadline = time.monotonic() + seconds
    while recorder.open_streams and time.monotonic() < deadline:
        time.sleep(0.01)
    return recorder.open_streams == 0
