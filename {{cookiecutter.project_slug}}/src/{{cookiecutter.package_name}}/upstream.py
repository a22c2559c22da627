"""The one shared upstream client: opened at start-up, used by every request, closed at shutdown.

A client per request would open a new connection pool each time; one shared client reuses
pooled connections, which is what keeps the service fast and stable under concurrent load.
"""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Annotated, TypedDict

{{ cookiecutter.__httpx_import }}
from fastapi import Depends, FastAPI, Request

from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.transport import UpstreamTransport

logger = logging.getLogger(__name__)

# Wraps the pool's transport, to measure or trace each upstream call.
Instrument = Callable[[UpstreamTransport], httpx.AsyncBaseTransport]


class State(TypedDict):
    """What the lifespan hands to every request (as `request.state`)."""

    upstream: httpx.AsyncClient
    settings: Settings


def build_client(settings: Settings, instrument: Instrument | None = None) -> httpx.AsyncClient:
    """The client with the pool limits and timeouts from the settings."""
    timeout = httpx.Timeout(
        settings.upstream_timeout,
        connect=settings.upstream_connect_timeout,
        pool=settings.upstream_pool_timeout,
    )
    limits = httpx.Limits(
        max_connections=settings.upstream_max_connections,
        max_keepalive_connections=settings.upstream_max_keepalive_connections,
        keepalive_expiry=settings.upstream_keepalive_expiry,
    )
    # A custom transport ignores `limits=` on the client: it takes them itself.
    pool = UpstreamTransport(limits, settings.max_header_bytes, http2=settings.upstream_http2)
    return httpx.AsyncClient(
        base_url=settings.upstream_base_url,
        timeout=timeout,
        transport=instrument(pool) if instrument else pool,
        # The relay forwards redirects to the caller rather than following them itself.
        follow_redirects=False,
        # One client serves every caller: it must never keep a cookie from one for another.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


def lifespan_for(
    settings: Settings, instrument: Instrument | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[State]]:
    """A lifespan that opens the shared client before the first request and closes it last."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with build_client(settings, instrument) as client:
            logger.info("upstream client open for %s", settings.upstream_base_url)
            yield {"upstream": client, "settings": settings}
        logger.info("upstream client closed")

    return lifespan


# Both are `async def` though they never wait: FastAPI runs a plain `def` dependency in a
# worker thread, a hop that costs every request more than the lookup itself.
async def get_upstream(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient = request.state.upstream
    return client


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


# Declare a parameter with these types to get the shared client or the settings in an endpoint.
Upstream = Annotated[httpx.AsyncClient, Depends(get_upstream)]
AppSettings = Annotated[Settings, Depends(get_settings)]
