"""Service settings, read once from the environment (and an optional `.env` file) at start-up."""

import ipaddress
import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict


def _check_base_url(value: str) -> str:
    """Accept only an absolute http(s) URL with a host, and give it a trailing slash.

    The relay appends the caller's path to this URL's path, so the slash keeps the base path
    a whole segment: `https://api.example.com/v1` serves `/v1/...`, never `/v1evil`.
    """
    scheme, sep, rest = value.partition("://")
    host = rest.split("/", 1)[0]
    if scheme.lower() not in {"http", "https"} or not sep or not host:
        raise ValueError("must be an absolute http:// or https:// URL with a host")
    if "@" in host or any(char in rest for char in "?#\\ \t\r\n"):
        raise ValueError("must not hold user info, a query, a fragment, spaces or backslashes")
    return value if value.endswith("/") else value + "/"


BaseUrl = Annotated[str, AfterValidator(_check_base_url)]
# A header name (an RFC 9110 token), and a value that cannot end a header line.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]+")


def _check_header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError("must be an HTTP header name")
    return value


def _check_secret(value: SecretStr | None) -> SecretStr | None:
    """Unset when empty; otherwise printable ASCII, as a header value must be."""
    if value is None or not value.get_secret_value().strip():
        return None
    if not _HEADER_VALUE.fullmatch(value.get_secret_value()):
        raise ValueError("must be printable ASCII")
    return value


def _check_addresses(value: str) -> str:
    """Comma-separated IP addresses or networks, or `*` for any; empty for none."""
    for part in value.split(","):
        if part.strip() and part.strip() != "*":
            try:
                ipaddress.ip_network(part.strip())
            except ValueError:
                raise ValueError("must be IP addresses or networks, or *") from None
    return value.strip()


def status_codes(value: str) -> frozenset[int]:
    """The HTTP statuses in a comma-separated list: "502, 503" is {502, 503}."""
    return frozenset(int(part) for part in value.split(",") if part.strip())


def _check_statuses(value: str) -> str:
    """Comma-separated error statuses, 400 to 599; empty for none."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not all(part.isdigit() and 400 <= int(part) <= 599 for part in parts):
        raise ValueError("must be HTTP statuses from 400 to 599, comma-separated")
    return ",".join(parts)


Secret = Annotated[SecretStr | None, AfterValidator(_check_secret)]
Statuses = Annotated[str, AfterValidator(_check_statuses)]
_SECRETS = frozenset({"upstream_api_key", "service_api_keys"})


class Settings(BaseSettings):
    """Every knob of the service. Environment variable names are the field names in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    upstream_base_url: BaseUrl = "{{ cookiecutter.upstream_base_url }}"
    # Seconds: the longest wait for any one step (sending, the response starting, the next chunk).
{%- if cookiecutter.response_mode != "stream" %}
    # A buffered exchange also gets it as an overall deadline.
{%- endif %}
    upstream_timeout: float = Field(default=30.0, gt=0)
    upstream_connect_timeout: float = Field(default=5.0, gt=0)
    # Seconds a request waits for a free pooled connection before the caller gets 503.
    upstream_pool_timeout: float = Field(default=5.0, gt=0)
    upstream_max_connections: int = Field(default=100, ge=1)
    # Seconds a caller's body may pause between two pieces, and may take in all, before the
    # caller gets 408.
    client_body_timeout: float = Field(default=60.0, gt=0)
    client_body_deadline: float = Field(default=300.0, gt=0)
{%- if cookiecutter.response_mode != "buffered" %}
    # Bytes of a streamed request's body read before an upstream connection is taken (nginx's
    # `proxy_request_buffering`): a body up to this size is sent whole, and can be retried.
    client_body_buffer_bytes: int = Field(default=1024 * 1024, ge=0)
{%- endif %}
    # Retries of a failed upstream call, where it is safe (docs/relay.md); 0 for none.
    upstream_retries: int = Field(default=2, ge=0)
    # Upstream statuses retried too (from 429, 502, 503, 504), comma-separated; none by default.
    upstream_retry_statuses: Statuses = ""
    # Seconds of jittered backoff before the first retry, doubling for each next one.
    upstream_retry_backoff: float = Field(default=0.025, ge=0)
    # The longest `Retry-After` the service waits out itself; longer ones go back to the caller.
    upstream_retry_after_max: float = Field(default=2.0, ge=0)
    # Retries, as a share of calls: a failing upstream sees at most this much extra load.
    upstream_retry_budget: float = Field(default=0.2, ge=0)
    # The circuit breaker (docs/relay.md): it opens when this share of the upstream calls of
    # the last window's seconds failed, once the window holds the minimum number of calls; it
    # stays open for the cool-off's seconds, and closes when the trial calls all succeed.
    upstream_breaker: bool = True
    upstream_breaker_failure_ratio: float = Field(default=0.5, gt=0, le=1)
    upstream_breaker_min_calls: int = Field(default=20, ge=1)
    upstream_breaker_window: float = Field(default=10.0, gt=0)
    upstream_breaker_cooloff: float = Field(default=10.0, gt=0)
    upstream_breaker_trials: int = Field(default=3, ge=1)
    # Upstream statuses that count as failures for the breaker, comma-separated.
    upstream_breaker_statuses: Statuses = "502,503,504"
{%- if cookiecutter.http_transport == "native" %}
    upstream_max_keepalive_connections: int = Field(default=20, ge=0)
{%- endif %}
    # Seconds an idle connection is kept: below the upstream's own keep-alive timeout, or a
    # request may go out on a connection the upstream is closing at that moment and fail
    # (uvicorn, Node.js and Apache close after 5 s).
    upstream_keepalive_expiry: float = Field(default=4.0, ge=0)
{%- if cookiecutter.http_transport == "native" %}
    # Speak HTTP/2 to an upstream that offers it in the TLS handshake (HTTP/1.1 otherwise).
    upstream_http2: bool = False
{%- endif %}
{%- if cookiecutter.response_mode != "stream" %}
    # The largest body, in bytes, that a buffered exchange holds in memory (request or response).
    buffered_max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
{%- endif %}
    # WebSocket sessions open at once (each holds an upstream connection of its own, apart
    # from the pool's), the largest message either side may send (larger ones end the session
    # with 1009), and the seconds between pings to a quiet peer and for its pong: a peer that
    # does not answer is gone, and its session ends.
    websocket_max_sessions: int = Field(default=1000, ge=1)
    websocket_max_message_bytes: int = Field(default=1024 * 1024, ge=1024)
    websocket_ping_interval: float = Field(default=20.0, gt=0)
    websocket_ping_timeout: float = Field(default=20.0, gt=0)
    # The largest total size of a request's headers (larger requests get 431), and of an
    # upstream response's (larger responses become 502).
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    # Add X-Forwarded-For, -Proto and -Host to upstream requests.
    forwarded_headers: bool = True
    # Pass request headers whose names hold "_" (dropped by default, as nginx does).
    underscores_in_headers: bool = False
    # Point Location and Content-Location under the upstream base URL at the relay instead.
    rewrite_location: bool = True
    # Where the server listens (`server.py`): 0.0.0.0 in the image, to be reached from outside.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Server processes, each with its own pool (docs/deploy.md: one per container is best).
    web_concurrency: int = Field(default=1, ge=1)
    # Proxies whose X-Forwarded-For and -Proto are believed (IPs or networks, or *); none when
    # empty, so no caller can claim another address.
    forwarded_allow_ips: Annotated[str, AfterValidator(_check_addresses)] = ""
    # Seconds requests in flight get to finish after SIGTERM, before they are cut off.
    shutdown_timeout: float = Field(default=30.0, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["plain", "json"] = "plain"
    # A credential for the upstream, added to each request the service sends it. In the
    # `Authorization` header it goes as `Bearer <key>`; in any other header, as it is.
    upstream_api_key: Secret = None
    upstream_api_key_header: Annotated[str, AfterValidator(_check_header_name)] = "Authorization"
    # Keys callers must present (`Authorization: Bearer <key>`), comma-separated; unset, none.
    service_api_keys: Secret = None
    # Say so to relay with UPSTREAM_API_KEY for callers who present no key.
    allow_anonymous_callers: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Refuse settings that contradict one another, or that would lend the upstream
        credential to anyone who asks."""
        if self.service_api_keys and not self.caller_keys():
            raise ValueError("SERVICE_API_KEYS holds no key: give one or more, comma-separated")
        if self.upstream_api_key and not self.service_api_keys and not self.allow_anonymous_callers:
            raise ValueError(
                "UPSTREAM_API_KEY is set without SERVICE_API_KEYS: any caller would use the "
                "upstream credential (set SERVICE_API_KEYS, or ALLOW_ANONYMOUS_CALLERS=true)"
            )
        return self

    def caller_keys(self) -> list[bytes]:
        """The keys callers may present; empty when the service is open to all."""
        if self.service_api_keys is None:
            return []
        keys = self.service_api_keys.get_secret_value().split(",")
        return [key.strip().encode() for key in keys if key.strip()]

    def upstream_credential(self) -> dict[str, str]:
        """The header that carries `UPSTREAM_API_KEY` to the upstream; empty when unset."""
        if self.upstream_api_key is None:
            return {}
        key = self.upstream_api_key.get_secret_value().strip()
        if self.upstream_api_key_header.lower() == "authorization":
            key = f"Bearer {key}"
        return {self.upstream_api_key_header: key}

    def upstream_credential_header(self) -> tuple[bytes, bytes] | None:
        """The same, as the raw (lower-case name, value) pair the relay sends."""
        for name, value in self.upstream_credential().items():
            return name.lower().encode("ascii"), value.encode("ascii")
        return None


def load_settings() -> Settings:
    """Read the settings, or stop the process with one line per invalid variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise SystemExit(f"Invalid configuration: {problems}") from None


def _problem(error: ErrorDetails) -> str:
    """One invalid setting, named as its environment variable; a secret's value is not shown."""
    if not error["loc"]:
        # A rule about several settings: its message names them.
        return error["msg"].removeprefix("Value error, ")
    name = str(error["loc"][0])
    shown = "(hidden)" if name in _SECRETS else repr(error.get("input"))
    return f"{name.upper()}={shown}: {error['msg']}"
