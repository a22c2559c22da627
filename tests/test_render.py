"""Each combination renders the files of its choices, and only those, as hand-written code."""

import re

import pytest

from tests.projects import Answers, Bake, every_combination

COMMON = {
    ".dockerignore",
    ".env.example",
    ".github/workflows/ci.yml",
    ".gitignore",
    ".pre-commit-config.yaml",
    ".python-version",
    "Dockerfile",
    "README.md",
    "deploy/kubernetes/.checkov.yaml",
    "deploy/kubernetes/configmap.yaml",
    "deploy/kubernetes/deployment.yaml",
    "deploy/kubernetes/hpa.yaml",
    "deploy/kubernetes/kustomization.yaml",
    "deploy/kubernetes/pdb.yaml",
    "deploy/kubernetes/service.yaml",
    "docs/deploy.md",
    "docs/relay.md",
    "benchmarks/__init__.py",
    "benchmarks/baselines.py",
    "benchmarks/bench.py",
    "benchmarks/peers.py",
    "benchmarks/report.py",
    "benchmarks/sessions.py",
    "benchmarks/upstream.py",
    "benchmarks/wrk.py",
    "pyproject.toml",
    "uv.lock",
    "src/upstream_relay/__init__.py",
    "src/upstream_relay/__main__.py",
    "src/upstream_relay/apidocs.py",
    "src/upstream_relay/app.py",
    "src/upstream_relay/auth.py",
    "src/upstream_relay/breaker.py",
    "src/upstream_relay/errors.py",
    "src/upstream_relay/framing.py",
    "src/upstream_relay/headers.py",
    "src/upstream_relay/main.py",
    "src/upstream_relay/observability.py",
    "src/upstream_relay/openapi.py",
    "src/upstream_relay/pool.py",
    "src/upstream_relay/relay.py",
    "src/upstream_relay/resilience.py",
    "src/upstream_relay/routes/__init__.py",
    "src/upstream_relay/routes/health.py",
    "src/upstream_relay/routes/items.py",
    "src/upstream_relay/server.py",
    "src/upstream_relay/service.py",
    "src/upstream_relay/settings.py",
    "src/upstream_relay/static/swagger-init.js",
    "src/upstream_relay/transport.py",
    "src/upstream_relay/upstream.py",
    "src/upstream_relay/urls.py",
    "src/upstream_relay/websocket.py",
    "src/upstream_relay/routes/websocket.py",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/test_app.py",
    "tests/test_auth.py",
    "tests/test_breaker.py",
    "tests/test_errors.py",
    "tests/test_framing.py",
    "tests/test_headers.py",
    "tests/test_hostile.py",
    "tests/test_items.py",
    "tests/test_kubernetes.py",
    "tests/test_load.py",
    "tests/test_logs.py",
    "tests/test_malformed.py",
    "tests/test_openapi.py",
    "tests/test_relay.py",
    "tests/test_resilience.py",
    "tests/test_server.py",
    "tests/test_urls.py",
    "tests/test_wire_caller.py",
    "tests/test_wire_upstream.py",
    "tests/test_websocket.py",
    "tests/test_websocket_hostile.py",
    "tests/test_websocket_load.py",
    "tests/websocket_upstream.py",
    "tests/servers.py",
    "tests/upstream_app.py",
    "tests/wire.py",
}
BY_CHOICE: dict[tuple[str, str | bool], set[str]] = {
    ("response_mode", "stream"): {"src/upstream_relay/routes/stream.py", "tests/test_stream.py"},
    ("response_mode", "buffered"): {"src/upstream_relay/routes/buffered.py", "tests/test_buffered.py"},
    ("http_transport", "native"): {"tests/test_http2.py"},
    ("metrics", True): {
        "src/upstream_relay/metrics.py",
        "tests/test_metrics.py",
        "tests/test_alerts.py",
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts.test.yml",
        "deploy/kubernetes/prometheus-operator/kustomization.yaml",
        "deploy/kubernetes/prometheus-operator/prometheusrule.yaml",
    },
    ("tracing", True): {"src/upstream_relay/tracing.py", "tests/test_tracing.py"},
}
# Words that must not appear in a project that did not choose the variant they belong to.
MENTIONS: dict[tuple[str, str | bool], re.Pattern[str]] = {
    ("response_mode", "stream"): re.compile(
        r"/stream/|routes\.stream|UpstreamStreamingResponse|streaming relay", re.I
    ),
    # `\b`: PYTHONUNBUFFERED in the Dockerfile is not the buffered relay.
    ("response_mode", "buffered"): re.compile(r"\bbuffered", re.I),
    ("http_transport", "aiohttp"): re.compile(r"aiohttp", re.I),
    ("httpx_package", "httpx2"): re.compile(r"httpx2"),
    # Not "metrics" alone: the autoscaler's CPU metrics are there either way.
    ("metrics", True): re.compile(r"prometheus|/metrics|metrics\.py|http_server_request", re.I),
    # OpenTelemetry's naming conventions are the metrics' too: not the word, its packages.
    ("tracing", True): re.compile(r"opentelemetry[-_.]|OTEL_|traceparent|trace[ _]id|tracing", re.I),
}
# Every project's benchmark runs the same baselines, one of them a bare relay on aiohttp: where
# they are defined, installed and described, a project names aiohttp whatever its transport.
BASELINE_PARTS = {
    "benchmarks/baselines.py": re.compile(r".*", re.S),
    "benchmarks/bench.py": re.compile(r".*", re.S),
    "benchmarks/report.py": re.compile(r".*", re.S),
    "benchmarks/sessions.py": re.compile(r".*", re.S),
    # The bench group, and the mypy section that lets a plain `uv sync` leave it out.
    "pyproject.toml": re.compile(
        r"^# The benchmarks, installed only on request.*?^\]$|^\[\[tool\.mypy\.overrides.*?= true$",
        re.S | re.M,
    ),
    "README.md": re.compile(r"^## Benchmark it$.*?(?=^## )", re.S | re.M),
}


def chosen(answers: Answers, prompt: str, value: str | bool) -> bool:
    return answers[prompt] in {value, "both"}


@pytest.mark.parametrize("answers", every_combination())
def test_files_are_exactly_those_of_the_choices(bake: Bake, answers: Answers) -> None:
    project = bake(**answers)
    expected = set(COMMON)
    for (prompt, value), files in BY_CHOICE.items():
        if chosen(answers, prompt, value):
            expected |= files
    assert project.files() == expected


@pytest.mark.parametrize("answers", every_combination())
def test_no_template_syntax_or_unchosen_variant_is_left(bake: Bake, answers: Answers) -> None:
    project = bake(**answers)
    for relative in project.files() - {"uv.lock"}:
        text = project.read(relative)
        assert not re.search(r"\{\{|\}\}|\{%|%\}|cookiecutter\.", text), relative
        for (prompt, value), pattern in MENTIONS.items():
            if not chosen(answers, prompt, value):
                checked = text
                if value == "aiohttp" and relative in BASELINE_PARTS:
                    checked = BASELINE_PARTS[relative].sub("", text)
                assert not pattern.search(checked), (
                    f"{relative} mentions {prompt}={value}: {pattern.search(checked)}"
                )


@pytest.mark.parametrize("answers", every_combination())
def test_lock_file_holds_the_chosen_packages(bake: Bake, answers: Answers) -> None:
    lock = bake(**answers).read("uv.lock")
    assert f'name = "{answers["httpx_package"]}"' in lock
    # A dependency of the service only with its transport; every project's benchmark installs
    # aiohttp too, but in its `bench` group, under another specifier.
    runtime_aiohttp = '{ name = "aiohttp", specifier = ">=3.14,<3.15" }' in lock
    assert runtime_aiohttp is (answers["http_transport"] == "aiohttp")
    assert ('name = "prometheus-client"' in lock) is answers["metrics"]
    assert ('name = "opentelemetry-sdk"' in lock) is answers["tracing"]


def test_answers_with_quotes_are_kept_as_plain_data(bake: Bake) -> None:
    project = bake(
        project_name="O'Brien's <Relay> & Co",
        project_slug="ops-relay",
        package_name="ops_relay",
        description='Says "hi" \\ and <b> else',
        author_name="O'Brien",
    )
    assert 'description = "Says \\"hi\\" \\\\ and \\u003cb\\u003e else"' in project.read("pyproject.toml")
    app = project.read("src/ops_relay/app.py")
    assert 'title="O\\u0027Brien\\u0027s \\u003cRelay\\u003e \\u0026 Co"' in app
    project.uv("run", "--no-dev", "python", "-c", "import ops_relay.settings")
