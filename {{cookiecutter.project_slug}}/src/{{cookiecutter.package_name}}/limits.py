"""Refuse requests whose headers are too large before any work is done for them.

uvicorn's httptools parser accepts headers of any size; a relay would pass them on and hold
them in memory, so the service sets its own bound.
"""

import json

from starlette.types import ASGIApp, Receive, Scope, Send


class HeaderSizeLimit:
    """Answer 431 with a JSON `detail` when the request's headers exceed `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.max_bytes:
                detail = f"the request headers are larger than the limit of {self.max_bytes} bytes"
                body = json.dumps({"detail": detail}).encode()
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(body)),
                ]
                await send({"type": "http.response.start", "status": 431, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
