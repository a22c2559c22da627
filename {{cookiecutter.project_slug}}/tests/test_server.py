"""One way to start: `{{ cookiecutter.project_slug }}` serves with every guarantee, and the other common
ways refuse with one line that says how to start it.

The shared `service` fixture is started by that command, as the image starts it.
"""

import json
import subprocess
import sys

import pytest

from tests.servers import Service, free_port
from tests.wire import key, send

# Each test starts processes or reads the service's log.
pytestmark = pytest.mark.slow


def echoed_headers(response_body: bytes) -> dict[str, list[str]]:
    """The headers the test upstream's echo route received, by lower-case name."""
    seen: dict[str, list[str]] = {}
    for name, value in json.loads(response_body)["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


def test_each_request_is_logged_once(service: Service, prefix: str) -> None:
    name = key()
    mark = service.log_mark()
    response = send(service.url, f"{prefix}/echo/{name}")
    assert response.status == 200, response.raw
    assert service.log_lines_with(f"GET {prefix}/echo/{name} 200", since=mark)
    lines = [line for line in service.log(since=mark).splitlines() if name in line]
    assert len(lines) == 1, lines


def test_a_local_callers_forwarded_for_is_not_believed(service: Service, prefix: str) -> None:
    response = send(
        service.url,
        f"{prefix}/echo/{key()}",
        b"X-Forwarded-For: 203.0.113.9",
        b"X-Forwarded-Proto: https",
    )
    seen = echoed_headers(response.body)
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]


def test_trailers_of_a_chunked_request_never_become_headers(service: Service, prefix: str) -> None:
    chunks = b"5\r\nhello\r\n0\r\nX-From-Trailer: t1\r\n\r\n"
    response = send(service.url, f"{prefix}/echo/{key()}", method="POST", chunks=chunks)
    assert response.status == 200, response.raw
    assert json.loads(response.body)["body"] == "hello"
    assert "x-from-trailer" not in echoed_headers(response.body)


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "uvicorn", "{{ cookiecutter.package_name }}.main:app"],
        [sys.executable, "-c", "import {{ cookiecutter.package_name }}.main"],
    ],
    ids=["uvicorn", "import"],
)
def test_other_ways_to_start_refuse_with_one_line_saying_how(command: list[str]) -> None:
    result = subprocess.run(
        [*command, *(["--port", str(free_port())] if "uvicorn" in command else [])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("Start the service with `{{ cookiecutter.project_slug }}`"), result.stderr
    assert "Traceback" not in result.stderr


def test_python_m_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: {{ cookiecutter.project_slug }} [-h] [--reload]")
