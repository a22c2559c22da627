"""The relays the service is compared with, each run by bench.py under uvicorn like the service.

- `requests_relay`: the motivating failure, a blocking `requests.get` per call inside
  `async def`, which stalls the event loop for every other caller while it waits.
- `httpx_relay`: the pattern as usually written, one shared `httpx.AsyncClient` (httpx 0.28,
  default transport) opened in the lifespan, given the same pool size as the service so the
  comparison is about the transport, not the pool. `/whole/...` reads the response and returns
  it; `/chunks/...` streams it back with `StreamingResponse`.

Both read the upstream's base URL (ending in `/`) from `BENCH_UPSTREAM_URL`.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import httpx
import requests
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

UPSTREAM_URL = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:9000/")
MAX_CONNECTIONS = int(os.environ.get("BENCH_MAX_CONNECTIONS", "100"))

requests_relay = FastAPI()


@requests_relay.get("/whole/{path:path}")
async def requests_whole(path: str) -> Response:
    # Blocks the event loop until the upstream answers: exactly what the benchmark shows.
    upstream = requests.get(UPSTREAM_URL + path, timeout=30)  # noqa: ASYNC210
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type"),
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
    upstream = await client.get(path)
    return Response(
        upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type"),
    )


@httpx_relay.get("/chunks/{path:path}")
async def httpx_chunks(path: str, request: Request) -> StreamingResponse:
    client: httpx.AsyncClient = request.state.client
    upstream = await client.send(client.build_request("GET", path), stream=True)
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type"),
        background=BackgroundTask(upstream.aclose),
    )
