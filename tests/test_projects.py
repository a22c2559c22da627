"""Each combination passes the checks its users will run: lock, tests, lint, format, types."""

import pytest

from tests.conftest import Bake, every_combination


@pytest.mark.parametrize("answers", every_combination())
def test_project_passes_its_own_checks(bake: Bake, answers: dict[str, str]) -> None:
    project = bake(**answers)
    project.uv("sync", "--locked")
    project.uv("run", "ruff", "check", ".")
    project.uv("run", "ruff", "format", "--check", ".")
    project.uv("run", "mypy")
    project.uv("run", "pytest", "-q", "-p", "no:cacheprovider")
