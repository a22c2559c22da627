"""Which headers cross the relay: end-to-end ones do, hop-by-hop ones never; the relay adds some."""

from typing import Any

{{ cookiecutter.__httpx_import }}
import pytest

from tests.conftest import StartRelay
from tests.servers import relay_settings, serve_relay


def seen_headers(response: httpx.Response) -> dict[str, list[str]]:
    """The headers the upstream echo saw, name to every value."""
    assert response.status_code == 200, response.text
    seen: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name, []).append(value)
    return seen


def test_hop_by_hop_request_headers_do_not_reach_the_upstream(
    client: httpx.Client, prefix: str
) -> None:
    response = client.get(
        f"{prefix}/echo/h",
        headers={
            "connection": "keep-alive, x-private",
            "x-private": "for this hop only",
            "keep-alive": "timeout=5",
            "te": "trailers",
            "proxy-authorization": "Basic c2VjcmV0",
            "x-end-to-end": "kept",
        },
    )
    seen = seen_headers(response)
    for name in ["x-private", "keep-alive", "te", "proxy-authorization"]:
        assert name not in seen
    assert seen["x-end-to-end"] == ["kept"]


def test_host_is_the_upstreams(client: httpx.Client, prefix: str, upstream: str) -> None:
    seen = seen_headers(client.get(f"{prefix}/echo/h", headers={"host": "attacker.example"}))
    assert seen["host"] == [upstream.removeprefix("http://")]


def test_forwarded_headers_describe_the_caller(
    client: httpx.Client, prefix: str, relay: str
) -> None:
    # The caller is not a trusted proxy: what it claims is dropped, the hop it came from is sent.
    claims = {"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}
    seen = seen_headers(client.get(f"{prefix}/echo/h", headers=claims))
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [relay.removeprefix("http://")]


def test_a_trusted_proxys_forwarded_headers_are_used(upstream: str, prefix: str) -> None:
    # uvicorn takes the caller's address and scheme from a proxy named in FORWARDED_ALLOW_IPS.
    settings = relay_settings(upstream, forwarded_allow_ips="127.0.0.1")
    with serve_relay(settings) as url:
        claims = {"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}
        seen = seen_headers(httpx.get(f"{url}{prefix}/echo/h", headers=claims))
    assert seen["x-forwarded-for"] == ["203.0.113.9"]
    assert seen["x-forwarded-proto"] == ["https"]


def test_forwarded_headers_can_be_turned_off(start_relay: StartRelay, prefix: str) -> None:
    with start_relay(forwarded_headers=False) as url:
        seen = seen_headers(httpx.get(f"{url}{prefix}/echo/h"))
    assert not {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"} & set(seen)


def test_request_id_is_generated_sent_upstream_and_returned(
    client: httpx.Client, prefix: str
) -> None:
    response = client.get(f"{prefix}/echo/h")
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    assert seen_headers(response)["x-request-id"] == [request_id]


@pytest.mark.parametrize(
    ("sent", "kept"), [("abc-123.DEF_4", True), ("bad id\twith tab", False), ("x" * 129, False)]
)
def test_callers_request_id_is_kept_only_if_sane(
    client: httpx.Client, prefix: str, sent: str, kept: bool
) -> None:
    response = client.get(f"{prefix}/echo/h", headers={"x-request-id": sent})
    assert (response.headers["x-request-id"] == sent) is kept
    assert seen_headers(response)["x-request-id"] == [response.headers["x-request-id"]]


def test_repeated_response_headers_arrive_separately(client: httpx.Client, prefix: str) -> None:
    response = client.get(f"{prefix}/cookies")
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert response.headers.get_list("vary") == ["Accept", "Origin"]
    assert "x-private" not in response.headers
    assert len(response.headers.get_list("date")) == 1
    assert len(response.headers.get_list("server")) == 1


def test_upstream_cookies_are_not_kept_for_later_callers(
    start_relay: StartRelay, upstream: str, prefix: str
) -> None:
    # The upstream by name: cookie jars ignore cookies set by a bare IP address.
    by_name = upstream.replace("127.0.0.1", "localhost") + "/api/"
    with start_relay(upstream_base_url=by_name) as url:
        assert httpx.get(f"{url}{prefix}/cookies").headers.get_list("set-cookie")
        seen = seen_headers(httpx.get(f"{url}{prefix}/echo/after"))
    assert "cookie" not in seen


def test_callers_cookie_header_is_forwarded(client: httpx.Client, prefix: str) -> None:
    seen: dict[str, Any] = seen_headers(client.get(f"{prefix}/echo/c", headers={"cookie": "s=1"}))
    assert seen["cookie"] == ["s=1"]
