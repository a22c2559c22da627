"""One log line per request, plain or JSON, with the request id{{ " and trace id" if cookiecutter.tracing }} on every line."""

import json
from collections.abc import Iterator
from typing import Any

{{ cookiecutter.__httpx_import }}
import pytest

from tests.servers import Service, run_service

# Each test reads the log of the service running in its own process, as in production.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def json_service(upstream: str) -> Iterator[Service]:
    with run_service(upstream, LOG_FORMAT="json", UPSTREAM_TIMEOUT="0.5") as service:
        yield service


def entries(service: Service, request_id: str) -> list[dict[str, Any]]:
    """The JSON log entries of one request."""
    return [json.loads(line) for line in service.log_lines_with(f'"request_id": "{request_id}"')]


def test_each_request_is_one_structured_line_with_its_id(
    json_service: Service, prefix: str
) -> None:
    response = httpx.get(f"{json_service.url}{prefix}/bytes/1000")
    (line,) = entries(json_service, response.headers["x-request-id"])
    assert line["method"] == "GET"
    assert line["path"] == f"{prefix}/bytes/1000"
    assert line["status"] == 200
    assert line["bytes"] == 1000
    assert line["duration_ms"] >= 0


def test_an_upstream_error_is_logged_once_with_its_cause(
    json_service: Service, prefix: str
) -> None:
    response = httpx.get(f"{json_service.url}{prefix}/slow?seconds=3", timeout=10)
    assert response.status_code == 504
    request_id = response.headers["x-request-id"]
    # The access line comes last, once the response is sent.
    assert json_service.log_lines_with(f'"request_id": "{request_id}", "method"')
    lines = entries(json_service, request_id)
    (warning,) = [entry for entry in lines if entry["level"] == "WARNING"]
    assert "Timeout" in warning["message"]
    assert [entry["status"] for entry in lines if "status" in entry] == [504]


# The shared service logs in plain text; other tests use it too, so each reads only its own part.
def test_plain_lines_carry_the_request_id(service: Service, prefix: str) -> None:
    mark = service.log_mark()
    response = httpx.get(
        f"{service.url}{prefix}/status/200", headers={"x-request-id": "trace-me-42"}
    )
    assert response.headers["x-request-id"] == "trace-me-42"
    (line,) = service.log_lines_with(f"GET {prefix}/status/200 200", since=mark)
{%- if cookiecutter.tracing %}
    # No trace id: this service exports no spans, so it makes none (test_tracing.py has one).
    assert "[trace-me-42 -] GET " in line, line
{%- else %}
    assert "[trace-me-42] GET " in line, line
{%- endif %}


def test_control_characters_in_a_path_cannot_forge_log_lines(service: Service, prefix: str) -> None:
    mark = service.log_mark()
    response = httpx.get(f"{service.url}{prefix}/a%0d%0aINFO%20forged")
    assert service.log_lines_with(response.headers["x-request-id"], since=mark)
    assert not any(line.startswith("INFO forged") for line in service.log(since=mark).splitlines())
