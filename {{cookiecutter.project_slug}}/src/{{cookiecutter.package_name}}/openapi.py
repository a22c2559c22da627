"""The API description (`/openapi.json`, `/docs`), with the relay endpoints in it.

The relay endpoints are not FastAPI routes (`service.py` answers them first), and FastAPI
describes only its own. This adds each relay endpoint it is given: its methods, its path
parameter, and the errors it can answer. The description is built once, at the first request
for it; relaying costs nothing more.
"""

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI

from {{ cookiecutter.package_name }}.errors import ErrorDetail
from {{ cookiecutter.package_name }}.relay import RELAY_METHODS

# The errors a relay endpoint can answer itself; any other status is the upstream's own.
RELAY_ERRORS = {
    "400": "The request cannot be relayed: a path outside the base path, or an upgrade.",
    "401": "An API key is required (when `SERVICE_API_KEYS` is set).",
    "408": "The request body stopped arriving, or took too long in all.",
    "413": "The request body is larger than the relay may hold in memory.",
    "431": "The request headers are too large.",
    "502": "The upstream failed or answered something that cannot be relayed.",
    "503": "No upstream connection is free, or the upstream is failing (the circuit breaker "
    "is open); retry after `Retry-After` seconds.",
    "504": "The upstream did not answer in time.",
}
# Any bytes, as OpenAPI says it, and the JSON errors the relay answers itself.
_BYTES_SCHEMA = {"type": "string", "format": "binary"}
_BYTES = {"schema": _BYTES_SCHEMA}
_ERROR = {
    "application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorDetail"},
    },
}


def relay_operation(endpoint: Callable[..., Any], path: str, method: str) -> dict[str, Any]:
    """One method of one relay endpoint, described."""
    responses: dict[str, Any] = {
        "default": {"description": "The upstream's response: status, headers and body as sent."}
    }
    for status, text in RELAY_ERRORS.items():
        responses[status] = {"description": text, "content": _ERROR}
    operation: dict[str, Any] = {
        "tags": ["relay"],
        "summary": f"Relay {method} {path}",
        "description": (endpoint.__doc__ or "").strip(),
        "operationId": f"{endpoint.__name__}_{method.lower()}",
        "parameters": [
            {
                "name": "path",
                "in": "path",
                "required": True,
                "description": "The path under `UPSTREAM_BASE_URL`, sent as it is; the query too.",
                "schema": {"type": "string"},
            }
        ],
        "responses": responses,
    }
    if method in {"POST", "PUT", "PATCH", "DELETE"}:
        operation["requestBody"] = {
            "required": False,
            "description": "Sent to the upstream as it is.",
            "content": {"*/*": _BYTES},
        }
    return operation


def describe(app: FastAPI, relays: Mapping[str, Callable[..., Any]]) -> dict[str, Any]:
    """FastAPI's description of the app, with each relay endpoint added under its prefix."""
    schema = app.openapi_schema
    if schema is None:
        schema = FastAPI.openapi(app)  # FastAPI's own; it keeps it in `app.openapi_schema`
        for prefix, endpoint in relays.items():
            path = prefix + "{path}"
            schema["paths"][path] = {
                method.lower(): relay_operation(endpoint, path, method)
                for method in sorted(RELAY_METHODS)
            }
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["ErrorDetail"] = ErrorDetail.model_json_schema()
    return schema


def install_openapi(app: FastAPI, relays: Mapping[str, Callable[..., Any]]) -> None:
    """Have `/openapi.json` and `/docs` describe the relay endpoints too."""
    app.openapi = lambda: describe(app, relays)  # type: ignore[method-assign]
