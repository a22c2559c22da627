"""The one shared upstream pool: made at start-up, used by every request, closed at shutdown.

A client per request would open a new connection pool each time; one shared pool reuses its
connections, which is what keeps the service fast and stable under concurrent load. The relay
sends through the pool itself; endpoints of your own get an `httpx.AsyncClient` over the same
pool, by declaring a parameter of type `UpstreamClient`.
"""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Annotated, TypedDict

{{ cookiecutter.__httpx_import }}
from fastapi import Depends, FastAPI, Request

from {{ cookiecutter.package_name }}.breaker import Breaker, BreakerPolicy
from {{ cookiecutter.package_name }}.pool import ClientTransport, Origin, Pool
from {{ cookiecutter.package_name }}.resilience import ResilientPool, Tally
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.transport import ConnectionPool

logger = logging.getLogger(__name__)

# Wraps the pool, to measure or trace each upstream call.
Instrument = Callable[[ConnectionPool], Pool]


class Upstream:
    """The upstream API: its address, the shared pool to it, and the httpx client over that pool.

    Made once, by `create_app`; the app's lifespan closes it.
    """

    def __init__(self, settings: Settings, instrument: Instrument | None = None) -> None:
        base_url = httpx.URL(settings.upstream_base_url)
        self.base_url = settings.upstream_base_url.encode()
        self.base_path = base_url.raw_path
        self.origin = Origin.of(base_url)
        self.host = base_url.netloc  # the `Host` header: the port only when not the default
        timeout = httpx.Timeout(
            settings.upstream_timeout,
            connect=settings.upstream_connect_timeout,
            pool=settings.upstream_pool_timeout,
        )
        self.timeouts = timeout.as_dict()
        # A held exchange has an overall deadline of UPSTREAM_TIMEOUT, which bounds every read
        # as the read timeout would: one timer per exchange rather than one per read.
        self.held_timeouts = {**self.timeouts, "read": None}
        limits = httpx.Limits(
            max_connections=settings.upstream_max_connections,
{%- if cookiecutter.http_transport == "native" %}
            max_keepalive_connections=settings.upstream_max_keepalive_connections,
{%- endif %}
            keepalive_expiry=settings.upstream_keepalive_expiry,
        )
{%- if cookiecutter.http_transport == "native" %}
        http2 = settings.upstream_http2
        connections = ConnectionPool(
            limits, settings.max_header_bytes, settings.websocket_max_sessions, http2=http2
        )
{%- else %}
        connections = ConnectionPool(
            limits, settings.max_header_bytes, settings.websocket_max_sessions
        )
{%- endif %}
        # Retries and the breaker outside the instruments: each attempt is measured and traced.
        self.breaker = Breaker(BreakerPolicy.of(settings))
        self.tally = Tally()
        pool = instrument(connections) if instrument else connections
        self.pool: Pool = ResilientPool(pool, settings, self.breaker, self.tally)
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            transport=ClientTransport(self.pool),
            # Endpoints get redirects as answers; the relay passes them on to the caller.
            follow_redirects=False,
            # One client serves every caller: it must never keep a cookie from one for another.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        )


class State(TypedDict):
    """What the lifespan hands to every request of the FastAPI app (as `request.state`)."""

    upstream: httpx.AsyncClient
    settings: Settings


def lifespan_for(
    upstream: Upstream, settings: Settings
) -> Callable[[FastAPI], AbstractAsyncContextManager[State]]:
    """A lifespan that hands out the shared client and closes it, and its pool, at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        async with upstream.client as client:
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
UpstreamClient = Annotated[httpx.AsyncClient, Depends(get_upstream)]
AppSettings = Annotated[Settings, Depends(get_settings)]
