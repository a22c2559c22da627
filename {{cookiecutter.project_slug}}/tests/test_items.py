"""The typed example endpoint, `GET /items/{item_id}`: what callers get for each upstream answer.

The pattern to copy for endpoints of your own: the service and the upstream both run in
process, and the shared client is swapped for one that reaches the upstream app directly
(`app.api.dependency_overrides[get_upstream]`), so no socket or server is needed. The last test runs
the endpoint once for real, on 127.0.0.1, without any override.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

{{ cookiecutter.__httpx_import }}
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.upstream import get_settings, get_upstream

from tests.servers import relay_settings, serve, serve_relay

# What the upstream answers for each item id: (status, JSON body).
ANSWERS = {
    1: (200, b'{"id": 1, "name": "first", "colour": "red"}'),
    2: (200, b'{"id": 2}'),
    3: (200, b"<html>not JSON</html>"),
    4: (404, b'{"detail": "no such item"}'),
    5: (500, b'{"detail": "upstream bug"}'),
    6: (301, b""),
    7: (401, b'{"detail": "who are you?"}'),
}


async def items(request: Request) -> Response:
    """The upstream's `/api/items/{id}`; it keeps the headers it was sent, for the tests."""
    request.app.state.headers = request.headers
    status, body = ANSWERS[request.path_params["item_id"]]
    return Response(body, status_code=status, media_type="application/json")


def items_upstream() -> Starlette:
    return Starlette(routes=[Route("/api/items/{item_id:int}", items)])


@asynccontextmanager
async def in_process(settings: Settings, upstream_app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """A caller of the service, both in process, with the service's upstream client swapped for
    one that calls `upstream_app` directly."""
    app = create_app(settings)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=upstream_app), base_url=settings.upstream_base_url
    )
    # The FastAPI app, which serves endpoints of your own, is `app.api`.
    app.api.dependency_overrides[get_upstream] = lambda: client
    app.api.dependency_overrides[get_settings] = lambda: settings
    caller = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")
    async with client, caller:
        yield caller


@pytest.fixture
async def caller(anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(relay_settings("http://upstream"), items_upstream()) as caller:
        yield caller


@pytest.mark.anyio
async def test_an_item_comes_back_as_declared(caller: httpx.AsyncClient) -> None:
    response = await caller.get("/items/1")
    assert response.status_code == 200
    # Fields the upstream adds ("colour") are not part of the promise.
    assert response.json() == {"id": 1, "name": "first"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("item_id", "status", "detail"),
    [
        (4, 404, "not found upstream"),
        (5, 502, "the upstream answered 500"),
        (6, 502, "the upstream answered 301"),
        (7, 502, "the upstream answered 401"),
        (2, 502, "the upstream's answer is not a valid item"),
        (3, 502, "the upstream's answer is not a valid item"),
    ],
    ids=["404", "500", "redirect", "401", "missing-field", "not-json"],
)
async def test_an_upstream_that_has_no_valid_item_is_a_json_error(
    caller: httpx.AsyncClient, item_id: int, status: int, detail: str
) -> None:
    response = await caller.get(f"/items/{item_id}")
    assert response.status_code == status
    assert response.json() == {"detail": detail}


@pytest.mark.anyio
async def test_an_id_that_is_not_a_number_is_422(caller: httpx.AsyncClient) -> None:
    response = await caller.get("/items/first")
    assert response.status_code == 422
    assert response.json()["detail"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("header", "sent"),
    [("Authorization", "Bearer up-secret"), ("X-Api-Key", "up-secret")],
    ids=["bearer", "own-header"],
)
async def test_the_upstream_credential_goes_with_the_request_and_the_callers_key_does_not(
    anyio_backend: str, header: str, sent: str
) -> None:
    upstream = items_upstream()
    settings = relay_settings(
        "http://upstream",
        upstream_api_key="up-secret",
        upstream_api_key_header=header,
        service_api_keys="caller-key",
    )
    async with in_process(settings, upstream) as caller:
        response = await caller.get("/items/1", headers={"Authorization": "Bearer caller-key"})
    assert response.status_code == 200
    assert upstream.state.headers.getlist(header) == [sent]
    assert "caller-key" not in str(upstream.state.headers.raw)


def test_the_endpoint_works_on_a_real_server_with_the_shared_client() -> None:
    with serve(items_upstream()) as upstream, serve_relay(relay_settings(upstream)) as url:
        response = httpx.get(f"{url}/items/1")
    assert response.status_code == 200
    assert response.json() == {"id": 1, "name": "first"}
