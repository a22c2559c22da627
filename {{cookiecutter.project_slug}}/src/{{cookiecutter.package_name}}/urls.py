"""Turn the caller's raw path and query into an upstream target that cannot leave the base path.

Both go upstream byte for byte, as the caller sent them: `%2F` stays `%2F`, and a signed query
keeps its signature. The checks run on the decoded form, so that no spelling of `..` climbs
above the base path, whatever the upstream decodes.
"""

import re
from urllib.parse import unquote_to_bytes

from {{ cookiecutter.package_name }}.errors import InvalidTarget

# A raw path or query must already be percent-encoded: visible ASCII only, no fragment, and
# none of the characters RFC 3986 leaves out of URLs, which the client would encode on its way.
_UNENCODED_BYTE = re.compile(rb'[^\x21-\x7e]|[#"<>`{}]')
# What a path must not hold once decoded: control characters and backslashes.
_UNSAFE_DECODED_BYTE = re.compile(rb"[\x00-\x1f\x7f\\]")


def _has_dot_segment(path: bytes) -> bool:
    """Whether a segment is `.` or `..`, counting `;` parameters as part of it (`..;x` is `..`)."""
    return any(segment.split(b";", 1)[0] in {b".", b".."} for segment in path.split(b"/"))


def upstream_target(base_path: bytes, raw_path: bytes, query: bytes) -> bytes:
    """The caller's raw relay path and raw query string under the base path, or refused.

    The path is never parsed as a URL, so `http://evil/` and `@evil` stay plain segments. It is
    refused if it starts with `/` (`//evil`), or if, decoded once or twice, it holds a dot
    segment, a backslash or a control character (`..`, `%2e%2e`, `%252e%252e`, `a%2F..`).
    """
    if _UNENCODED_BYTE.search(raw_path) or _UNENCODED_BYTE.search(query):
        raise InvalidTarget("the path and query must be percent-encoded, without a fragment")
    if raw_path.startswith(b"/"):
        raise InvalidTarget("the path must not start with '/'")
    # Most paths have nothing to decode, and are checked once, not three times.
    once = unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path
    twice = unquote_to_bytes(once) if b"%" in once else once
    if any(_has_dot_segment(decoded) for decoded in {raw_path, once, twice}):
        raise InvalidTarget("the path must not contain '.' or '..' segments")
    if _UNSAFE_DECODED_BYTE.search(twice):
        raise InvalidTarget("the path must not contain backslashes or control characters")
    target = base_path + raw_path
    return target + b"?" + query if query else target
