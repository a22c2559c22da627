"""The template's own upkeep: its code passes its checks, its CI covers every choice, and
projects made with cruft can follow later versions of the template."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.projects import (
    CHOICES,
    COMBINATIONS,
    DEFAULTS,
    FLAGS,
    TEMPLATE,
    Project,
    flag_settings,
    project_env,
)

WORKFLOW = TEMPLATE / ".github" / "workflows" / "ci.yml"


def run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_template_workflow_renders_every_combination() -> None:
    matrix = yaml.safe_load(WORKFLOW.read_text())["jobs"]["combinations"]["strategy"]["matrix"]
    assert {key: [str(value) for value in values] for key, values in matrix.items()} == CHOICES


def test_combinations_check_every_choice_with_each_flag_on_and_off() -> None:
    assert len(COMBINATIONS) == len({tuple(answers.items()) for answers in COMBINATIONS})
    for field, values in CHOICES.items():
        for value in values:
            for flag in FLAGS:
                answered = {answers[flag] for answers in COMBINATIONS if answers[field] == value}
                assert answered == {True, False}, (
                    f"{field}={value} is never checked with {flag} answered both ways"
                )
    settings = [{flag: answers[flag] for flag in FLAGS} for answers in COMBINATIONS]
    assert all(setting in settings for setting in flag_settings())


def test_template_workflow_is_valid() -> None:
    run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(WORKFLOW), cwd=TEMPLATE)


def test_template_code_passes_ruff_and_mypy() -> None:
    run(sys.executable, "-m", "ruff", "check", "benchmarks", "hooks", "tests", cwd=TEMPLATE)
    run(sys.executable, "-m", "ruff", "format", "--check", "benchmarks", "hooks", "tests", cwd=TEMPLATE)
    run(sys.executable, "-m", "mypy", cwd=TEMPLATE)


@pytest.mark.skipif(not (TEMPLATE / ".git").exists(), reason="cruft clones the template's git history")
def test_cruft_project_passes_its_checks_and_stays_in_sync(tmp_path: Path) -> None:
    env = project_env(str(DEFAULTS["python_version"]))
    run(
        sys.executable,
        "-m",
        "cruft",
        "create",
        "--no-input",
        "--output-dir",
        str(tmp_path),
        str(TEMPLATE),
        cwd=tmp_path,
        env=env,
    )
    (path,) = [child for child in tmp_path.iterdir() if child.is_dir()]
    project = Project(path, DEFAULTS)
    assert (path / ".cruft.json").is_file()
    run(sys.executable, "-m", "cruft", "check", cwd=path, env=env)
    project.uv("sync", "--locked")
    # The quick tests: the same project's whole suite runs in test_projects.py.
    project.uv("run", "pytest", "-q", "-p", "no:cacheprovider", "-x", "-m", "not slow")
