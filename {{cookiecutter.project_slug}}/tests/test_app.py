"""The app's life: settings in, one shared client opened at start-up and closed at shutdown."""

import os
import subprocess
from pathlib import Path

{{ cookiecutter.__httpx_import }}
import pytest
import uvicorn

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.settings import Settings, load_settings, status_codes

from tests.servers import SERVICE_COMMAND, relay_settings


def test_healthz(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz(client: httpx.Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


@pytest.mark.anyio
async def test_lifespan_opens_one_shared_client_and_closes_it(upstream: str) -> None:
    api = create_app(relay_settings(upstream, upstream_max_connections=7)).api
    async with api.router.lifespan_context(api) as state:
        assert state is not None
        client = state["upstream"]
        assert isinstance(client, httpx.AsyncClient)
        assert not client.is_closed
        assert str(client.base_url) == f"{upstream}/api/"
        assert (await client.get("status/200")).status_code == 200
    assert client.is_closed


def test_status_lists_are_read_with_spaces_and_kept_tidy() -> None:
    settings = Settings(upstream_retry_statuses=" 502, 503 ,", upstream_breaker_statuses="")
    assert settings.upstream_retry_statuses == "502,503"
    assert status_codes(settings.upstream_retry_statuses) == {502, 503}
    assert status_codes(settings.upstream_breaker_statuses) == frozenset()


def test_base_url_gets_a_trailing_slash() -> None:
    settings = Settings(upstream_base_url="https://api.example.com/v1")
    assert settings.upstream_base_url == "https://api.example.com/v1/"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("UPSTREAM_TIMEOUT", "-1"),
        ("UPSTREAM_MAX_CONNECTIONS", "many"),
        ("UPSTREAM_BASE_URL", "ftp://files.example.com"),
        ("UPSTREAM_BASE_URL", "https://user@evil.example.com"),
        ("LOG_FORMAT", "xml"),
        ("UPSTREAM_RETRY_STATUSES", "503,200"),
        ("UPSTREAM_BREAKER_STATUSES", "5xx"),
        ("UPSTREAM_BREAKER_FAILURE_RATIO", "50%"),
        ("UPSTREAM_BREAKER_FAILURE_RATIO", "2"),
        ("UPSTREAM_BREAKER_MIN_CALLS", "0"),
    ],
)
def test_invalid_setting_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    message = str(stopped.value.code)
    assert message.startswith(f"Invalid configuration: {variable}={value!r}: ")
    assert "\n" not in message


@pytest.mark.slow
def test_invalid_settings_stop_start_up_without_a_traceback() -> None:
    env = {**os.environ, "UPSTREAM_TIMEOUT": "soon"}
    result = subprocess.run(
        SERVICE_COMMAND,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Invalid configuration: UPSTREAM_TIMEOUT='soon'")
    assert "Traceback" not in result.stderr


def test_env_example_sets_every_setting_to_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parent.parent / ".env.example"
    lines = [line for line in example.read_text().splitlines() if line and line[0] != "#"]
    names = {line.split("=", 1)[0] for line in lines}
    assert names == {name.upper() for name in Settings.model_fields}
    for name in names:
        monkeypatch.delenv(name, raising=False)
    assert Settings(_env_file=example) == Settings(_env_file=None)  # type: ignore[call-arg]


def test_idle_connections_are_let_go_before_a_uvicorn_upstream_would_close_them() -> None:
    """A request sent just as the upstream closes its idle connection fails, and one with a
    streamed body cannot be sent again: the pool drops the connection first."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.upstream_keepalive_expiry < uvicorn.Config("main:app").timeout_keep_alive
