"""`/openapi.json` and `/docs` describe every endpoint, the relay endpoints included."""

from typing import Any

{{ cookiecutter.__httpx_import }}

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


def test_docs_page_is_served(client: httpx.Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "/openapi.json" in response.text
