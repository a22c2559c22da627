"""Malformed requests get a 4xx, never a 500 and never a hang."""

{{ cookiecutter.__httpx_import }}
import pytest

from tests.conftest import StartRelay
from tests.wire import exchange


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
    ],
    ids=["bad-method-token", "cr-in-header", "bad-content-length", "bad-version"],
)
def test_malformed_request_is_a_4xx(relay: str, request_bytes: bytes) -> None:
    assert 400 <= exchange(relay, request_bytes).status < 500


def test_unsupported_method_is_405_with_json_detail(client: httpx.Client, prefix: str) -> None:
    response = client.request("PROPFIND", f"{prefix}/echo/x")
    assert response.status_code == 405
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [{"x-big": "a" * 70_000}, {f"x-many-{number}": "v" for number in range(5000)}],
    ids=["one-huge-header", "many-headers"],
)
def test_oversized_headers_are_431_with_json_detail(
    client: httpx.Client, prefix: str, headers: dict[str, str]
) -> None:
    response = client.get(f"{prefix}/echo/x", headers=headers)
    assert response.status_code == 431
    assert "65536 bytes" in response.json()["detail"]


def test_header_limit_is_configurable(start_relay: StartRelay, prefix: str) -> None:
    with start_relay(max_header_bytes=2048) as url:
        assert (
            httpx.get(f"{url}{prefix}/status/200", headers={"x-a": "a" * 1000}).status_code == 200
        )
        assert (
            httpx.get(f"{url}{prefix}/status/200", headers={"x-a": "a" * 3000}).status_code == 431
        )
