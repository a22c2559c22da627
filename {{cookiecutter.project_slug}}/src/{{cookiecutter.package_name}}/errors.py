"""Every failure a request can meet, and the JSON error a caller gets for it.

The relay (through `service.py`) and endpoints of your own (through FastAPI's exception handlers)
answer failures here, and only here: `error_response` is the one way an error body is made.
Every failure the upstream or the caller can cause becomes a response rather than a 500: after
an unhandled error the server drops the keep-alive connection without telling the caller. What
the client package raises otherwise (`StreamError`, `CookieConflict`) is a bug in the code that
called it, and stays a 500 with its traceback logged.
"""

import logging
from typing import Any

{{ cookiecutter.__httpx_import }}
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

logger = logging.getLogger(__name__)

# Seconds a caller is asked to wait before retrying when every pooled connection is busy.
RETRY_AFTER_SECONDS = 1


class Refused(ValueError):
    """The caller's request cannot be relayed: answered with `status_code` and `headers`."""

    status_code = 400

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.headers = headers


class InvalidTarget(Refused):
    """The caller's path or query could reach outside the upstream base URL."""


class UpgradeRefused(Refused):
    """The caller asked to switch protocols: the relay carries HTTP requests, not tunnels."""

    def __init__(self) -> None:
        # The server stopped reading this connection at the upgrade: it cannot carry another.
        detail = "the relay does not switch protocols: send a plain HTTP request"
        super().__init__(detail, {"Connection": "close"})


class MethodNotAllowed(Refused):
    """The relay does not carry this method."""

    status_code = 405

    def __init__(self, method: str, allowed: list[str]) -> None:
        detail = f"the relay does not carry {method} requests"
        super().__init__(detail, {"Allow": ", ".join(allowed)})


class BodyTooLarge(Refused):
    """The caller's body is larger than the relay may hold in memory."""

    status_code = 413


class CallerTooSlow(Exception):
    """The caller's body paused longer than `CLIENT_BODY_TIMEOUT`, or took longer than
    `CLIENT_BODY_DEADLINE` in all."""


class CircuitOpen(httpx.TransportError):
    """The upstream has been failing: calls are refused, without trying, for `retry_after`
    seconds more (see `breaker.py`)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("the upstream is failing: calls to it are paused")
        self.retry_after = retry_after


class InvalidUpstreamResponse(httpx.RemoteProtocolError):
    """The upstream's answer cannot be relayed as it is (its status, or its size)."""


class MalformedResponse(httpx.RemoteProtocolError):
    """The upstream's response is not HTTP/1.1 that every parser reads the same way, or its head
    is larger than the relay accepts."""


class ErrorDetail(BaseModel):
    """The body of every error the service answers."""

    detail: str


# The errors an endpoint that calls the upstream can answer, for its OpenAPI description.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "The upstream has no such resource."},
    502: {"model": ErrorDetail, "description": "The upstream failed or answered wrongly."},
    503: {
        "model": ErrorDetail,
        "description": "No upstream connection is free, or the upstream is failing; retry.",
    },
    504: {"model": ErrorDetail, "description": "The upstream did not answer in time."},
}
# Failures that are answered here; anything else is a bug, and a 500.
ANSWERED: tuple[type[Exception], ...] = (
    httpx.RequestError,
    httpx.HTTPStatusError,
    httpx.InvalidURL,
    Refused,
    CallerTooSlow,
    ClientDisconnect,
)


def json_error(status_code: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    """An error response: `{"detail": ...}` with `status_code`."""
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


# What a caller gets for a failed upstream call, the first match in order: `PoolTimeout` is a
# `TimeoutException`, and what the relay sends comes from the caller, so a request that cannot
# be sent is the caller's (400).
_FAILURES: list[tuple[type[Exception], int, str]] = [
    (httpx.LocalProtocolError, 400, "the request cannot be relayed as it was sent"),
    (CircuitOpen, 503, "the upstream is failing; retry after the time given in Retry-After"),
    (httpx.PoolTimeout, 503, "no upstream connection is free; retry shortly"),
    (httpx.TimeoutException, 504, "the upstream did not answer in time"),
    (httpx.ConnectError, 502, "could not connect to the upstream"),
]


def upstream_failure(exc: Exception) -> tuple[int, str]:
    """The status code and message a caller gets for a failed upstream exchange."""
    if isinstance(exc, InvalidUpstreamResponse | MalformedResponse):
        return 502, str(exc)
    for kind, status_code, detail in _FAILURES:
        if isinstance(exc, kind):
            return status_code, detail
    return 502, "the upstream sent an invalid or incomplete response"


def upstream_status(status_code: int) -> Response:
    """An error status met by `raise_for_status()` in an endpoint: 404 stays 404, others are 502."""
    if status_code == 404:
        return json_error(404, "not found upstream")
    logger.warning("upstream answered %d", status_code)
    return json_error(502, f"the upstream answered {status_code}")


def cause(exc: BaseException | None, kind: type[Exception]) -> Exception | None:
    """The first exception of type `kind` among `exc` and its causes: what the failure began with.

    A failure of the caller's side (it left, or stalled) surfaces wrapped in the client's own
    exceptions when it happens while the body is streamed upstream.
    """
    while exc is not None:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def error_response(exc: Exception) -> Response:
    """The response for a failure in `ANSWERED`, logged as it deserves; re-raises anything else."""
    if cause(exc, ClientDisconnect):
        logger.info("the caller went away before sending its whole request body")
        # 499, as nginx logs it: client closed request. It is never delivered.
        return Response(status_code=499)
    if slow := cause(exc, CallerTooSlow):
        logger.info("caller too slow: %s", slow)
        # The rest of the body may still come: this connection cannot carry another request.
        return json_error(408, str(slow), {"Connection": "close"})
    if isinstance(exc, Refused):
        return json_error(exc.status_code, str(exc), exc.headers)
    if isinstance(exc, httpx.InvalidURL):
        return json_error(400, "the request cannot be sent upstream: its URL is invalid")
    if isinstance(exc, httpx.HTTPStatusError):
        return upstream_status(exc.response.status_code)
    if isinstance(exc, httpx.RequestError):
        status_code, detail = upstream_failure(exc)
        retry: dict[str, str] | None
        if isinstance(exc, CircuitOpen):
            # Not logged: the breaker logs once when it opens, and once when it closes.
            retry = {"Retry-After": str(exc.retry_after)}
        else:
            logger.warning("upstream failure: %s (%s: %s)", detail, type(exc).__name__, exc)
            retry = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status_code == 503 else None
        return json_error(status_code, detail, retry)
    raise exc


async def _handler(request: Request, exc: Exception) -> Response:
    return error_response(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Answer the failures of endpoints of your own as the relay answers its own."""
    for kind in ANSWERED:
        app.add_exception_handler(kind, _handler)
