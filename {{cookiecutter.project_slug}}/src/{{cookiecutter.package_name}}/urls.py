"""Turn the caller's path and query into an upstream URL that cannot leave the base URL."""

import re
from urllib.parse import quote

import {{ cookiecutter.httpx_package }}

# Characters a path may carry unencoded: RFC 3986 pchar without "%", and the separator "/".
_PATH_SAFE = "-._~!$&'()*+,;=:@/"
_DOT_SEGMENT = re.compile(r"(?:^|/)\.\.?(?:/|$)")
_UNSAFE_PATH_CHAR = re.compile(r"[\x00-\x1f\x7f\\]")
# A raw query must already be percent-encoded: visible ASCII only, and no fragment.
_UNSAFE_QUERY_BYTE = re.compile(rb"[^\x21-\x7e]|#")


class InvalidTarget(ValueError):
    """The caller's path or query could reach outside the upstream base URL."""


def upstream_url(base_url: {{ cookiecutter.httpx_package }}.URL, path: str, query: bytes) -> {{ cookiecutter.httpx_package }}.URL:
    """Append a decoded relay path and a raw query string to the base URL, or refuse them.

    The path is never parsed as a URL: it is checked, then percent-encoded again, so
    `http://evil/`, `//evil`, `..`, `%2e%2e` and backslashes cannot change the host or climb
    above the base path.
    """
    if _DOT_SEGMENT.search(path):
        raise InvalidTarget("the path must not contain '.' or '..' segments")
    if _UNSAFE_PATH_CHAR.search(path):
        raise InvalidTarget("the path must not contain backslashes or control characters")
    if path.startswith("/"):
        raise InvalidTarget("the path must not start with '/'")
    if _UNSAFE_QUERY_BYTE.search(query):
        raise InvalidTarget("the query string holds characters that must be percent-encoded")
    raw_path = base_url.raw_path + quote(path, safe=_PATH_SAFE).encode("ascii")
    if query:
        raw_path += b"?" + query
    return base_url.copy_with(raw_path=raw_path)
