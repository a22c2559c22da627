"""A rendered service in front of httpbin, an upstream no one here wrote: every exchange is made
directly and through both relay endpoints, as bytes on a socket (and with curl, where it is
installed), and what comes back is compared case by case. The relay may differ only where it
says it does: its own headers, the framing, and `Location` pointing at itself."""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.projects import (
    CHOICES,
    DEFAULTS,
    TEMPLATE,
    Answers,
    Bake,
    Project,
    combination_id,
    environment_key,
)
from tests.running import free_port

PREFIXES = ["/stream", "/buffered"]
# What the relay adds to a request, by design: dropped from httpbin's echo before comparing.
RELAY_ADDS = {"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id"}
# Headers of a response that describe the hop or the server, not the message.
PER_HOP = {b"date", b"server", b"connection", b"keep-alive", b"x-request-id"}
FRAMING = {b"content-length", b"transfer-encoding"}


def load_wire() -> ModuleType:
    """The generated projects' raw HTTP helpers (plain Python, no template syntax): one copy."""
    path = TEMPLATE / "{{cookiecutter.project_slug}}" / "tests" / "wire.py"
    spec = importlib.util.spec_from_file_location("wire", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wire = load_wire()

# (id, method, target, header lines, body). Chunked bodies are given framed, as bytes in `chunks`.
CASES: list[tuple[str, str, str, list[bytes], bytes]] = [
    ("get-query", "GET", "/anything/a%2Fb;v=1?sig=%zz&at=%40%3A&plus=a+b&empty=&flag", [], b""),
    ("no-client-headers", "GET", "/headers", [], b""),
    (
        "repeated-and-utf8-headers",
        "GET",
        "/headers",
        [b"Cookie: a=1", b"Cookie: b=2", "X-Name: café €".encode(), b"Accept: text/html"],
        b"",
    ),
    ("post-json", "POST", "/anything", [b"Content-Type: application/json"], b'{"a": [1, 2.50]}'),
    ("post-form", "POST", "/post", [b"Content-Type: application/x-www-form-urlencoded"], b"a=1&b=%20"),
    ("put-binary", "PUT", "/put", [b"Content-Type: application/octet-stream"], bytes(range(256))),
    ("post-no-content-type", "POST", "/anything", [], b"raw body"),
    ("patch", "PATCH", "/patch", [b"Content-Type: text/plain"], b"patched"),
    ("delete", "DELETE", "/delete", [], b""),
    ("options", "OPTIONS", "/anything", [], b""),
    ("head", "HEAD", "/get", [], b""),
    ("expect-continue", "POST", "/anything", [b"Expect: 100-continue"], b"after the 100"),
    ("status-418", "GET", "/status/418", [], b""),
    ("status-204", "GET", "/status/204", [], b""),
    ("status-500", "GET", "/status/500", [], b""),
    ("etag-304", "GET", "/etag/abc", [b'If-None-Match: "abc"'], b""),
    ("range-206", "GET", "/range/1000", [b"Range: bytes=10-19"], b""),
    ("repeated-response-headers", "GET", "/response-headers?X-A=1&X-A=2&Vary=Origin", [], b""),
    ("set-cookies", "GET", "/cookies/set?a=1&b=2", [], b""),
    ("relative-redirect", "GET", "/redirect-to?url=/anything/next%3Fx", [], b""),
    ("absolute-redirect", "GET", "/absolute-redirect/1", [], b""),
    ("elsewhere-redirect", "GET", "/redirect-to?url=https://example.invalid/x", [], b""),
    ("bytes", "GET", "/bytes/70000?seed=7", [], b""),
    ("stream-bytes", "GET", "/stream-bytes/70000?seed=7&chunk_size=999", [], b""),
    ("gzip-raw", "GET", "/encoding/utf8", [b"Accept-Encoding: identity"], b""),
    ("html", "GET", "/html", [], b""),
    ("image", "GET", "/image/png", [b"Accept: image/png"], b""),
    ("deny", "GET", "/deny", [], b""),
    ("basic-auth-refused", "GET", "/basic-auth/u/p", [], b""),
    ("basic-auth", "GET", "/basic-auth/u/p", [b"Authorization: Basic dTpw"], b""),
]
CHUNKED = b"4\r\nchun\r\n3\r\nked\r\n0\r\nX-Trailer: t\r\n\r\n"
# httpbin answers these with an interim status line and nothing after it: malformed answers,
# which the relay turns into 502. Sent first, each retried where the client lets it, they must
# not open the circuit breaker on the cases that follow.
MALFORMED = ["/status/100", "/status/101", "/status/102", "/status/103", "/status/199"]


def wait_until_up(url: str, process: subprocess.Popen[bytes], path: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, f"{url} exited"
        assert time.monotonic() < deadline, f"{url} did not start"
        try:
            if wire.send(url, path).status == 200:
                return
        except (OSError, EOFError, ValueError):
            time.sleep(0.1)


@contextmanager
def running(command: list[str], url: str, ready: str, **env: str) -> Iterator[str]:
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until_up(url, process, ready)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def httpbin() -> Iterator[str]:
    """httpbin under gunicorn on 127.0.0.1: a third-party upstream."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
    with running([*command, "httpbin:app"], f"http://127.0.0.1:{port}", "/get") as url:
        yield url


def client_combinations() -> list[Any]:
    """The four client package and transport combinations, with both relay endpoints."""
    params = []
    for package in CHOICES["httpx_package"]:
        for transport in CHOICES["http_transport"]:
            answers = {
                **DEFAULTS,
                "response_mode": "both",
                "httpx_package": package,
                "http_transport": transport,
            }
            params.append(
                pytest.param(
                    answers,
                    id=combination_id(answers),
                    marks=pytest.mark.xdist_group(environment_key(answers)),
                )
            )
    return params


def normalised(
    response: Any, *bases: str, framing: bool = True
) -> tuple[int, list[tuple[bytes, bytes]], Any]:
    """Status, end-to-end headers and body, with only what the relay documents as its own taken out.

    `bases` are what a `Location` under the upstream starts with: the upstream's URL or its root
    path when the answer came directly, the relay prefix through the relay (`REWRITE_LOCATION`).
    Without `framing`, how the request body was framed (length or chunks) is not compared.
    """
    headers = []
    for name, value in response.headers:
        lowered = name.lower()
        if lowered in PER_HOP | FRAMING:
            continue
        if lowered in {b"location", b"content-location"}:
            for base in bases:
                if value.startswith(base.encode() + b"/"):
                    value = b"<base>" + value.removeprefix(base.encode())
                    break
        headers.append((lowered, value))
    body: Any = response.body
    if response.values(b"content-type")[:1] == [b"application/json"] and body:
        body = json.loads(body)
        echoed = body.get("headers") if isinstance(body, dict) else None
        if isinstance(echoed, dict):
            # Expect is answered by the server in front; Content-Length: 0 is the length of the
            # (empty) body received, which aiohttp always states for a DELETE or a POST.
            dropped = (
                RELAY_ADDS | {"Expect"} | (set() if framing else {"Content-Length", "Transfer-Encoding"})
            )
            body["headers"] = {
                k: v
                for k, v in echoed.items()
                if k not in dropped and not (k == "Content-Length" and v == "0")
            }
    return response.status, headers, body


@contextmanager
def service_in_front_of(project: Project, upstream: str) -> Iterator[str]:
    """The project's service started by its own command, as its image runs it, relaying to
    `upstream`."""
    project.uv("sync", "--locked")
    bin_dir = project.shared / "venv" / "bin" if project.shared else Path(sys.executable).parent
    port = free_port()
    settings = {
        "UPSTREAM_BASE_URL": f"{upstream}/",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    command = [str(bin_dir / project.path.name)]
    with running(command, f"http://127.0.0.1:{port}", "/healthz", **settings) as url:
        yield url


@pytest.mark.parametrize("answers", client_combinations())
def test_relayed_exchanges_match_direct_ones(bake: Bake, answers: Answers, httpbin: str) -> None:
    with service_in_front_of(bake(**answers), httpbin) as service_url:
        differences = []
        for target in MALFORMED:
            for prefix in PREFIXES:
                relayed = wire.send(service_url, prefix + target)
                if relayed.status != 502 or not json.loads(relayed.body)["detail"]:
                    expected: tuple[int, list[tuple[bytes, bytes]], Any] = (502, [], "a JSON detail")
                    differences.append((target, prefix, expected, normalised(relayed, prefix)))
        for name, method, target, headers, body in CASES:
            direct = normalised(wire.send(httpbin, target, *headers, method=method, body=body), httpbin, "")
            for prefix in PREFIXES:
                relayed = wire.send(service_url, prefix + target, *headers, method=method, body=body)
                if (seen := normalised(relayed, prefix)) != direct:
                    differences.append((name, prefix, direct, seen))
        for prefix in PREFIXES:
            # Both relays read a small chunked body whole before taking an upstream connection
            # (the stream relay up to CLIENT_BODY_BUFFER_BYTES), and send it with its length.
            sent = wire.send(httpbin, "/anything", method="POST", chunks=CHUNKED)
            direct = normalised(sent, httpbin, "", framing=False)
            relayed = wire.send(service_url, f"{prefix}/anything", method="POST", chunks=CHUNKED)
            if (seen := normalised(relayed, prefix, framing=False)) != direct:
                differences.append(("chunked-upload", prefix, direct, seen))
    assert differences == [], "\n\n".join(map(repr, differences))


CURL_CASES = [
    ["--data-binary", "hello", "-H", "Expect: 100-continue", "/anything"],
    ["-H", "Cookie: a=1", "-H", "Cookie: b=2", "--compressed", "/gzip"],
    ["-X", "PUT", "--data-binary", "@-", "-H", "Transfer-Encoding: chunked", "/anything"],
    ["--head", "/get"],
    ["--location", "/redirect/2"],
]


def curl(base: str, args: list[str]) -> Any:
    """What curl shows of one exchange (`--include`), as a `wire.Message`."""
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--include", "--max-time", "20", *args[:-1], base + args[-1]],
        input=b"streamed body",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The last head shown is the final response's (after any 100 Continue or redirect).
    *_, head, body = result.stdout.split(b"\r\n\r\n")
    start, *lines = head.split(b"\r\n")
    headers = [(name, value.strip()) for name, _, value in (line.partition(b":") for line in lines)]
    return wire.Message(start, headers, body, result.stdout)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("answers", client_combinations()[:1])
def test_curl_gets_the_same_through_the_relay(bake: Bake, answers: Answers, httpbin: str) -> None:
    with service_in_front_of(bake(**answers), httpbin) as service_url:
        for args in CURL_CASES:
            for prefix in PREFIXES:
                # Both relays send a small body they have read whole with its length.
                direct = normalised(curl(httpbin, args), httpbin, "", framing=False)
                relayed = normalised(curl(service_url + prefix, args), prefix, framing=False)
                assert relayed == direct, (args, prefix)
