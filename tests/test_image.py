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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.projects import UV, Answers, Bake, Project, every_combination, every_environment, project_env


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
def test_dockerfile_copies_only_what_exists_and_is_not_ignored(bake: Bake, answers: Answers) -> None:
    project = bake(**answers)
    ignored = project.read(".dockerignore").splitlines()
    for instruction, arguments in instructions(project.read("Dockerfile")):
        if instruction != "COPY" or arguments.startswith("--from"):
            continue
        *sources, _destination = arguments.split()
        for source in sources:
            assert (project.path / source).exists(), source
            assert f"!{source.rstrip('/')}" in {line.rstrip("/") for line in ignored}, source


@contextmanager
def image_command(project: Project, directory: Path, **settings: str) -> Iterator[Path]:
    """Run the Dockerfile's CMD on a free port, as the image would, until its health check
    passes; yield the path of its log (stdout and stderr). SIGTERM on the way out must stop it
    cleanly.
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
        yield log_path
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    # A clean shutdown is a success, as an orchestrator reads the exit status.
    assert server.returncode == 0, log_path.read_text()
    assert "Traceback" not in log_path.read_text()


# Once for each set of installed packages: the Dockerfile and the command are the same whatever
# the relays, and each render's own suite already starts its app.
@pytest.mark.parametrize("answers", every_environment())
def test_image_command_serves_and_passes_its_health_check(
    bake: Bake, answers: Answers, tmp_path: Path
) -> None:
    project = bake(**answers)
    steps = instructions(project.read("Dockerfile"))
    # The service's own command, which carries the server's configuration.
    assert [exec_form(args) for name, args in steps if name == "CMD"] == [[project.path.name]]
    with image_command(project, tmp_path):
        pass


def test_image_runs_as_many_workers_as_web_concurrency_says(bake: Bake, tmp_path: Path) -> None:
    project = bake()
    with image_command(project, tmp_path, WEB_CONCURRENCY="2") as log_path:
        # Each worker logs its start once its app is ready; the health check needed only one.
        deadline = time.monotonic() + 30
        while log_path.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
    log = log_path.read_text()
    assert log.count("Started server process") == 2, log
    # On SIGTERM, each worker shut down its own client.
    assert log.count("upstream client closed") == 2, log
