"""What every relay endpoint does: methods, paths, queries, bodies and statuses pass through."""

import socket
from collections.abc import Iterator
from typing import Any

{{ cookiecutter.__httpx_import }}
import pytest

from {{ cookiecutter.package_name }}.relay import RELAY_METHODS

from tests.conftest import StartRelay
from tests.servers import collect_logs


def echo(client: httpx.Client, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    response = client.request(method, url, **kwargs)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("method", [m for m in RELAY_METHODS if m != "HEAD"])
def test_every_method_reaches_the_upstream(client: httpx.Client, prefix: str, method: str) -> None:
    seen = echo(client, method, f"{prefix}/echo/a/b")
    assert seen["method"] == method
    assert seen["raw_path"] == "/api/echo/a/b"


def test_head_returns_headers_without_a_body(client: httpx.Client, prefix: str) -> None:
    response = client.head(f"{prefix}/echo/x")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b""


def test_query_string_is_forwarded_as_sent(client: httpx.Client, prefix: str) -> None:
    seen = echo(client, "GET", f"{prefix}/echo/q?b=2&a=1&a=%20x&empty=")
    assert seen["query"] == "b=2&a=1&a=%20x&empty="


def test_request_body_reaches_the_upstream(client: httpx.Client, prefix: str) -> None:
    body = bytes(range(256)) * 4096
    seen = echo(client, "POST", f"{prefix}/echo/upload", content=body)
    assert seen["body"].encode("latin-1") == body


def test_chunked_request_body_reaches_the_upstream(client: httpx.Client, prefix: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"first,"
        yield b"second"

    seen = echo(client, "PUT", f"{prefix}/echo/chunked", content=chunks())
    assert seen["body"] == "first,second"


def test_get_without_body_is_not_sent_chunked(client: httpx.Client, prefix: str) -> None:
    seen = echo(client, "GET", f"{prefix}/echo/plain")
    names = {name for name, _ in seen["headers"]}
    assert "transfer-encoding" not in names
    assert seen["body"] == ""


@pytest.mark.parametrize("status", [201, 204, 301, 404, 418, 500, 503])
def test_upstream_status_passes_through_unchanged(
    client: httpx.Client, prefix: str, status: int
) -> None:
    response = client.get(f"{prefix}/status/{status}")
    assert response.status_code == status
    if status != 204:
        assert response.json() == {"status": "chosen"}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"b": 1,  "a": [1.50, "\\u00e9"]}'),
        ("text/plain; charset=utf-8", "h\u00e9llo\r\n".encode()),
        ("application/octet-stream", bytes(range(256))),
    ],
    ids=["json", "text", "binary"],
)
def test_bodies_come_back_byte_identical_with_their_content_type(
    client: httpx.Client, prefix: str, content_type: str, body: bytes
) -> None:
    response = client.get(f"{prefix}/raw", params={"hex": body.hex(), "type": content_type})
    assert response.content == body
    assert response.headers["content-type"] == content_type


def test_gzip_body_arrives_compressed_with_matching_headers(relay: str, prefix: str) -> None:
    with (
        httpx.Client(base_url=relay) as client,
        client.stream("GET", f"{prefix}/gzip", headers={"accept-encoding": "gzip"}) as response,
    ):
        raw = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "gzip"
        assert int(response.headers["content-length"]) == len(raw)
    with httpx.Client(base_url=relay) as client:
        assert client.get(f"{prefix}/gzip", headers={"accept-encoding": "gzip"}).json() == {
            "compressed": True
        }


def test_redirects_are_returned_not_followed(client: httpx.Client, prefix: str) -> None:
    response = client.get(f"{prefix}/status/302")
    assert response.status_code == 302


@pytest.mark.slow
def test_caller_leaving_mid_upload_is_not_an_error(start_relay: StartRelay, prefix: str) -> None:
    with start_relay() as relay, collect_logs() as log:
        host, port = relay.removeprefix("http://").split(":")
        # A thousand bytes of the million promised, then gone. Either relay finds out while
        # reading the body: the streaming one is then sending it upstream.
        with socket.create_connection((host, int(port))) as sock:
            head = f"POST {prefix}/sink HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n\r\n"
            sock.sendall(head.encode() + bytes(1000))
        assert log.wait_for("the caller went away"), log.text()
        assert httpx.get(f"{relay}/healthz").status_code == 200
    assert "Traceback" not in log.text()
    assert "upstream failure" not in log.text()
