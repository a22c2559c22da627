"""A small language for testing the template: `render` it with some answers into a `Project`,
and run in that project the commands its users would run.

Every combination of choices is read from cookiecutter.json itself, so a new choice is tested
as soon as it is offered. The tests (through conftest's `bake` fixture) and
`benchmarks/compare.py` both use it.
"""

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parent.parent
CONTEXT = json.loads((TEMPLATE / "cookiecutter.json").read_text())
Answers = dict[str, str | bool]
CHOICES: dict[str, list[str]] = {key: value for key, value in CONTEXT.items() if isinstance(value, list)}
FLAGS: list[str] = [key for key, value in CONTEXT.items() if isinstance(value, bool)]
DEFAULTS: Answers = {
    **{key: value[0] for key, value in CHOICES.items()},
    **{key: bool(CONTEXT[key]) for key in FLAGS},
}
# The choices that decide what a project installs: every one but the relay mode.
INSTALLED: list[str] = [key for key in CHOICES if key != "response_mode"]
UV = [sys.executable, "-m", "uv"]


def flag_settings() -> list[dict[str, bool]]:
    """Every way to answer the yes/no prompts, the defaults first."""
    answers = itertools.product(*([bool(CONTEXT[flag]), not CONTEXT[flag]] for flag in FLAGS))
    return [dict(zip(FLAGS, values, strict=True)) for values in answers]


def combinations() -> list[Answers]:
    """Every combination of the list choices, each with one setting of the yes/no prompts.

    Every setting of the flags for every list combination would multiply the run's time by
    four. Instead each environment (the choices that decide what is installed) takes the next
    setting in turn, Python versions varying fastest, so that every package and transport is
    checked with each flag on and off (`test_template` holds this) and the relay modes of an
    environment still share it.
    """
    installed = INSTALLED[::-1]
    settings = itertools.cycle(flag_settings())
    environments: list[Answers] = [
        {**dict(zip(installed, values, strict=True)), **next(settings)}
        for values in itertools.product(*(CHOICES[key] for key in installed))
    ]
    return [
        {"response_mode": mode, **environment}
        for mode in CHOICES["response_mode"]
        for environment in environments
    ]


COMBINATIONS = combinations()


def choice_names(answers: Answers, keys: list[str]) -> list[str]:
    """The answers to these list choices, as ids spell them: `both`, `py3.13`, `httpx2`."""
    return [f"py{answers[key]}" if key == "python_version" else str(answers[key]) for key in keys]


def flag_names(answers: Answers) -> list[str]:
    """The yes/no prompts answered yes."""
    return [flag for flag in FLAGS if answers[flag]]


def combination_id(answers: Answers) -> str:
    """`both-py3.13-httpx2-aiohttp-metrics-tracing`: the choices, then the flags answered yes."""
    return "-".join(choice_names(answers, list(CHOICES)) + flag_names(answers))


def environment_key(answers: Answers) -> str:
    """Combinations that install the same packages share one environment, keyed by this."""
    return "-".join(choice_names(answers, INSTALLED) + flag_names(answers))


def every_combination() -> list[object]:
    """Every combination as a test parameter, kept on one xdist worker per environment.

    So each combination is rendered once, and no shared environment is synced twice at once.
    """
    return [
        pytest.param(
            answers,
            id=combination_id(answers),
            marks=pytest.mark.xdist_group(environment_key(answers)),
        )
        for answers in COMBINATIONS
    ]


def default_packages(answers: Answers) -> bool:
    """Whether these answers install the default packages, whatever the Python version."""
    return all(answers[key] == DEFAULTS[key] for key in INSTALLED if key != "python_version")


def suite(answers: Answers) -> list[str]:
    """The pytest options a combination's own suite runs with in `test_projects.py`.

    Every combination passes its static checks (pre-commit: ruff, mypy --strict and the rest),
    and its tests are all collected, which imports every module. Then, to keep the run within
    two cores' quarter of an hour, the tests run where they can find what the others would:
    - each client package and transport on the newest Python, and each Python with the default
      packages, the renders that cover them: the whole suite where both relays are generated,
      the quick part (`-m "not slow"`) where one is;
    - the other renders with both relays: the quick part;
    - the other renders with one relay: collected only. Their code is the same files as the
      render with both relays of their environment, minus the other relay's, whose suite runs
      in full or in part; and the lines a relay mode changes are the same as in the covering
      renders, whose suites run.
    """
    covering = answers["python_version"] == CHOICES["python_version"][0] or default_packages(answers)
    both = answers["response_mode"] == "both"
    if covering and both:
        return []
    if covering or both:
        return ["-m", "not slow"]
    return ["--collect-only"]


def every_environment() -> list[object]:
    """One combination for each set of installed packages: the one with both relays."""
    return [
        param
        for param, answers in zip(every_combination(), COMBINATIONS, strict=True)
        if answers["response_mode"] == "both"
    ]


def interpreter(version: str) -> str:
    """A local CPython for `version`: on PATH, under pyenv, or else the version for uv to fetch."""
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True)
    candidates += [str(path) for path in found]
    for candidate in candidates:
        if (
            candidate
            and subprocess.run([candidate, "--version"], capture_output=True, check=False).returncode == 0
        ):
            return str(candidate)
    return version


def project_env(python_version: str, shared: Path | None = None) -> dict[str, str]:
    """The environment a project's commands run in: its own interpreter, no inherited venv.

    With `shared`, the project installs into that virtualenv (and keeps mypy's cache beside it):
    `uv sync --locked` makes it exactly what this project's lock file says either way.
    """
    # PYTHONDONTWRITEBYTECODE too: the checks start dozens of Python processes, and each would
    # compile every module it imports again (about half of a service's start-up).
    inherited = {
        "VIRTUAL_ENV",
        "PYENV_VERSION",
        "UV_PROJECT_ENVIRONMENT",
        "MYPY_CACHE_DIR",
        "PYTHONDONTWRITEBYTECODE",
        # Options for the template's own pytest run are not the project's.
        "PYTEST_ADDOPTS",
    }
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    env["UV_PYTHON"] = interpreter(python_version)
    if shared is not None:
        env["UV_PROJECT_ENVIRONMENT"] = str(shared / "venv")
        env["MYPY_CACHE_DIR"] = str(shared / "mypy")
    return env


@dataclass(frozen=True)
class Project:
    """A rendered project, and the commands its users would run in it."""

    path: Path
    answers: Answers
    shared: Path | None = None

    @property
    def python_version(self) -> str:
        return str(self.answers["python_version"])

    @property
    def package(self) -> Path:
        """The rendered Python package, `src/<package_name>`."""
        (package,) = (self.path / "src").iterdir()
        return package

    def files(self) -> set[str]:
        """Every file the template rendered, relative to the project (tool output excluded)."""
        skip = {".git", ".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "__pycache__"}
        return {
            path.relative_to(self.path).as_posix()
            for path in self.path.rglob("*")
            if path.is_file() and not skip & set(path.relative_to(self.path).parts)
        }

    def read(self, relative: str) -> str:
        return (self.path / relative).read_text()

    def run(self, *command: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run a command in the project; fail the test with its output if it fails."""
        result = subprocess.run(
            command,
            cwd=self.path,
            env=project_env(self.python_version, self.shared),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def uv(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return self.run(*UV, *args, timeout=timeout)


def render(output_dir: Path, answers: Answers, template: Path = TEMPLATE) -> subprocess.CompletedProcess[str]:
    """Run cookiecutter as a user would, with these answers and no prompts."""
    return subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "--output-dir", str(output_dir), str(template)]
        + [f"{key}={value}" for key, value in answers.items()],
        env=project_env(str(answers.get("python_version", DEFAULTS["python_version"]))),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


Bake = Callable[..., Project]


def main(argv: list[str]) -> int:
    """`python -m tests.projects both-py3.13-httpx2-aiohttp DIR`: render that combination, with
    the yes/no answers the tests give it, into DIR, as template CI does."""
    choices, output_dir = argv
    (answers,) = [
        answers for answers in COMBINATIONS if "-".join(choice_names(answers, list(CHOICES))) == choices
    ]
    result = render(Path(output_dir), answers)
    print(result.stdout + result.stderr, end="")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
