"""The relays the service is compared with, each run by bench.py under uvicorn like the service.

- `requests_relay`: the motivating failure, a blocking `requests.get` per call inside
  `async def`, which stalls the event loop for every other caller while it waits.
- `httpx_relay`: the pattern as usually written, one shared `httpx.AsyncClient` (httpx 0.28,
  default transport) opened in the lifespan, given the same pool size as the service so the
  comparison is about the transport, not the pool. `/whole/...` reads the response and returns
  it; `/chunks/...` streams it back with `StreamingResponse`.
- `fastapi_aiohttp_relay`: the relay a user would write by hand in twenty lines, a FastAPI route
  and one shared `aiohttp.ClientSession` opened in the lifespan; `/whole/...` reads the response
  and returns it, with no header policy, no limits and no logs.
- `bare_relay`: the least code that can relay under uvicorn, a bare ASGI app on one shared
  `aiohttp.ClientSession`, with no framework and no httpx; `/chunks/...` streams, and a
  WebSocket session is relayed message by message (`ws_connect`). Not a service (no errors
  handled, no limits, no disconnects watched): what Python itself costs, the ceiling for any
  Python relay here.
- `proxy_lib_relay`: fastapi-proxy-lib's WebSocket reverse proxy, the library a user would
  pick to relay WebSockets from FastAPI, on httpx 0.28 and httpx-ws.

All read the upstream's base URL (ending in `/`) from `BENCH_UPSTREAM_URL`.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import aiohttp
import httpx
import requests
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from fastapi_proxy_lib.fastapi.app import reverse_ws_app
from starlette.background import BackgroundTask
from starlette.types import Receive, Scope, Send

UPSTREAM_URL = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:9000/")
MAX_CONNECTIONS = int(os.environ.get("BENCH_MAX_CONNECTIONS", "100"))

requests_relay = FastAPI()


@requests_relay.get("/whole/{path:path}")
async def requests_whole(path: str) -> Response:
    # Blocks the event loop until the upstream answers: exactly what the benchmark shows.
    answer = requests.get(UPSTREAM_URL + path, timeout=30)  # noqa: ASYNC210
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
    )


class State(TypedDict):
    client: httpx.AsyncClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[State]:
    limits = httpx.Limits(
        max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
    )
    async with httpx.AsyncClient(base_url=UPSTREAM_URL, limits=limits) as client:
        yield {"client": client}


httpx_relay = FastAPI(lifespan=lifespan)


@httpx_relay.get("/whole/{path:path}")
async def httpx_whole(path: str, request: Request) -> Response:
    client: httpx.AsyncClient = request.state.client
    answer = await client.get(path)
    return Response(
        answer.content,
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
    )


@httpx_relay.get("/chunks/{path:path}")
async def httpx_chunks(path: str, request: Request) -> StreamingResponse:
    client: httpx.AsyncClient = request.state.client
    answer = await client.send(client.build_request("GET", path), stream=True)
    return StreamingResponse(
        answer.aiter_raw(),
        status_code=answer.status_code,
        media_type=answer.headers.get("content-type"),
        background=BackgroundTask(answer.aclose),
    )


class SessionState(TypedDict):
    session: aiohttp.ClientSession


@asynccontextmanager
async def session_lifespan(app: FastAPI) -> AsyncIterator[SessionState]:
    connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield {"session": session}


fastapi_aiohttp_relay = FastAPI(lifespan=session_lifespan)


@fastapi_aiohttp_relay.get("/whole/{path:path}")
async def aiohttp_whole(path: str, request: Request) -> Response:
    session: aiohttp.ClientSession = request.state.session
    async with session.get(UPSTREAM_URL + path) as answer:
        body = await answer.read()
    return Response(body, status_code=answer.status, media_type=answer.headers.get("content-type"))


async def bare_relay(scope: Scope, receive: Receive, send: Send) -> None:
    """Open the session for the app's lifetime; stream each `/chunks/...` from the upstream."""
    if scope["type"] == "lifespan":
        connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as shared:
            await receive()  # lifespan.startup
            scope["state"]["session"] = shared
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    session: aiohttp.ClientSession = scope["state"]["session"]
    url = UPSTREAM_URL + scope["path"].removeprefix("/chunks/")
    if scope["type"] == "websocket":
        await bare_session(session, url, receive, send)
        return
    async with session.get(url, auto_decompress=False) as answer:
        headers = [
            (name.encode("latin-1"), answer.headers[name].encode("latin-1"))
            for name in ("content-type", "content-length")
            if name in answer.headers
        ]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        while not answer.content.at_eof():
            chunk, _ = await answer.content.readchunk()
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def bare_session(
    session: aiohttp.ClientSession, url: str, receive: Receive, send: Send
) -> None:
    """A WebSocket session relayed as plainly as aiohttp allows: each message as it comes."""
    await receive()  # websocket.connect
    async with session.ws_connect(url.replace("http", "ws", 1), max_msg_size=0) as upstream:
        await send({"type": "websocket.accept"})

        async def from_caller() -> None:
            while (message := await receive())["type"] == "websocket.receive":
                if message.get("text") is not None:
                    await upstream.send_str(message["text"])
                else:
                    await upstream.send_bytes(message["bytes"])

        async def from_upstream() -> None:
            async for message in upstream:
                if message.type is aiohttp.WSMsgType.TEXT:
                    await send({"type": "websocket.send", "text": message.data})
                else:
                    await send({"type": "websocket.send", "bytes": message.data})

        directions = [asyncio.create_task(from_caller()), asyncio.create_task(from_upstream())]
        await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
        for direction in directions:
            direction.cancel()


proxy_lib_relay = reverse_ws_app(
    httpx.AsyncClient(),
    base_url=UPSTREAM_URL.replace("http", "ws", 1),
    max_message_size_bytes=16 * 1024 * 1024,  # its default, 64 KiB, would refuse 1 MiB
)


async def proxy_lib_ready() -> str:
    return "ok"


proxy_lib_relay.add_api_route("/healthz", proxy_lib_ready)
