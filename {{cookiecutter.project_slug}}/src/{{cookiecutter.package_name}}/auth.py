"""Caller authentication: with `SERVICE_API_KEYS` set, callers present one of the keys.

Every endpoint but the probes{{ ', the metrics' if cookiecutter.metrics }} and the API docs then needs
`Authorization: Bearer <key>`; `service.py` checks each request with `admits`. The presented key
is compared with every configured key in constant time, so how long a refusal takes says nothing
about how close a guess came.
"""

import hmac

from {{ cookiecutter.package_name }}.apidocs import ASSETS

{% if cookiecutter.metrics -%}
# Paths anyone may reach: the orchestrator's probes, the metrics, and the API's description.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json"})
{%- else -%}
# Paths anyone may reach: the orchestrator's probes, and the API's description.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/redoc", "/openapi.json"})
{%- endif %}
# The scripts and styles of the API's pages.
OPEN_PREFIX = ASSETS + "/"


def needs_key(path: str) -> bool:
    """Whether a request for `path` must present a key (when keys are set at all)."""
    return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIX)


def admits(headers: list[tuple[bytes, bytes]], keys: list[bytes]) -> bool:
    """Whether the request carries exactly one `Authorization: Bearer <one of the keys>`."""
    values = [value for name, value in headers if name == b"authorization"]
    if len(values) != 1:
        return False
    scheme, _, presented = values[0].strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    presented = presented.strip()
    # Every key is compared, whichever matches: no early exit to time.
    matches = [hmac.compare_digest(presented, key) for key in keys]
    return any(matches)
