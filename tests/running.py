"""Running what a project ships: its image's command, started as the image starts it, and the
real tools the tests point at it (a browser, Prometheus), which a machine may not have."""

import json
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from tests.projects import UV, Project, project_env

ServerType = TypeVar("ServerType", bound=socketserver.BaseServer)


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    lines = [
        line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    return [(line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1]) for line in lines]


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form CMD (after any options such as HEALTHCHECK's)."""
    command: list[str] = json.loads(arguments[arguments.index("[") :])
    return command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(server: ServerType) -> Iterator[ServerType]:
    """`server` answering from a thread of its own until the block ends."""
    with server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield server
        finally:
            server.shutdown()


def program(package: str, *names: str) -> str:
    """The path of the first of `names` installed, programs that Debian's `package` provides;
    the test is skipped without one, except under CI (`CI=true`), where it fails."""
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    message = f"{names[0]} is not installed: `apt-get install {package}` (as .ci/run does) runs this test"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Service:
    """The service, started by `image_command`: where it answers, and the file of its output."""

    url: str
    log: Path


@contextmanager
def image_command(project: Project, directory: Path, **settings: str) -> Iterator[Service]:
    """Run the Dockerfile's CMD on a free port, as the image would, until its health check
    passes. SIGTERM on the way out must stop it cleanly.
    """
    steps = instructions(project.read("Dockerfile"))
    (command,) = [exec_form(args) for name, args in steps if name == "CMD"]
    (health,) = [exec_form(args) for name, args in steps if name == "HEALTHCHECK"]
    # As the build stage does: the locked runtime dependencies and the package, not editable.
    venv = directory / "venv"
    env = {**project_env(project.python_version), "UV_PROJECT_ENVIRONMENT": str(venv)}
    subprocess.run(
        [*UV, "sync", "--locked", "--no-dev", "--no-editable"],
        cwd=project.path,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    port = str(free_port())
    health = [part.replace(":8000/", f":{port}/") for part in health]
    image_env = dict(arg.split("=", 1) for name, args in steps if name == "ENV" for arg in args.split())
    assert (image_env["HOST"], image_env["PORT"]) == ("0.0.0.0", "8000")
    runtime = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        # Here, on this machine's loopback and a free port, rather than 0.0.0.0:8000.
        "HOST": "127.0.0.1",
        "PORT": port,
        "UPSTREAM_BASE_URL": f"http://127.0.0.1:{port}/",
        **settings,
    }
    log_path = directory / "service.log"
    # Run from an empty directory: the image has the installed package, not the source tree.
    workdir = directory / "run"
    workdir.mkdir()
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=workdir, env=runtime, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(health, env=runtime, capture_output=True, check=False).returncode != 0:
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the health check never passed"
            time.sleep(0.2)
        yield Service(f"http://127.0.0.1:{port}", log_path)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    # A clean shutdown is a success, as an orchestrator reads the exit status.
    assert server.returncode == 0, log_path.read_text()
    assert "Traceback" not in log_path.read_text()
