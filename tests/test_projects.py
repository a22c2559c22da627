"""Each combination passes the checks its users will run: lock, lint, format, types, tests,
pre-commit (which also runs hadolint and the GitHub workflow schema check), all offline."""

import pytest

from tests.projects import Answers, Bake, every_combination


@pytest.mark.parametrize("answers", every_combination())
def test_project_passes_its_own_checks(bake: Bake, answers: Answers) -> None:
    project = bake(**answers)
    project.uv("sync", "--locked")
    # Each set of installed packages runs its whole suite once, where both relays are generated;
    # the renders with one relay run the quick part (`-m "not slow"`): the slow tests drive the
    # same code there, and the run's time goes mostly to them.
    quick = [] if answers["response_mode"] == "both" else ["-m", "not slow"]
    project.uv("run", "pytest", "-q", "-p", "no:cacheprovider", *quick)
    # pre-commit sees the files git knows: add them as a user would before committing.
    project.run("git", "add", "--all")
    project.uv("run", "pre-commit", "run", "--all-files", "--show-diff-on-failure")
