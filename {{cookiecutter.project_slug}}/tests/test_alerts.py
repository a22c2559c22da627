"""The alerting rules (`deploy/prometheus/alerts.yml`): the PrometheusRule holds the same ones,
every metric they read is one the service serves, and promtool checks them and runs their unit
tests (`alerts.test.yml`) where it is installed, as it is in CI."""

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

{{ cookiecutter.__httpx_import }}
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus"
OPERATOR = ROOT / "deploy" / "kubernetes" / "prometheus-operator"
# The samples a metric family of each type serves, by suffix to the name on its `# TYPE` line.
SUFFIXES = {"counter": [""], "gauge": [""], "histogram": ["_bucket", "_count", "_sum"]}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_the_prometheus_rule_holds_the_same_rules() -> None:
    rule = load(OPERATOR / "prometheusrule.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"] == load(RULES / "alerts.yml")


def test_the_kustomization_offers_the_rule_as_a_component() -> None:
    component = load(OPERATOR / "kustomization.yaml")
    assert (component["kind"], component["resources"]) == ("Component", ["prometheusrule.yaml"])
    offered = (ROOT / "deploy" / "kubernetes" / "kustomization.yaml").read_text()
    assert "#   - prometheus-operator\n" in offered


def test_every_metric_the_rules_read_is_served(client: httpx.Client) -> None:
    exposition = client.get("/metrics").text
    families = re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE)
    served = {name + suffix for name, kind in families for suffix in SUFFIXES[kind]}
    rules = [rule for group in load(RULES / "alerts.yml")["groups"] for rule in group["rules"]]
    # A metric's name is followed by its label matchers or its range; a label's, by `=` or `~`.
    metric = re.compile(r"\b(http_[a-z_]+)(?=[{\[])")
    read = {name for rule in rules for name in metric.findall(rule["expr"])}
    assert read
    assert read <= served, read - served


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not installed: `apt-get install prometheus` runs this test"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.mark.parametrize(
    "command", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]]
)
def test_promtool_passes_the_rules(command: list[str]) -> None:
    result = subprocess.run(
        [promtool(), *command], cwd=RULES, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
