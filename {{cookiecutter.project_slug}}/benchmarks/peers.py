"""The WebSocket benchmark's own processes, each started by `sessions.py` and light to start:

- `python -m benchmarks.peers echo PORT`: the upstream, the `websockets` library's server,
  sending every message back (and 200 for a plain GET of /healthz, to be waited for);
- `python -m benchmarks.peers load URL SESSIONS SIZE SECONDS WARMUP`: the load, printing what
  it measured as JSON;
- `python -m benchmarks.peers hold URL SESSIONS`: idle sessions, held until stdin closes.
"""

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from http import HTTPStatus

import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response


async def echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


def ready(connection: ServerConnection, request: Request) -> Response | None:
    """A plain GET of /healthz is answered 200, so that the server can be waited for."""
    if request.path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    return None


async def serve_echo(port: int) -> None:
    """The upstream: the `websockets` library's server, sending every message back."""
    async with serve(
        echo, "127.0.0.1", port, process_request=ready, compression=None, max_size=None
    ):
        await asyncio.Future()


async def load(
    url: str, sessions: int, size: int, seconds: float, warmup: float
) -> dict[str, float]:
    """`sessions` sessions, each echoing `size` bytes at a time for `seconds` after `warmup`
    seconds: the round trips made, per second, and their latency."""
    message = os.urandom(size)
    latencies: list[float] = []
    counting = False

    async def one(connection: ClientConnection) -> None:
        clock = time.perf_counter
        while True:
            started = clock()
            await connection.send(message)
            await connection.recv()
            if counting:
                latencies.append(clock() - started)

    connections = [
        await connect(url, compression=None, max_size=None, open_timeout=60)
        for _ in range(sessions)
    ]
    tasks = [asyncio.create_task(one(connection)) for connection in connections]
    await asyncio.sleep(warmup)
    counting = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    counting = False
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for connection in connections:
        await connection.close()
    latencies.sort()
    return {
        "per_s": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


async def hold(url: str, sessions: int) -> None:
    """Open `sessions` idle sessions, say so, and hold them until stdin closes."""
    connections = [await connect(url, open_timeout=60) for _ in range(sessions)]
    print("open", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for connection in connections:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    command, *args = sys.argv[1:] if argv is None else argv
    if command == "echo":
        uvloop.run(serve_echo(int(args[0])))
    elif command == "load":
        url, sessions, size, seconds, warmup = args
        measured = load(url, int(sessions), int(size), float(seconds), float(warmup))
        print(json.dumps(uvloop.run(measured)))
    else:
        uvloop.run(hold(args[0], int(args[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
