"""Caller authentication: with `SERVICE_API_KEYS` set, callers present one of the keys.

Every endpoint but the probes{{ ', the metrics' if cookiecutter.metrics }} and the API docs then needs
`Authorization: Bearer <key>`. The presented key is compared with every configured key in
constant time, so how long a refusal takes says nothing about how close a guess came.
"""

import hmac

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

{% if cookiecutter.metrics -%}
# Paths anyone may reach: the orchestrator's probes, the metrics, and the API's description.
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
{%- else -%}
# Paths anyone may reach: the orchestrator's probes, and the API's description.
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
{%- endif %}


class CallerKeys:
    """Answer 401 with `WWW-Authenticate: Bearer` and a JSON `detail` to a caller without a key."""

    def __init__(self, app: ASGIApp, keys: list[bytes]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self.admits(scope):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"detail": "a valid API key is required: send Authorization: Bearer <key>"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

    def admits(self, scope: Scope) -> bool:
        """Whether the request carries exactly one `Authorization: Bearer <one of the keys>`."""
        values = [value for name, value in scope["headers"] if name.lower() == b"authorization"]
        if len(values) != 1:
            return False
        scheme, _, presented = values[0].strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        presented = presented.strip()
        # Every key is compared, whichever matches: no early exit to time.
        matches = [hmac.compare_digest(presented, key) for key in self.keys]
        return any(matches)
