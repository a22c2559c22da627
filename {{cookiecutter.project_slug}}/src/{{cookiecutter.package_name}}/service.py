"""The ASGI app the server runs: each request's common work, in one place, then its endpoint.

For every request, here and nowhere else: its id (the caller's `X-Request-ID` if tame), returned
in `X-Request-ID`; the header size limit (431); the caller's key when `SERVICE_API_KEYS` is set
(401); one access log line{{ "; its metrics" if cookiecutter.metrics }}{{ "; its server span" if cookiecutter.tracing }}.
{%- if cookiecutter.response_mode == "both" %}
Then a request under a relay prefix goes straight to its relay endpoint (`routes/stream.py`,
`routes/buffered.py`), and every other request to the FastAPI app: the probes, the API docs{{ "," if cookiecutter.metrics }}
{%- else %}
Then a request under the relay prefix goes straight to the relay endpoint
(`routes/{{ cookiecutter.response_mode }}.py`), and every other request to the FastAPI app: the probes, the API docs{{ "," if cookiecutter.metrics }}
{%- endif %}
{{ "the metrics " if cookiecutter.metrics }}and endpoints of your own.

The relays skip FastAPI's routing and middleware on purpose: for a small relayed request they
cost more than the relay's own work. Middleware you add to the FastAPI app so applies to your
endpoints only; work every request needs belongs in `Service.__call__`.
"""

import time
from collections.abc import Awaitable, Callable
from itertools import chain

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from {{ cookiecutter.package_name }}.auth import admits, needs_key
from {{ cookiecutter.package_name }}.errors import ANSWERED, error_response, json_error
{%- if cookiecutter.metrics %}
from {{ cookiecutter.package_name }}.metrics import Metrics
{%- endif %}
from {{ cookiecutter.package_name }}.observability import (
    log_access,
    log_session,
    request_id_of,
    request_id_var,
)
from {{ cookiecutter.package_name }}.relay import Incoming
{%- set modules = {"both": "buffered, stream", "stream": "stream", "buffered": "buffered"} %}
from {{ cookiecutter.package_name }}.routes import {{ modules[cookiecutter.response_mode] }}
from {{ cookiecutter.package_name }}.routes.websocket import websocket
from {{ cookiecutter.package_name }}.settings import Settings
{%- if cookiecutter.tracing %}
from {{ cookiecutter.package_name }}.tracing import Tracing, end_server_span
{%- endif %}
from {{ cookiecutter.package_name }}.upstream import Upstream
from {{ cookiecutter.package_name }}.websocket import Session

# A relay endpoint: it sends the response itself, or raises one of `errors.ANSWERED`.
RelayEndpoint = Callable[[Upstream, Settings, Incoming, Send], Awaitable[None]]
# The relay endpoints, by the prefix they answer under.
RELAYS: dict[str, RelayEndpoint] = {
{%- if cookiecutter.response_mode != "buffered" %}
    "/stream/": stream.stream,
{%- endif %}
{%- if cookiecutter.response_mode != "stream" %}
    "/buffered/": buffered.buffered,
{%- endif %}
}


class Outcome:
    """The server's `send` for one request: it adds `X-Request-ID` to the response and notes its
    status and size, for the request's log line{{ ", metrics" if cookiecutter.metrics }}{{ " and span" if cookiecutter.tracing }}.

    For a WebSocket handshake, the response is its refusal or its acceptance (101), and a
    relayed session notes what it relayed in `session`.
    """

    __slots__ = ("id_header", "request_id", "route", "send", "sent", "session", "status")

    def __init__(self, send: Send, request_id: str) -> None:
        self.send = send
        self.request_id = request_id
        self.id_header = (b"x-request-id", request_id.encode("latin-1"))
        self.route = ""  # the template of the route that answered: `/items/{item_id}`
        self.status = 0  # 0 until the response starts
        self.sent = 0  # body bytes sent
        self.session: Session | None = None

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind in ("http.response.start", "websocket.http.response.start"):
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), self.id_header]
        elif kind in ("http.response.body", "websocket.http.response.body"):
            self.sent += len(message.get("body", b""))
        elif kind == "websocket.accept":
            self.status = 101
            message["headers"] = [*message.get("headers", ()), self.id_header]
        elif kind == "websocket.close" and not self.status:
            self.status = 403  # a handshake closed before it was accepted: the server says 403
        await self.send(message)


class Service:
    """The relay endpoints, in front of the FastAPI app that serves everything else."""

    def __init__(
        self,
        api: FastAPI,
        upstream: Upstream,
        settings: Settings,
{%- if cookiecutter.metrics %}
        metrics: Metrics,
{%- endif %}
{%- if cookiecutter.tracing %}
        tracing: Tracing,
{%- endif %}
    ) -> None:
        self.api = api
        self.upstream = upstream
        self.settings = settings
{%- if cookiecutter.metrics %}
        self.metrics = metrics
{%- endif %}
{%- if cookiecutter.tracing %}
        self.tracing = tracing
{%- endif %}
        self.keys = settings.caller_keys()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.api(scope, receive, send)  # the lifespan
            return
        started = time.perf_counter()
        outcome = Outcome(send, request_id_of(scope["headers"]))
        token = request_id_var.set(outcome.request_id)
{%- if cookiecutter.tracing %}
        try:
            with self.tracing.server_span(scope) as span:
                try:
                    await self.dispatch(scope, receive, outcome)
                finally:
                    self.finish(scope, outcome, time.perf_counter() - started)
                    method = scope.get("method", "GET")  # a WebSocket handshake is a GET
                    end_server_span(span, method, outcome.route, outcome.status or 500)
        finally:
            request_id_var.reset(token)
{%- else %}
        try:
            await self.dispatch(scope, receive, outcome)
        finally:
            self.finish(scope, outcome, time.perf_counter() - started)
            request_id_var.reset(token)
{%- endif %}

    def finish(self, scope: Scope, outcome: Outcome, seconds: float) -> None:
        """The request's access line{{ " and metrics" if cookiecutter.metrics }}, once it is answered."""
        # No response started: the server answers 500 for the error on its way out.
        status = outcome.status or 500
        session = outcome.session
        if session is not None and session.ending is not None:
            log_session(scope["path"], seconds, session)
        else:
            method = scope.get("method", "GET")  # a WebSocket handshake is a GET
            log_access(method, scope["path"], status, outcome.sent, seconds)
{%- if cookiecutter.metrics %}
        if scope["type"] == "websocket":
            self.metrics.observe_session(status, session)
        else:
            self.metrics.observe_request(scope, outcome.route, status, seconds)
{%- endif %}

    async def dispatch(self, scope: Scope, receive: Receive, send: Outcome) -> None:
        """Refuse the request, relay it, or hand it to the FastAPI app."""
        refusal = self.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        path: str = scope["path"]
        prefix = path[: path.find("/", 1) + 1]
        relay = RELAYS.get(prefix)
        if relay is None:
            await self.api(scope, receive, send)
            route = scope.get("route")
            send.route = route.path_format if route is not None else ""
            return
        send.route = prefix + "{path}"
        request = Incoming(scope, receive, send.request_id, prefix.encode("ascii"))
        try:
            if scope["type"] == "websocket":
                send.session = Session()
{%- if cookiecutter.metrics %}
                self.metrics.sessions.add(send.session)
{%- endif %}
                await websocket(self.upstream, self.settings, request, send, send.session)
            else:
                await relay(self.upstream, self.settings, request, send)
        except ANSWERED as exc:
            if send.status:
                raise  # the response has started: the server breaks the connection off
            await error_response(exc)(scope, receive, send)

    def refusal(self, scope: Scope) -> Response | None:
        """The answer to a request refused before any work is done for it, if it is."""
        headers = scope["headers"]
        limit = self.settings.max_header_bytes
        # uvicorn's httptools parser accepts headers of any size; the relay would hold them.
        # (Each line: name and value, plus ": " and CRLF.)
        if sum(map(len, chain.from_iterable(headers))) + 4 * len(headers) > limit:
            detail = f"the request headers are larger than the limit of {limit} bytes"
            return json_error(431, detail)
        if self.keys and needs_key(scope["path"]) and not admits(headers, self.keys):
            detail = "a valid API key is required: send Authorization: Bearer <key>"
            return json_error(401, detail, {"WWW-Authenticate": "Bearer"})
        return None
