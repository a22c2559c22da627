"""Service settings, read once from the environment (and an optional `.env` file) at start-up."""

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError
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
    # Seconds a caller's body may pause between two pieces before the caller gets 408.
    client_body_timeout: float = Field(default=60.0, gt=0)
    upstream_max_keepalive_connections: int = Field(default=20, ge=0)
    upstream_keepalive_expiry: float = Field(default=5.0, ge=0)
{%- if cookiecutter.response_mode != "stream" %}
    # The largest body, in bytes, that a buffered exchange holds in memory (request or response).
    buffered_max_bytes: int = Field(default=10 * 1024 * 1024, ge=0)
{%- endif %}
    # The largest total size of a request's headers (larger requests get 431), and of an
    # upstream response's (larger responses become 502).
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    # Add X-Forwarded-For, -Proto and -Host to upstream requests.
    forwarded_headers: bool = True
    # Pass request headers whose names hold "_" (dropped by default, as nginx does).
    underscores_in_headers: bool = False
    # Point Location and Content-Location under the upstream base URL at the relay instead.
    rewrite_location: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["plain", "json"] = "plain"


def load_settings() -> Settings:
    """Read the settings, or stop the process with one line per invalid variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'_'.join(map(str, error['loc'])).upper()}={error.get('input')!r}: {error['msg']}"
            for error in exc.errors()
        )
        raise SystemExit(f"Invalid configuration: {problems}") from None
