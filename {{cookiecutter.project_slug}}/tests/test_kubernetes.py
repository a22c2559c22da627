"""The Kubernetes manifests (deploy/kubernetes/) are valid and agree with the service they run:
its port and health paths, its settings and secrets, its user, its own graceful shutdown.
"""

import re
from pathlib import Path
from typing import Any

{{ cookiecutter.__httpx_import }}
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from {{ cookiecutter.package_name }}.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes release upstream still supported when the project was generated.
KUBERNETES_VERSION = "1.35.0"
{%- if cookiecutter.tracing %}
# Read by OpenTelemetry, not by the service's settings.
OTHER_READERS = {"OTEL_SERVICE_NAME"}
{%- else %}
OTHER_READERS: set[str] = set()
{%- endif %}


def load(name: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((MANIFESTS / name).read_text())
    return manifest


def kustomized() -> list[str]:
    """The manifests `kubectl apply -k deploy/kubernetes` applies."""
    resources: list[str] = load("kustomization.yaml")["resources"]
    return resources


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = load("deployment.yaml")["spec"]["template"]
    return spec


def container() -> dict[str, Any]:
    (only,) = pod()["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def dockerfile(pattern: str) -> tuple[str, ...]:
    """The groups of `pattern` in the Dockerfile, which the image runs as written."""
    found = re.search(pattern, (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert found, pattern
    return found.groups()


@pytest.mark.parametrize("name", kustomized())
def test_each_manifest_is_valid_for_the_pinned_kubernetes_version(name: str) -> None:
    # Strict: a misspelt or misplaced field is an error, not silently ignored by the cluster.
    kubernetes_validate.validate(load(name), KUBERNETES_VERSION, strict=True)


def test_pre_commit_validates_against_the_same_version() -> None:
    hooks = (ROOT / ".pre-commit-config.yaml").read_text()
    assert f"--kubernetes-version {KUBERNETES_VERSION}" in hooks


def test_kustomization_applies_every_manifest() -> None:
    # Beside the manifests: kustomize's own file, and checkov's settings (.checkov.yaml).
    on_disk = {path.name for path in MANIFESTS.glob("[!.]*.yaml")} - {"kustomization.yaml"}
    assert set(kustomized()) == on_disk


def test_probes_ask_the_services_own_health_paths_on_its_port(client: httpx.Client) -> None:
    probes = container()
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ["startupProbe", "livenessProbe", "readinessProbe"]:
        assert client.get(probes[kind]["httpGet"]["path"]).status_code == 200
        assert probes[kind]["httpGet"]["port"] == "http"
    (port,) = container()["ports"]
    (exposed,) = dockerfile(r"^EXPOSE (\d+)$")
    assert port == {"name": "http", "containerPort": int(exposed)}


{%- if cookiecutter.metrics %}


def test_prometheus_is_told_where_each_pod_serves_its_metrics(client: httpx.Client) -> None:
    annotations = pod()["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    (port,) = container()["ports"]
    assert int(annotations["prometheus.io/port"]) == port["containerPort"]
    scraped = client.get(annotations["prometheus.io/path"])
    assert scraped.status_code == 200
    assert "http_server_request_duration_seconds" in scraped.text
{%- endif %}


def test_the_pod_is_given_longer_than_the_service_takes_to_shut_down() -> None:
    graceful = float(load("configmap.yaml")["data"]["SHUTDOWN_TIMEOUT"])
    drain = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The load balancer drains first (preStop), then SIGTERM starts the graceful shutdown, and
    # the app's own shutdown (closing the client) needs a few seconds more.
    assert pod()["spec"]["terminationGracePeriodSeconds"] >= drain + graceful + 5


def test_the_pod_starts_the_service_as_the_image_does() -> None:
    (command,) = dockerfile(r'^CMD \["([^"]+)"\]$')
    assert container()["command"] == [command]
    # Listening on every interface, on the port the container and the Service expose.
    host, port = dockerfile(r"HOST=(\S+) \\\n\s+PORT=(\d+)")
    assert host == "0.0.0.0"
    assert container()["ports"][0]["containerPort"] == int(port)


def test_it_runs_as_the_images_user_read_only_without_capabilities() -> None:
    user, group = dockerfile(r"^USER (\d+):(\d+)$")
    pod_security = pod()["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert (pod_security["runAsUser"], pod_security["runAsGroup"]) == (int(user), int(group))
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_it_asks_for_resources_and_has_limits() -> None:
    resources = container()["resources"]
    for bound in ["requests", "limits"]:
        assert set(resources[bound]) == {"cpu", "memory"}


def test_settings_are_valid_and_secrets_come_only_from_a_secret() -> None:
    configmap = load("configmap.yaml")
    settings = configmap["data"]
    secrets = {
        name.upper()
        for name, field in Settings.model_fields.items()
        if field.annotation == SecretStr | None
    }
    assert secrets
    assert not secrets & set(settings)
    # The ConfigMap's values are settings the service accepts as they are.
    Settings(**{k.lower(): v for k, v in settings.items() if k not in OTHER_READERS})
    (source,) = container()["envFrom"]
    assert source["configMapRef"]["name"] == configmap["metadata"]["name"]
    # Every other variable is a reference to a Secret, never a value.
    references = {entry["name"]: entry["valueFrom"]["secretKeyRef"] for entry in container()["env"]}
    assert set(references) == secrets
    # Under the setting's own name, as in .env; never optional, so a missing Secret stops the pod.
    assert all(name == ref["key"] and "optional" not in ref for name, ref in references.items())
    assert all("value" not in entry for entry in container()["env"])


def test_the_service_budget_and_autoscaler_all_find_the_pods() -> None:
    labels = pod()["metadata"]["labels"]
    deployment = load("deployment.yaml")
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert load("service.yaml")["spec"]["selector"].items() <= labels.items()
    assert load("pdb.yaml")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for spread in pod()["spec"]["topologySpreadConstraints"]:
        assert spread["labelSelector"]["matchLabels"].items() <= labels.items()
    autoscaler = load("hpa.yaml")["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    # One pod may be drained while another keeps serving.
    assert autoscaler["minReplicas"] > load("pdb.yaml")["spec"]["maxUnavailable"]
