"""What the relay endpoints share: the methods they carry and how a request is sent upstream.

The relay endpoints are plain routes (`router.add_route`) that read the shared client and the
settings from `request.state`. They take the request as it comes, so FastAPI's parameter and
dependency handling would do nothing for them but cost about a quarter of a small relayed
request. Endpoints of your own declare `Upstream` and `AppSettings` parameters as usual.
"""

from collections.abc import AsyncIterable

import {{ cookiecutter.httpx_package }}
from fastapi import Request

from {{ cookiecutter.package_name }}.headers import upstream_request_headers
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.urls import upstream_url

RELAY_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def has_body(request: Request) -> bool:
    """Whether the caller sent a body (a GET without one must not go upstream chunked)."""
    return (
        request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    )


def build_upstream_request(
    client: {{ cookiecutter.httpx_package }}.AsyncClient,
    request: Request,
    settings: Settings,
    content: bytes | AsyncIterable[bytes] | None,
) -> {{ cookiecutter.httpx_package }}.Request:
    """The caller's request, addressed to the upstream, with the relay's headers."""
    path = request.path_params["path"]
    url = upstream_url(client.base_url, path, request.scope["query_string"])
    headers = upstream_request_headers(
        request, request.state.request_id, forwarded=settings.forwarded_headers
    )
    return client.build_request(request.method, url, headers=headers, content=content)
