"""Request ids and logs: one line per request, the request id{{ " and trace id" if cookiecutter.tracing }} on every line.

`service.py` gives each request its id and writes its access line with these.
"""

import json
import logging
import random
import re
import sys
from contextvars import ContextVar
from typing import TextIO

{% if cookiecutter.tracing -%}
from opentelemetry import trace

{% endif -%}
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.websocket import Session

logger = logging.getLogger("{{ cookiecutter.package_name }}.access")
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# An incoming X-Request-ID is kept only if it is this tame; anything else could forge log lines.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_ACCESS_FIELDS = ("method", "path", "status", "bytes", "duration_ms")
_SESSION_FIELDS = (
    "from_caller",
    "from_caller_bytes",
    "from_upstream",
    "from_upstream_bytes",
    "close_code",
    "closed_by",
)


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
        for key in (*_ACCESS_FIELDS, *_SESSION_FIELDS):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
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


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID if it is tame, else a new random one."""
    for name, value in headers:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    # An id, not a secret: Python's own generator, not the system's, which costs a system call.
    return f"{random.getrandbits(128):032x}"


def log_access(method: str, path: str, status: int, sent: int, seconds: float) -> None:
    """The request's one access line: method, path, status, body bytes sent, duration."""
    if not logger.isEnabledFor(logging.INFO):
        return
    fields = {
        "method": method,
        "path": _escaped(path),
        "status": status,
        "bytes": sent,
        "duration_ms": round(seconds * 1000, 1),
    }
    logger.info("%(method)s %(path)s %(status)s %(bytes)sB %(duration_ms)sms", fields, extra=fields)


def log_session(path: str, seconds: float, session: Session) -> None:
    """A relayed WebSocket session's one line, when it ends: its handshake's, as a request's
    access line, with the messages and bytes relayed each way, the close code and the side
    that closed."""
    if not logger.isEnabledFor(logging.INFO) or session.ending is None:
        return
    traffic, ending = session.traffic, session.ending
    fields = {
        "method": "GET",
        "path": _escaped(path),
        "status": 101,
        "duration_ms": round(seconds * 1000, 1),
        "from_caller": traffic.from_caller,
        "from_caller_bytes": traffic.from_caller_bytes,
        "from_upstream": traffic.from_upstream,
        "from_upstream_bytes": traffic.from_upstream_bytes,
        "close_code": ending.code,
        "closed_by": ending.by,
    }
    logger.info(
        "%(method)s %(path)s %(status)s %(duration_ms)sms: %(from_caller)s messages "
        "(%(from_caller_bytes)sB) from the caller, %(from_upstream)s "
        "(%(from_upstream_bytes)sB) from the upstream, closed %(close_code)s by %(closed_by)s",
        fields,
        extra=fields,
    )


def _escaped(path: str) -> str:
    """`path` as it may go in a log line: a decoded path may hold CR or LF, which would forge
    lines."""
    return path.encode("unicode_escape").decode("ascii")
