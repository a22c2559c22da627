"""Turn the caller's path and query into an upstream URL that cannot leave the base URL."""

from urllib.parse import quote

import {{ cookiecutter.httpx_package }}

# Characters a path segment may carry unencoded (RFC 3986 pchar, without "%").
_SEGMENT_SAFE = "-._~!$&'()*+,;=:@"


class InvalidTarget(ValueError):
    """The caller's path or query could reach outside the upstream base URL."""


def upstream_url(base_url: {{ cookiecutter.httpx_package }}.URL, path: str, query: bytes) -> {{ cookiecutter.httpx_package }}.URL:
    """Append a decoded relay path and a raw query string to the base URL, or refuse them.

    The path is never parsed as a URL: every segment is checked and percent-encoded again, so
    `http://evil/`, `//evil`, `..`, `%2e%2e` and backslashes cannot change the host or climb
    above the base path.
    """
    segments = path.split("/")
    for segment in segments:
        if segment in {".", ".."}:
            raise InvalidTarget("the path must not contain '.' or '..' segments")
        if "\\" in segment or any(ord(char) < 0x20 or ord(char) == 0x7F for char in segment):
            raise InvalidTarget("the path must not contain backslashes or control characters")
    if path.startswith("/"):
        raise InvalidTarget("the path must not start with '/'")
    if any(byte < 0x21 or byte > 0x7E or byte == ord("#") for byte in query):
        raise InvalidTarget("the query string holds characters that must be percent-encoded")
    encoded = "/".join(quote(segment, safe=_SEGMENT_SAFE) for segment in segments)
    raw_path = base_url.raw_path + encoded.encode("ascii")
    if query:
        raw_path += b"?" + query
    return base_url.copy_with(raw_path=raw_path)
