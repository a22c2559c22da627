"""Buffered relay, `/buffered/...`: the whole upstream response is read, then returned at once.

Both bodies are held in memory, each up to `BUFFERED_MAX_BYTES`, and the whole upstream exchange
must end within `UPSTREAM_TIMEOUT`.
"""

from starlette.types import Send

from {{ cookiecutter.package_name }}.headers import BODILESS_STATUSES
from {{ cookiecutter.package_name }}.relay import Incoming, open_exchange
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.upstream import Upstream


async def buffered(upstream: Upstream, settings: Settings, request: Incoming, send: Send) -> None:
    """Relay the request upstream, read the whole response, and return it as it came."""
    exchange = await open_exchange(upstream, settings, request, hold=settings.buffered_max_bytes)
    status, headers, content = exchange.response.status, exchange.headers, exchange.content or b""
    if request.scope["method"] != "HEAD" and status not in BODILESS_STATUSES:
        # The body may have come chunked: say its length, as read.
        headers = [(name, value) for name, value in headers if name.lower() != b"content-length"]
        headers.append((b"content-length", b"%d" % len(content)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
