"""The generated image, built and run by a real Docker Engine, as a user would run it.

The Dockerfile of the default packages on Python 3.13 and 3.11, unchanged, builds (on stand-in
base images where no registry can be reached: `tests/engine.py`); the container runs read-only
as the image's own non-root user, its HEALTHCHECK reaches `healthy`, it relays to an upstream on
this machine's loopback, and on `docker stop` it lets the request in flight finish and exits 0
within the grace period.
"""

import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.engine import DEBIAN_PYTHON, Engine, ensure_base, start_engine, stop_engine
from tests.projects import COMBINATIONS, Answers, Bake, Project, default_packages, environment_key
from tests.running import instructions, serving

# The image's port, as its HEALTHCHECK asks it; the container shares this machine's network.
PORT = 8000
GRACE = 30  # seconds `docker stop` waits before SIGKILL


class Upstream(ThreadingHTTPServer):
    """An upstream on loopback: `/held` answers once the test releases it, anything else at once."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Upstream

    def do_GET(self) -> None:
        if self.path == "/held":
            self.server.arrived.set()
            self.server.release.wait(120)
        body = f"upstream saw {self.path}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine, daemon = start_engine()
    try:
        yield engine
    finally:
        stop_engine(daemon)


@contextmanager
def upstream() -> Iterator[Upstream]:
    with serving(Upstream()) as server:
        yield server
        server.release.set()


def build(engine: Engine, project: Project) -> str:
    """The project's image, built from its Dockerfile as it is."""
    for name, arguments in instructions(project.read("Dockerfile")):
        if name == "FROM":
            ensure_base(engine, arguments.split()[0])
        elif name == "COPY" and arguments.startswith("--from=") and ":" in arguments.split()[0]:
            ensure_base(engine, arguments.split()[0].removeprefix("--from="))
    tag = f"template-test/{project.path.name}:{environment_key(project.answers)}"
    engine.docker("build", "--network", "host", "--tag", tag, str(project.path))
    return tag


def get(path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=120) as response:
        return response.status, response.read()


def inspect(engine: Engine, container: str, template: str) -> list[str]:
    return engine.docker("inspect", "--format", template, container).stdout.split()


def logs(engine: Engine, container: str) -> str:
    result = engine.docker("logs", container)
    return result.stdout + result.stderr


def with_python(version: str) -> Answers:
    """The combination with both relays and the default packages on this Python version."""
    (answers,) = [
        answers
        for answers in COMBINATIONS
        if answers["python_version"] == version
        and default_packages(answers)
        and answers["response_mode"] == "both"
    ]
    return answers


# One test for both images, one after the other: they share the engine and the port, and
# xdist could run two tests at once on two workers.
def test_the_image_runs_read_only_as_its_user_relays_and_stops_cleanly(bake: Bake, engine: Engine) -> None:
    # The newest Python, and the other one a stand-in base image can be made for.
    for python_version in DEBIAN_PYTHON:
        with upstream() as origin:
            check_image(engine, build(engine, bake(**with_python(python_version))), origin)


def check_image(engine: Engine, image: str, upstream: Upstream) -> None:
    """Run `image` as a user would, relaying to `upstream`, and stop it."""
    name = f"template-test-{int(time.time())}"
    engine.docker(
        "run",
        "--detach",
        "--name",
        name,
        "--read-only",
        "--network",
        "host",
        "--env",
        f"UPSTREAM_BASE_URL=http://127.0.0.1:{upstream.server_address[1]}/",
        image,
    )
    try:
        assert inspect(engine, name, "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}") == [
            "10001:10001",
            "true",
        ]
        # Its health check runs every 15 s; the first comes after one interval.
        deadline = time.monotonic() + 120
        while (status := inspect(engine, name, "{{.State.Health.Status}}")) != ["healthy"]:
            assert status == ["starting"], logs(engine, name)
            assert time.monotonic() < deadline, logs(engine, name)
            time.sleep(0.5)
        assert engine.docker("exec", name, "id", "-u").stdout.strip() == "10001"
        refused = engine.docker("exec", name, "touch", "/app/written", check=False)
        assert "Read-only file system" in refused.stderr
        assert get("/stream/hello") == (200, b"upstream saw /hello")

        # A request in flight when `docker stop` sends SIGTERM is answered before the exit.
        answer: list[tuple[int, bytes]] = []
        caller = threading.Thread(target=lambda: answer.append(get("/buffered/held")))
        caller.start()
        assert upstream.arrived.wait(60), "the held request never reached the upstream"
        stopped = time.monotonic()
        stop = threading.Thread(target=engine.docker, args=("stop", "--time", str(GRACE), name))
        stop.start()
        deadline = time.monotonic() + 60
        while "Shutting down" not in logs(engine, name):
            assert time.monotonic() < deadline, "no SIGTERM reached the service"
            time.sleep(0.2)
        upstream.release.set()
        caller.join(timeout=60)
        stop.join(timeout=GRACE + 30)
        assert answer == [(200, b"upstream saw /held")]
        assert time.monotonic() - stopped < GRACE
        assert inspect(engine, name, "{{.State.ExitCode}} {{.State.OOMKilled}}") == ["0", "false"], logs(
            engine, name
        )
    finally:
        engine.docker("rm", "--force", name, check=False)
