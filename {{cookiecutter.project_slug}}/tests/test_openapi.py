"""`/openapi.json`, `/docs` and `/redoc` describe every endpoint, the relay endpoints included,
and the pages need nothing but the service."""

from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

{{ cookiecutter.__httpx_import }}
import pytest

from tests.conftest import RELAY_PREFIXES


def schema(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_relay_endpoints_are_described_with_their_errors(client: httpx.Client) -> None:
    paths = schema(client)["paths"]
    for prefix in RELAY_PREFIXES:
        relay = paths[prefix + "/{path}"]
        assert set(relay) == {"get", "head", "post", "put", "patch", "delete", "options"}
        operation = relay["post"]
        assert [p["name"] for p in operation["parameters"] if p["in"] == "path"] == ["path"]
        error = operation["responses"]["502"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorDetail"}
        assert "default" in operation["responses"]


def test_the_typed_example_is_described_with_its_model(client: httpx.Client) -> None:
    document = schema(client)
    operation = document["paths"]["/items/{item_id}"]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Item"}
    assert set(document["components"]["schemas"]["Item"]["properties"]) == {"id", "name"}
    assert document["components"]["schemas"]["ErrorDetail"]["required"] == ["detail"]


class Page(HTMLParser):
    """The URLs an HTML page loads, and whether it has a script of its own inline."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_script = False
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ["src", "href", "spec-url", "data-openapi-url"]:
            if found.get(name):
                self.urls.append(str(found[name]))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        self.inline_script |= self._in_script and bool(data.strip())


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_everything_from_the_service_even_under_a_prefix(
    client: httpx.Client, page: str
) -> None:
    response = client.get(page)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    parsed = Page(response.text)
    assert not parsed.inline_script
    assert "openapi.json" in parsed.urls
    # Served as /relay/... by a proxy that strips the prefix: each URL the page loads, read in
    # the browser's way, is under the prefix, and the service answers it once stripped.
    for url in parsed.urls:
        seen = urlsplit(urljoin(f"https://proxy.example/relay{page}", url))
        assert seen.netloc == "proxy.example", url
        assert seen.path.startswith("/relay/"), url
        assert client.get(seen.path.removeprefix("/relay")).status_code == 200, url
