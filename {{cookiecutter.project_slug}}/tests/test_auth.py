"""Credentials: callers' keys (`SERVICE_API_KEYS`) and the upstream's (`UPSTREAM_API_KEY`).

A caller needs one of the service's keys; the upstream gets the service's own credential, and
never the caller's key. Neither secret is ever shown: not in a setting's repr, an error, or a
log line.
"""

from collections.abc import Iterator

{{ cookiecutter.__httpx_import }}
import pytest

from {{ cookiecutter.package_name }}.settings import load_settings

from tests.servers import collect_logs, relay_settings, serve_relay
from tests.wire import RawUpstream, key, send

CALLER_KEYS = "first-caller-key, second-caller-key"
UPSTREAM_KEY = "upstream-secret-value"


@pytest.fixture(scope="module")
def guarded(raw_upstream: RawUpstream) -> Iterator[str]:
    """A relay that asks callers for a key and sends the upstream its own credential."""
    settings = relay_settings(
        raw_upstream.url, service_api_keys=CALLER_KEYS, upstream_api_key=UPSTREAM_KEY
    )
    with serve_relay(settings) as url:
        yield url


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", "Basic Zmlyc3QtY2FsbGVyLWtleQ==", "Bearer", "first-caller-key"],
    ids=["none", "wrong-key", "basic", "empty", "no-scheme"],
)
def test_a_caller_without_a_valid_key_gets_401(
    guarded: str, prefix: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for path in [f"{prefix}/anything", "/items/1"]:
        response = httpx.get(guarded + path, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "valid API key" in response.json()["detail"]


def test_probes_and_api_docs_need_no_key(guarded: str) -> None:
    pages = ["/openapi.json", "/docs", "/redoc", "/docs-assets/swagger-init.js"]
    for path in ["/healthz", "/readyz", *pages]:
        assert httpx.get(guarded + path).status_code == 200, path


@pytest.mark.parametrize("caller_key", ["first-caller-key", "second-caller-key"])
def test_a_callers_key_admits_it_and_goes_no_further_than_the_service(
    guarded: str, raw_upstream: RawUpstream, prefix: str, caller_key: str
) -> None:
    name = key()
    response = send(guarded, f"{prefix}/{name}", b"Authorization: Bearer " + caller_key.encode())
    assert response.status == 200, response.raw
    request = raw_upstream.received_once(name)
    # The service's credential replaces the caller's key: one Authorization, never the key.
    assert request.values(b"authorization") == [f"Bearer {UPSTREAM_KEY}".encode()]
    assert caller_key.encode() not in request.raw


def test_the_upstream_credential_can_go_in_a_header_of_its_own(
    raw_upstream: RawUpstream, prefix: str
) -> None:
    settings = relay_settings(
        raw_upstream.url,
        upstream_api_key=UPSTREAM_KEY,
        upstream_api_key_header="X-Api-Key",
        allow_anonymous_callers=True,
    )
    name = key()
    with serve_relay(settings) as url:
        response = send(url, f"{prefix}/{name}", b"X-Api-Key: caller-guess")
    assert response.status == 200, response.raw
    assert raw_upstream.received_once(name).values(b"x-api-key") == [UPSTREAM_KEY.encode()]


def test_a_failed_exchange_shows_no_secret_in_its_answer_or_the_log(
    guarded: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    with collect_logs() as collected:
        path = raw_upstream.script(key(), b"not HTTP at all\r\n\r\n", close=True)
        response = send(guarded, f"{prefix}/{path}", b"Authorization: Bearer first-caller-key")
    assert response.status == 502, response.raw
    logged = collected.text()
    assert "upstream failure" in logged
    for secret in [UPSTREAM_KEY, "first-caller-key"]:
        assert secret.encode() not in response.raw
        assert secret not in logged


def test_an_upstream_key_without_caller_keys_stops_start_up_naming_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UPSTREAM_API_KEY", UPSTREAM_KEY)
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    message = str(stopped.value)
    assert "UPSTREAM_API_KEY" in message
    assert "SERVICE_API_KEYS" in message
    assert UPSTREAM_KEY not in message
    monkeypatch.setenv("ALLOW_ANONYMOUS_CALLERS", "true")
    assert load_settings().upstream_api_key is not None


def test_secrets_are_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = relay_settings(
        "http://upstream", upstream_api_key=UPSTREAM_KEY, service_api_keys=CALLER_KEYS
    )
    assert UPSTREAM_KEY not in repr(settings)
    assert "first-caller-key" not in repr(settings)
    # An invalid secret is named, not quoted.
    monkeypatch.setenv("UPSTREAM_API_KEY", "caf\u00e9-secret")
    monkeypatch.setenv("SERVICE_API_KEYS", CALLER_KEYS)
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    assert "UPSTREAM_API_KEY=(hidden)" in str(stopped.value)
    assert "secret" not in str(stopped.value).replace("UPSTREAM_API_KEY", "")


def test_caller_keys_that_hold_no_key_stop_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_API_KEYS", " , ,")
    with pytest.raises(SystemExit, match="SERVICE_API_KEYS holds no key"):
        load_settings()
