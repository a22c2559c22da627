"""The Dockerfile, checked without a Docker engine: what it copies exists, what it runs starts
the service from a clean install, and its health check passes against that service.

Real image builds run in the template's and the project's GitHub workflows.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.projects import UV, Bake, every_combination, project_env


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


@pytest.mark.parametrize("answers", every_combination())
def test_dockerfile_copies_only_what_exists_and_is_not_ignored(bake: Bake, answers: dict[str, str]) -> None:
    project = bake(**answers)
    ignored = project.read(".dockerignore").splitlines()
    for instruction, arguments in instructions(project.read("Dockerfile")):
        if instruction != "COPY" or arguments.startswith("--from"):
            continue
        *sources, _destination = arguments.split()
        for source in sources:
            assert (project.path / source).exists(), source
            assert f"!{source.rstrip('/')}" in {line.rstrip("/") for line in ignored}, source


@pytest.mark.parametrize("answers", every_combination())
def test_image_command_serves_and_passes_its_health_check(
    bake: Bake, answers: dict[str, str], tmp_path: Path
) -> None:
    project = bake(**answers)
    steps = instructions(project.read("Dockerfile"))
    (command,) = [exec_form(args) for name, args in steps if name == "CMD"]
    (health,) = [exec_form(args) for name, args in steps if name == "HEALTHCHECK"]
    assert "--timeout-graceful-shutdown" in command
    assert "--proxy-headers" in command
    # The service's own protocol (trailers kept out of the headers), and no proxy trusted.
    assert any(part.endswith(".server:HttpProtocol") for part in command)
    assert any('FORWARDED_ALLOW_IPS=""' in args for name, args in steps if name == "ENV")

    # As the build stage does: the locked runtime dependencies and the package, not editable.
    venv = tmp_path / "venv"
    env = {**project_env(answers["python_version"]), "UV_PROJECT_ENVIRONMENT": str(venv)}
    subprocess.run(
        [*UV, "sync", "--locked", "--no-dev", "--no-editable"],
        cwd=project.path,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )

    port = str(free_port())
    command = [port if part == "8000" else "127.0.0.1" if part == "0.0.0.0" else part for part in command]
    health = [part.replace(":8000/", f":{port}/") for part in health]
    runtime = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "UPSTREAM_BASE_URL": f"http://127.0.0.1:{port}/",
    }
    # Run from an empty directory: the image has the installed package, not the source tree.
    server = subprocess.Popen(command, cwd=tmp_path, env=runtime, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(health, env=runtime, capture_output=True, check=False).returncode != 0:
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the health check never passed"
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    # uvicorn re-raises SIGTERM after a clean shutdown.
    assert server.returncode in {0, -signal.SIGTERM}, stderr
    assert "Traceback" not in stderr
