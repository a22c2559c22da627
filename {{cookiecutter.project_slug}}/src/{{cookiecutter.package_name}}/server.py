"""The one way to start the service: `{{ cookiecutter.project_slug }}` (or `python -m {{ cookiecutter.package_name }}`).

It runs uvicorn as the service needs, from the settings (`server_options`):
- uvloop and httptools, with `HttpProtocol` below, which keeps a chunked request's trailer
  fields out of its headers (uvicorn alone adds them, and the relay would send them on);
- X-Forwarded-For and -Proto believed only from `FORWARDED_ALLOW_IPS`, none by default (uvicorn
  alone believes any process on the same host);
- no access log of uvicorn's: the service writes one line per request itself;
- `SHUTDOWN_TIMEOUT` seconds for requests in flight at SIGTERM (uvicorn alone waits forever),
  and exit status 0 after a clean shutdown;
- `HOST`, `PORT`, and `WEB_CONCURRENCY` worker processes.
Started as `uvicorn {{ cookiecutter.package_name }}.main:app` or with `fastapi run`, none of this would hold, so
`main.py` refuses to start.
"""

import argparse
import signal
from collections.abc import Sequence
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from {{ cookiecutter.package_name }}.settings import Settings, load_settings

APP_FACTORY = "{{ cookiecutter.package_name }}.app:create_app"


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, minus trailers posing as headers.

    httptools reports the trailer fields of a chunked request body through the same callback as
    the headers, and uvicorn appends them to the request's header list. This protocol gives the
    app the header list as it stood when the headers ended.
    """

    def on_headers_complete(self) -> None:
        # A copy for the app; trailer fields still go to the list this protocol appends to.
        self.scope["headers"] = list(self.headers)
        super().on_headers_complete()


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's configuration for the service: used here and by the tests that start it."""
    return {
        "loop": "uvloop",
        "http": HttpProtocol,
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": settings.forwarded_allow_ips or None,
        "access_log": False,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        # Callers' WebSockets: the maintained backend, with the relay's limits on that leg.
        "ws": "websockets-sansio",
        "ws_max_size": settings.websocket_max_message_bytes,
        "ws_ping_interval": settings.websocket_ping_interval,
        "ws_ping_timeout": settings.websocket_ping_timeout,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the service until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="{{ cookiecutter.project_slug }}",
        description="Serve {{ cookiecutter.project_name }}, configured by its environment (see README.md).",
    )
    parser.add_argument(
        "--reload", action="store_true", help="restart on code changes (for development)"
    )
    args = parser.parse_args(argv)
    settings = load_settings()  # stops here, one line per invalid setting, before any worker
    # uvicorn ends a clean shutdown by raising SIGTERM again: with this handler in place, the
    # process then exits 0 rather than as killed by the signal.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=None if args.reload else settings.web_concurrency,
        reload=args.reload,
        **server_options(settings),
    )
    return 0
