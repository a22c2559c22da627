"""No caller can make the relay reach another host, or a path outside the upstream base path."""

from urllib.parse import quote, unquote_to_bytes

{{ cookiecutter.__httpx_import }}
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from {{ cookiecutter.package_name }}.errors import InvalidTarget
from {{ cookiecutter.package_name }}.urls import upstream_target

from tests.upstream_app import Recorder
from tests.wire import send

ORIGIN = "http://upstream.test:8080"
BASE = b"/api/v1/"


def url(path: bytes, query: bytes = b"") -> httpx.URL:
    """The URL the relay sends for `path` and `query`, as a client would read it."""
    return httpx.URL(ORIGIN + upstream_target(BASE, path, query).decode("ascii"))


def test_path_and_query_are_appended_to_the_base_path_as_sent() -> None:
    target = upstream_target(BASE, b"users/group%2Fproject;v=1", b"q=a%20b&x=%zz")
    assert target == b"/api/v1/users/group%2Fproject;v=1?q=a%20b&x=%zz"


@pytest.mark.parametrize(
    "path",
    [
        b"..",
        b"../secret",
        b"a/../../secret",
        b"a/./b",
        b"..;/secret",
        b".;x/secret",
        b"%2e%2e/secret",
        b"%2E%2E%3B/secret",
        b"a%2F..%2Fsecret",
        b"%252e%252e/secret",
        b"/evil.test/x",
        b"a\\..\\b",
        b"a%5c..%5cb",
        b"a\r\nHost: evil",
        b"a%0d%0aHost:%20evil",
        b"a\x00b",
        b"a%00b",
        "é".encode(),
        b"a{b}",
        b"a<b>",
    ],
)
def test_dangerous_paths_are_refused(path: bytes) -> None:
    with pytest.raises(InvalidTarget):
        upstream_target(BASE, path, b"")


@pytest.mark.parametrize(
    "path",
    [b"http://evil.test/x", b"user@evil.test/x", b"a%20b/%C3%A9", b"%3Fx=1%23frag", b"a..b/.x"],
)
def test_url_like_paths_stay_plain_path_segments(path: bytes) -> None:
    sent = url(path)
    assert (sent.host, sent.port, sent.raw_path) == ("upstream.test", 8080, b"/api/v1/" + path)


@pytest.mark.parametrize(
    "query", [b"a=1#frag", b"a=1 b", b"a=\r\n", "a=\u00e9".encode(), b"a=<b>", b'a="b"']
)
def test_queries_that_need_encoding_are_refused(query: bytes) -> None:
    with pytest.raises(InvalidTarget):
        upstream_target(BASE, b"x", query)


def dot_segments(path: bytes) -> set[bytes]:
    """The `.` and `..` segments of a path, `;` parameters counted as part of a segment."""
    return {segment.split(b";")[0] for segment in path.split(b"/")} & {b".", b".."}


@given(path=st.binary(), query=st.binary(max_size=40))
def test_any_target_stays_under_the_base_path(path: bytes, query: bytes) -> None:
    try:
        sent = url(path, query)
    except InvalidTarget:
        return
    assert (sent.scheme, sent.host, sent.port) == ("http", "upstream.test", 8080)
    assert sent.raw_path.startswith(b"/api/v1/" + path)
    # Even an upstream that decodes the path once or twice never sees a dot segment.
    once = unquote_to_bytes(path)
    for decoded in (path, once, unquote_to_bytes(once)):
        assert not dot_segments(decoded)
        assert b"\\" not in decoded


@given(path=st.text(min_size=1), safe=st.sampled_from(["", "/", "/.%;", "/:@\\"]))
def test_any_encoded_path_stays_under_the_base_path(path: str, safe: str) -> None:
    raw = quote(path, safe=safe).encode()
    try:
        target = upstream_target(BASE, raw, b"")
    except InvalidTarget:
        return
    assert target == b"/api/v1/" + raw
    assert not dot_segments(unquote_to_bytes(unquote_to_bytes(raw)))


@pytest.mark.parametrize(
    "target",
    [
        "/{prefix}/../secret",
        "/{prefix}/..%2fsecret",
        "/{prefix}/%2e%2e/secret",
        "/{prefix}/%2E%2E%2Fsecret",
        "/{prefix}/a/%2e%2e/%2e%2e/secret",
        "/{prefix}//evil.test/x",
        "/{prefix}/http://evil.test/x",
        "/{prefix}/%5c..%5csecret",
        "/{prefix}/..%5csecret",
        "/{prefix}/a%0d%0aX-Injected:%201",
        "/{prefix}/@evil.test/x",
        "/{prefix}/%252e%252e/secret",
        "/{prefix}/..;/secret",
        "/{prefix}/..%3B/secret",
        "/{prefix}/a/.;/..;/secret",
    ],
)
def test_hostile_targets_never_leave_the_base_path(
    relay: str, recorder: Recorder, prefix: str, target: str
) -> None:
    before = len(recorder.paths)
    response = send(relay, target.format(prefix=prefix.strip("/")))
    assert response.status in {200, 400, 404}, response.raw[:200]
    assert recorder.paths[before:] == []


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.text(min_size=1), safe=st.sampled_from(["", "/", "/.%", "/:@\\"]))
def test_any_path_sent_to_the_relay_stays_under_the_base_path(
    relay: str, recorder: Recorder, prefix: str, path: str, safe: str
) -> None:
    before = len(recorder.paths)
    target = f"{prefix}/" + quote(path, safe=safe)
    response = send(relay, target)
    assert response.status < 500, response.raw[:200]
    assert recorder.paths[before:] == []
