"""The template tests' fixtures: `bake(**answers)` renders the template once per set of answers."""

from pathlib import Path

import pytest

from tests.projects import DEFAULTS, Bake, Project, combination_id, environment_key, render


@pytest.fixture(scope="session")
def environments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where combinations that install the same packages keep their shared environment."""
    return tmp_path_factory.mktemp("environments")


@pytest.fixture(scope="session")
def bake(tmp_path_factory: pytest.TempPathFactory, environments: Path) -> Bake:
    """Render the template once per distinct set of answers; later calls get the same project."""
    baked: dict[tuple[tuple[str, str | bool], ...], Project] = {}

    def bake(**answers: str | bool) -> Project:
        answers = {**DEFAULTS, **answers}
        key = tuple(sorted(answers.items()))
        if key not in baked:
            output = tmp_path_factory.mktemp(combination_id(answers))
            result = render(output, answers)
            assert result.returncode == 0, result.stdout + result.stderr
            (path,) = output.iterdir()
            baked[key] = Project(path, answers, environments / environment_key(answers))
        return baked[key]

    return bake
