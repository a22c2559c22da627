"""The rendered Kubernetes manifests pass checkov, the linter each project's CI runs on them,
with only the checks its `.checkov.yaml` skips (each with its reason) left out.

The manifests' validity and their agreement with the service are the project's own tests.
"""

import re
import subprocess

from tests.projects import UV, Bake, project_env


def test_manifests_pass_the_linter_the_projects_ci_runs(bake: Bake) -> None:
    project = bake()
    workflow = project.read(".github/workflows/ci.yml")
    found = re.search(r'uvx --from "(checkov[^"]*)" checkov (.*)', workflow)
    assert found, "the project's CI no longer runs checkov"
    requirement, arguments = found.groups()
    result = subprocess.run(
        # --skip-download: nothing leaves the machine (no guidelines fetched).
        [*UV, "tool", "run", "--from", requirement, "checkov", *arguments.split(), "--skip-download"],
        cwd=project.path / "deploy" / "kubernetes",
        env=project_env(project.python_version),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Failed checks: 0" in result.stdout, result.stdout
