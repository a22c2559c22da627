"""Each combination passes the checks its users will run: lock, lint, format, types, tests,
pre-commit (which also runs hadolint and the GitHub workflow schema check), all offline."""

import pytest

from tests.projects import Answers, Bake, every_combination, suite


@pytest.mark.parametrize("answers", every_combination())
def test_project_passes_its_own_checks(bake: Bake, answers: Answers) -> None:
    project = bake(**answers)
    project.uv("sync", "--locked")
    # All of it, its quick part, or only collected: `suite` says which and why.
    project.uv("run", "pytest", "-q", "-p", "no:cacheprovider", *suite(answers))
    # pre-commit sees the files git knows: add them as a user would before committing.
    project.run("git", "add", "--all")
    project.uv("run", "pre-commit", "run", "--all-files", "--show-diff-on-failure")
