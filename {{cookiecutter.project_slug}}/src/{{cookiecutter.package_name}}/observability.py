"""Request ids and logs: one line per request, the request id{{ " and trace id" if cookiecutter.tracing }} on every line.

The middleware is plain ASGI rather than `BaseHTTPMiddleware`, so it neither buffers nor delays
streamed bodies.
"""

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from typing import TextIO

{% if cookiecutter.tracing -%}
from opentelemetry import trace
{% endif -%}
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from {{ cookiecutter.package_name }}.settings import Settings

logger = logging.getLogger("{{ cookiecutter.package_name }}.access")
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# An incoming X-Request-ID is kept only if it is this tame; anything else could forge log lines.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_ACCESS_FIELDS = ("method", "path", "status", "bytes", "duration_ms")


class RequestIdFilter(logging.Filter):
    """Put the current request id{{ " and trace id" if cookiecutter.tracing }} on every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
{%- if cookiecutter.tracing %}
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else "-"
{%- endif %}
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the access fields when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
{%- if cookiecutter.tracing %}
            "trace_id": getattr(record, "trace_id", "-"),
{%- endif %}
            "request_id": getattr(record, "request_id", "-"),
        }
        entry.update({key: getattr(record, key) for key in _ACCESS_FIELDS if hasattr(record, key)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes each record to `sys.stderr` as it is when the record comes, not at start-up.

    Test runners swap `sys.stderr` for each test; a handler holding the first one would write
    to a closed file once that test is over.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(settings: Settings) -> None:
    """Send the service's logs to stderr, in the level and format the settings ask for."""
    handler = StderrHandler()
    handler.addFilter(RequestIdFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
{%- if cookiecutter.tracing %}
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(trace_id)s] %(message)s"
            )
{%- else %}
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
{%- endif %}
        )
    package_logger = logging.getLogger("{{ cookiecutter.package_name }}")
    package_logger.handlers = [handler]
    package_logger.setLevel(settings.log_level)
    package_logger.propagate = False


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.fullmatch(candidate) else None
    return None


class RequestLogMiddleware:
    """Give each request an id (the caller's X-Request-ID if sane), return it, log the outcome."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        status = 0
        sent = 0
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            fields = {
                "method": scope["method"],
                # Escaped: a decoded path may hold CR or LF, which would forge log lines.
                "path": scope["path"].encode("unicode_escape").decode("ascii"),
                "status": status,
                "bytes": sent,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            }
            logger.info(
                "%(method)s %(path)s %(status)s %(bytes)sB %(duration_ms)sms", fields, extra=fields
            )
            request_id_var.reset(token)
