"""The hooks' own logic, fast and without rendering whole projects."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from cookiecutter.environment import StrictEnvironment

from tests.projects import CHOICES, FLAGS, TEMPLATE

GOOD = {
    "project_name": "Upstream Relay",
    "project_slug": "upstream-relay",
    "package_name": "upstream_relay",
    "description": "Relays requests.",
    "author_name": "Ada Lovelace",
    "author_email": "ada@example.com",
    "upstream_base_url": "https://api.example.com/v1",
    "response_mode": "both",
    "python_version": "3.13",
    "httpx_package": "httpx2",
    "http_transport": "aiohttp",
    "metrics": True,
    "tracing": True,
}


def load_hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, TEMPLATE / "hooks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pre_gen = load_hook("pre_gen_project")
post_gen = load_hook("post_gen_project")


def test_good_answers_pass() -> None:
    assert pre_gen.problems(GOOD) == []


def test_hook_knows_every_choice_that_cookiecutter_json_offers() -> None:
    assert {field: sorted(values) for field, values in pre_gen.CHOICES.items()} == {
        field: sorted(values) for field, values in CHOICES.items()
    }
    assert list(pre_gen.FLAGS) == FLAGS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("project_name", ""),
        ("project_name", "two\nlines"),
        ("project_slug", "Upstream Relay"),
        ("project_slug", "../escape"),
        ("project_slug", "relay-"),
        ("package_name", "class"),
        ("package_name", "match"),
        ("package_name", "9lives"),
        ("package_name", "my-relay"),
        ("package_name", "fastapi"),
        ("package_name", "tests"),
        ("author_email", "not an email"),
        ("description", "x" * 201),
        ("upstream_base_url", "ftp://files.example.com"),
        ("upstream_base_url", "example.com"),
        ("upstream_base_url", "https://"),
        ("upstream_base_url", "https://user:pw@api.example.com"),
        ("upstream_base_url", "https://api.example.com/?q=1"),
        ("upstream_base_url", "https://api.example.com:99999"),
        ("upstream_base_url", 'https://api.example.com/"quoted"'),
        ("response_mode", "sometimes"),
        ("python_version", "2.7"),
        ("metrics", "maybe"),
        ("tracing", None),
    ],
)
def test_bad_answer_is_named_with_its_value(field: str, value: object) -> None:
    (problem,) = pre_gen.problems({**GOOD, field: value})
    assert problem.startswith(f"{field}={value!r}: ")


@pytest.mark.parametrize(
    ("answers", "removed"),
    [
        (
            {"response_mode": "both", "http_transport": "aiohttp"},
            {"src/upstream_relay/transport_native.py", "tests/test_http2.py"},
        ),
        (
            {"response_mode": "stream", "http_transport": "aiohttp"},
            {
                "src/upstream_relay/routes/buffered.py",
                "tests/test_buffered.py",
                "src/upstream_relay/transport_native.py",
                "tests/test_http2.py",
            },
        ),
        (
            {"response_mode": "buffered", "http_transport": "native"},
            {
                "src/upstream_relay/routes/stream.py",
                "tests/test_stream.py",
                "src/upstream_relay/transport_aiohttp.py",
            },
        ),
        (
            {"metrics": False, "tracing": False},
            {
                "src/upstream_relay/transport_native.py",
                "tests/test_http2.py",
                "src/upstream_relay/metrics.py",
                "tests/test_metrics.py",
                "tests/test_alerts.py",
                "deploy/prometheus/alerts.yml",
                "deploy/prometheus/alerts.test.yml",
                "deploy/kubernetes/prometheus-operator/kustomization.yaml",
                "deploy/kubernetes/prometheus-operator/prometheusrule.yaml",
                "src/upstream_relay/tracing.py",
                "tests/test_tracing.py",
            },
        ),
        (
            {"tracing": False},
            {
                "src/upstream_relay/transport_native.py",
                "tests/test_http2.py",
                "src/upstream_relay/tracing.py",
                "tests/test_tracing.py",
            },
        ),
    ],
    ids=["both-aiohttp", "stream-aiohttp", "buffered-native", "no-metrics-no-tracing", "no-tracing"],
)
def test_unchosen_files_follow_the_table(answers: dict[str, object], removed: set[str]) -> None:
    assert set(post_gen.unchosen_files({**GOOD, **answers})) == removed


def test_every_owned_file_exists_in_the_template() -> None:
    project = TEMPLATE / "{{cookiecutter.project_slug}}"
    for path in [*post_gen.OWNED_FILES, *post_gen.RENAMED_FILES]:
        assert (project / path.format(package_name="{{cookiecutter.package_name}}")).is_file(), path


@pytest.mark.parametrize("transport", ["aiohttp", "native"])
def test_the_chosen_transport_takes_the_common_name(tmp_path: Path, transport: str) -> None:
    answers = {**GOOD, "http_transport": transport}
    package = tmp_path / "src" / "upstream_relay"
    package.mkdir(parents=True)
    for name in ["transport_aiohttp.py", "transport_native.py"]:
        (package / name).write_text(name)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_http2.py").write_text("")
    post_gen.remove(tmp_path, post_gen.unchosen_files(answers))
    post_gen.rename_chosen(tmp_path, answers)
    assert [path.name for path in package.iterdir()] == ["transport.py"]
    assert (package / "transport.py").read_text() == f"transport_{transport}.py"


def test_removing_a_folders_last_file_removes_the_folder(tmp_path: Path) -> None:
    rules = tmp_path / "deploy" / "prometheus"
    rules.mkdir(parents=True)
    (rules / "alerts.yml").write_text("")
    (rules / "alerts.test.yml").write_text("")
    (tmp_path / "deploy" / "kept.yaml").write_text("")
    post_gen.remove(tmp_path, ["deploy/prometheus/alerts.yml", "deploy/prometheus/alerts.test.yml"])
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["deploy", "kept.yaml"]


HOSTILE = [
    '"""; import os; os.system("touch pwned"); """',
    "'''; raise SystemExit(0); '''",
    "\\\"); print('escaped') #",
    "{{ 7 * 7 }}",
    "</script><x onload=1>",
]


@pytest.mark.parametrize("hook", ["pre_gen_project", "post_gen_project"])
@pytest.mark.parametrize("value", HOSTILE)
def test_answers_reach_the_hooks_as_data(tmp_path: Path, hook: str, value: str) -> None:
    """Render a hook as cookiecutter does and check the answer comes back byte for byte."""
    source = (TEMPLATE / "hooks" / f"{hook}.py").read_text()
    rendered = (
        StrictEnvironment(context={}).from_string(source).render(cookiecutter={**GOOD, "description": value})
    )
    probe = (
        rendered.replace('if __name__ == "__main__":', 'if __name__ == "__main__" and False:')
        + "\nimport json\nprint(json.dumps(json.loads(ANSWERS_JSON)['description']))\n"
    )
    script = tmp_path / "hook.py"
    script.write_text(probe)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == json.dumps(value)
    assert not (tmp_path / "pwned").exists()


def test_next_steps_name_the_project_and_the_warning() -> None:
    text = post_gen.next_steps(GOOD, "uv.lock could not be written")
    assert "cd upstream-relay" in text
    assert "uv.lock could not be written" in text
    assert "uv run upstream-relay --reload" in text
