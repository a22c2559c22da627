"""The Dockerfile, checked without a Docker engine, for every combination: what it copies
exists, what it runs starts the service from a clean install, and its health check passes
against that service.

A real engine builds and runs the image in `test_docker.py`, and in the template's and the
project's GitHub workflows.
"""

import time
from pathlib import Path

import pytest

from tests.projects import Answers, Bake, every_combination, every_environment
from tests.running import exec_form, image_command, instructions


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
    with image_command(project, tmp_path, WEB_CONCURRENCY="2") as service:
        log_path = service.log
        # Each worker logs its start once its app is ready; the health check needed only one.
        deadline = time.monotonic() + 30
        while log_path.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
    log = log_path.read_text()
    assert log.count("Started server process") == 2, log
    # On SIGTERM, each worker shut down its own client.
    assert log.count("upstream client closed") == 2, log
