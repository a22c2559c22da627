"""Remove the files of unchosen variants, lock the dependencies, and print the next steps."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

# Files that belong to some choices only: path -> (question, the answers that keep it).
# Every other file belongs to every project.
OWNED_FILES: dict[str, tuple[str, set[object]]] = {
    "src/{package_name}/routes/stream.py": ("response_mode", {"both", "stream"}),
    "tests/test_stream.py": ("response_mode", {"both", "stream"}),
    "src/{package_name}/routes/buffered.py": ("response_mode", {"both", "buffered"}),
    "tests/test_buffered.py": ("response_mode", {"both", "buffered"}),
    "src/{package_name}/transport_aiohttp.py": ("http_transport", {"aiohttp"}),
    "src/{package_name}/transport_native.py": ("http_transport", {"native"}),
    "tests/test_http2.py": ("http_transport", {"native"}),
    "src/{package_name}/metrics.py": ("metrics", {True}),
    "tests/test_metrics.py": ("metrics", {True}),
    "tests/test_alerts.py": ("metrics", {True}),
    "deploy/prometheus/alerts.yml": ("metrics", {True}),
    "deploy/prometheus/alerts.test.yml": ("metrics", {True}),
    "deploy/kubernetes/prometheus-operator/kustomization.yaml": ("metrics", {True}),
    "deploy/kubernetes/prometheus-operator/prometheusrule.yaml": ("metrics", {True}),
    "src/{package_name}/tracing.py": ("tracing", {True}),
    "tests/test_tracing.py": ("tracing", {True}),
}
# Variant files that take a common name once the unchosen ones are gone: path -> new path.
RENAMED_FILES = {
    "src/{package_name}/transport_aiohttp.py": "src/{package_name}/transport.py",
    "src/{package_name}/transport_native.py": "src/{package_name}/transport.py",
}


def unchosen_files(answers: dict[str, object]) -> list[str]:
    """The files of the variants these answers did not choose, relative to the project."""
    return [
        path.format(package_name=answers["package_name"])
        for path, (prompt, keep) in OWNED_FILES.items()
        if answers[prompt] not in keep
    ]


def remove(project: Path, paths: list[str]) -> None:
    """Delete these files, and each folder they leave empty."""
    for path in paths:
        (project / path).unlink()
    for path in paths:
        for folder in (project / path).parents:
            if folder == project:
                break
            if not folder.exists():
                continue  # emptied and removed for an earlier file
            if any(folder.iterdir()):
                break
            folder.rmdir()


def rename_chosen(project: Path, answers: dict[str, str]) -> None:
    """Give each remaining variant file its common name."""
    for path, new_path in RENAMED_FILES.items():
        source = project / path.format(package_name=answers["package_name"])
        if source.exists():
            source.rename(project / new_path.format(package_name=answers["package_name"]))


def uv_command() -> list[str] | None:
    """How to run uv here: the module installed beside cookiecutter, else the one on PATH.

    The module comes first: a version manager's `uv` shim may not work inside the new
    project, whose `.python-version` can name an interpreter that has no uv.
    """
    probe = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return [sys.executable, "-m", "uv"]
    found = shutil.which("uv")
    return [found] if found else None


def lock(project: Path) -> str | None:
    """Write uv.lock; on failure (no uv, no network) say how to do it later instead of failing."""
    uv = uv_command()
    if uv is None:
        return "uv is not installed, so no uv.lock was written: `pip install uv`, then `uv lock`."
    # The project's own .python-version must pick the interpreter, not one inherited from a
    # version manager's shim that ran cookiecutter.
    env = {name: value for name, value in os.environ.items() if name != "PYENV_VERSION"}
    result = subprocess.run(
        [*uv, "lock", "--quiet"], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        return f"uv.lock could not be written ({reason}); run `uv lock` once you are online."
    return None


def init_git(project: Path) -> None:
    """Make the project a git repository: pre-commit and cruft work on one."""
    if shutil.which("git"):
        subprocess.run(["git", "init", "--quiet"], cwd=project, capture_output=True, check=False)


def next_steps(answers: dict[str, str], warning: str | None) -> str:
    lines = [
        f"Created {answers['project_slug']}.",
        *([f"Warning: {warning}"] if warning else []),
        "Next steps:",
        f"  cd {answers['project_slug']}",
        "  uv sync                                   # install the service and its tools",
        "  git add --all && uv run pre-commit run --all-files   # lint, format, type-check",
        "  uv run pytest                             # run its tests",
        f"  uv run {answers['project_slug']} --reload         # serve on http://127.0.0.1:8000",
    ]
    return "\n".join(lines)


def main() -> int:
    answers = json.loads(ANSWERS_JSON)
    project = Path.cwd()
    remove(project, unchosen_files(answers))
    rename_chosen(project, answers)
    warning = lock(project)
    init_git(project)
    print(next_steps(answers, warning))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
