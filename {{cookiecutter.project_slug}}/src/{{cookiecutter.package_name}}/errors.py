"""Failures of the upstream exchange, and the JSON errors callers get for them.

Every failure the upstream can cause becomes a response here rather than a 500: after an
unhandled error the server drops the keep-alive connection without telling the caller. What
the client package raises otherwise (`StreamError`, `CookieConflict`) is a bug in the code that
called it, and stays a 500 with its traceback logged.
"""

import logging
from typing import Any

{{ cookiecutter.__httpx_import }}
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from {{ cookiecutter.package_name }}.framing import MalformedResponse
from {{ cookiecutter.package_name }}.relay import CallerTooSlow, InvalidUpstreamResponse, UpgradeRefused
from {{ cookiecutter.package_name }}.urls import InvalidTarget

logger = logging.getLogger(__name__)

# Seconds a caller is asked to wait before retrying when every pooled connection is busy.
RETRY_AFTER_SECONDS = 1


class ErrorDetail(BaseModel):
    """The body of every error the service answers."""

    detail: str


# The errors an endpoint that calls the upstream can answer, for its OpenAPI description.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "The upstream has no such resource."},
    502: {"model": ErrorDetail, "description": "The upstream failed or answered wrongly."},
    503: {"model": ErrorDetail, "description": "No upstream connection is free; retry."},
    504: {"model": ErrorDetail, "description": "The upstream did not answer in time."},
}


def _error(status_code: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


def classify(exc: Exception) -> tuple[int, str]:
    """The status code and message a caller gets for a failed upstream exchange."""
    if isinstance(exc, httpx.LocalProtocolError):
        # What the relay sends comes from the caller: it is the caller's request that cannot go.
        return 400, "the request cannot be relayed as it was sent"
    if isinstance(exc, InvalidUpstreamResponse | MalformedResponse):
        return 502, str(exc)
    # PoolTimeout is a TimeoutException: it has to be tested first.
    if isinstance(exc, httpx.PoolTimeout):
        return 503, "no upstream connection is free; retry shortly"
    if isinstance(exc, httpx.TimeoutException):
        return 504, "the upstream did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return 502, "could not connect to the upstream"
    return 502, "the upstream sent an invalid or incomplete response"


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


async def upstream_error(request: Request, exc: Exception) -> Response:
    """Answer a failed upstream exchange with 502, 503 or 504."""
    if cause(exc, ClientDisconnect):
        return await client_gone(request, exc)
    if slow := cause(exc, CallerTooSlow):
        return await caller_too_slow(request, slow)
    status_code, detail = classify(exc)
    logger.warning("upstream failure: %s (%s: %s)", detail, type(exc).__name__, exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status_code == 503 else None
    return _error(status_code, detail, headers)


async def upstream_status(request: Request, exc: Exception) -> JSONResponse:
    """An upstream error status raised by `raise_for_status()`: 404 stays 404, others are 502."""
    status_code = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else 0
    if status_code == 404:
        return _error(404, "not found upstream")
    logger.warning("upstream answered %d", status_code)
    return _error(502, f"the upstream answered {status_code}")


async def invalid_url(request: Request, exc: Exception) -> JSONResponse:
    """A URL that cannot be sent upstream, built from what the caller sent."""
    return _error(400, "the request cannot be sent upstream: its URL is invalid")


async def invalid_target(request: Request, exc: Exception) -> JSONResponse:
    return _error(400, str(exc))


async def upgrade_refused(request: Request, exc: Exception) -> JSONResponse:
    # The server stopped reading this connection at the upgrade: it cannot carry another request.
    return _error(400, str(exc), {"Connection": "close"})


async def caller_too_slow(request: Request, exc: Exception) -> JSONResponse:
    logger.info("caller too slow: %s", exc)
    # The rest of the body may still come: this connection cannot carry another request.
    return _error(408, str(exc), {"Connection": "close"})


async def client_gone(request: Request, exc: Exception) -> Response:
    """The caller left while its body was still being read: nobody is there to answer."""
    logger.info("the caller went away before sending its whole request body")
    # 499, as nginx logs it: client closed request. It is never delivered.
    return Response(status_code=499)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on the app."""
    app.add_exception_handler(httpx.RequestError, upstream_error)
    app.add_exception_handler(httpx.HTTPStatusError, upstream_status)
    app.add_exception_handler(httpx.InvalidURL, invalid_url)
    app.add_exception_handler(InvalidTarget, invalid_target)
    app.add_exception_handler(UpgradeRefused, upgrade_refused)
    app.add_exception_handler(CallerTooSlow, caller_too_slow)
    app.add_exception_handler(ClientDisconnect, client_gone)
