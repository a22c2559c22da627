"""The HTTP protocol the service runs under: uvicorn's httptools protocol, with one fix.

httptools reports the trailer fields of a chunked request body through the same callback as the
headers, and uvicorn appends them to the request's header list, where a relay would pass them on
as headers. This protocol gives the app the header list as it stood when the headers ended, so
trailers are dropped. The image runs the service with it (`--http` in the Dockerfile's `CMD`),
and so do the tests and the benchmark.
"""

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, minus trailers posing as headers."""

    def on_headers_complete(self) -> None:
        # A copy for the app; trailer fields still go to the list this protocol appends to.
        self.scope["headers"] = list(self.headers)
        super().on_headers_complete()
