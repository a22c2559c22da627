"""The benchmark's upstream: a bare ASGI app, as fast as uvicorn can serve, on 127.0.0.1.

`GET /small.json` answers a small JSON object; `GET /10mb` answers 10 MiB of bytes in 1 MiB
chunks with a Content-Length. Anything else is 404. Each answer starts after
`BENCH_UPSTREAM_DELAY_MS` milliseconds (0 by default), to play a remote API. bench.py runs it as
`uvicorn benchmarks.upstream:app --lifespan off`.
"""

import asyncio
import json
import os

from starlette.types import Receive, Scope, Send

SMALL_PATH = "small.json"
BIG_PATH = "10mb"
SMALL_BODY = json.dumps(
    {"id": 42, "name": "benchmark", "tags": ["small", "json"], "active": True},
    separators=(",", ":"),
).encode()
BIG_CHUNK = b"x" * (1024 * 1024)
BIG_CHUNKS = 10
BIG_SIZE = len(BIG_CHUNK) * BIG_CHUNKS
DELAY_SECONDS = float(os.environ.get("BENCH_UPSTREAM_DELAY_MS", "0")) / 1000


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Serve the two bodies; no framework, so the upstream is never the slow part."""
    assert scope["type"] == "http"
    path = scope["path"]
    if DELAY_SECONDS:
        await asyncio.sleep(DELAY_SECONDS)
    if path == f"/{SMALL_PATH}":
        await _start(send, 200, len(SMALL_BODY), b"application/json")
        await send({"type": "http.response.body", "body": SMALL_BODY})
    elif path == f"/{BIG_PATH}":
        await _start(send, 200, BIG_SIZE, b"application/octet-stream")
        for _ in range(BIG_CHUNKS):
            await send({"type": "http.response.body", "body": BIG_CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await _start(send, 404, 0, b"text/plain")
        await send({"type": "http.response.body", "body": b""})


async def _start(send: Send, status: int, length: int, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(length).encode("ascii")),
            ],
        }
    )
