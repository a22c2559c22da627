"""A failing upstream or a slow caller never becomes the service's outage.

Against an upstream that fails on purpose (`RawUpstream`: hangs up after reading a request,
never answers, answers 503, recovers), counting what it really received. Each test that depends
on the retry budget or the breaker runs a relay of its own: they keep state across requests.
"""

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

{{ cookiecutter.__httpx_import }}
import pytest

from {{ cookiecutter.package_name }}.upstream import Upstream

from tests.conftest import RELAY_PREFIXES
from tests.servers import relay_settings, serve_relay
from tests.wire import OK, RawUpstream, assert_json_error, key, send{{ ", stalled_body" if cookiecutter.response_mode != "buffered" }}

HANG_UP = b""  # in `Script.first`: read the request, then close without answering
# The retry budget and the breaker are the pool's: one relay endpoint is enough to test them.
PREFIX = RELAY_PREFIXES[0]
UNAVAILABLE = b"HTTP/1.1 503 Unavailable\r\nRetry-After: %s\r\nContent-Length: 4\r\n\r\nbusy"


@contextmanager
def relay_to(upstream: RawUpstream, **overrides: Any) -> Iterator[str]:
    """A relay of its own in front of `upstream`, with its own retry budget and breaker."""
    with serve_relay(relay_settings(upstream.url, **overrides)) as url:
        yield url


@pytest.fixture(scope="module")
def retrying_relay(raw_upstream: RawUpstream) -> Iterator[str]:
    """A relay with the default retry policy and no breaker, which these tests would open."""
    with relay_to(raw_upstream, upstream_breaker_failures=0) as url:
        yield url


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_an_idempotent_request_the_upstream_dropped_is_sent_again_byte_for_byte(
    retrying_relay: str, raw_upstream: RawUpstream, prefix: str, method: str
) -> None:
    name = key()
    target = f"{prefix}/{raw_upstream.script(name, OK, first=[HANG_UP])}"
    body = b"" if method == "GET" else bytes(range(256)) * 16
    response = send(retrying_relay, target, method=method, body=body)
    assert response.status == 200, response.raw
    first, second = raw_upstream.received(name)
    assert first.raw == second.raw
    assert second.body == body


def test_a_post_is_sent_again_only_with_an_idempotency_key(
    retrying_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    plain, keyed = key(), key()
    body = b'{"order": 1}'
    target = f"{prefix}/{raw_upstream.script(plain, OK, first=[HANG_UP])}"
    assert_json_error(send(retrying_relay, target, method="POST", body=body), 502)
    assert len(raw_upstream.received(plain)) == 1

    target = f"{prefix}/{raw_upstream.script(keyed, OK, first=[HANG_UP])}"
    response = send(retrying_relay, target, b"Idempotency-Key: k1", method="POST", body=body)
    assert response.status == 200, response.raw
    assert [request.body for request in raw_upstream.received(keyed)] == [body, body]
{%- if cookiecutter.response_mode != "buffered" %}


def test_a_body_streamed_upstream_is_never_sent_again(raw_upstream: RawUpstream) -> None:
    name = key()
    body = bytes(range(256)) * 64  # over the relay's read-ahead of 1 KiB: it streams
    with relay_to(raw_upstream, client_body_buffer_bytes=1024) as relay:
        target = f"/stream/{raw_upstream.script(name, OK, first=[HANG_UP])}"
        assert_json_error(send(relay, target, method="PUT", body=body), 502)
    assert len(raw_upstream.received(name)) == 1


def test_a_caller_that_stalls_a_streamed_body_does_not_count_against_the_upstream(
    raw_upstream: RawUpstream,
) -> None:
    """The upstream connection is taken and the body stalls: 408, and the breaker, which one
    failure would open, stays closed."""
    settings = {
        "client_body_buffer_bytes": 0,
        "client_body_timeout": 0.2,
        "upstream_breaker_failures": 1,
    }
    with relay_to(raw_upstream, **settings) as relay:
        assert stalled_body(relay, f"/stream/{key()}").startswith(b"HTTP/1.1 408 ")
        assert send(relay, f"/stream/{key()}").status == 200
{%- endif %}


def test_an_upstream_status_reaches_the_caller_unchanged_unless_configured(
    retrying_relay: str, raw_upstream: RawUpstream, prefix: str
) -> None:
    name = key()
    target = f"{prefix}/{raw_upstream.script(name, UNAVAILABLE % b'7')}"
    response = send(retrying_relay, target)
    assert (response.status, response.body) == (503, b"busy")
    assert response.values(b"retry-after") == [b"7"]
    assert len(raw_upstream.received(name)) == 1


def test_configured_statuses_are_retried_honouring_a_short_retry_after(
    raw_upstream: RawUpstream,
) -> None:
    short, long = key(), key()
    with relay_to(raw_upstream, upstream_retry_statuses="503", upstream_retry_after_max=1) as relay:
        target = f"{PREFIX}/{raw_upstream.script(short, OK, first=[UNAVAILABLE % b'0'])}"
        assert send(relay, target).status == 200
        # Asking for longer than UPSTREAM_RETRY_AFTER_MAX: the caller gets the answer to judge.
        target = f"{PREFIX}/{raw_upstream.script(long, OK, first=[UNAVAILABLE % b'60'])}"
        assert send(relay, target).status == 503
    assert len(raw_upstream.received(short)) == 2
    assert len(raw_upstream.received(long)) == 1


def test_retries_to_a_failing_upstream_stay_within_the_budget(raw_upstream: RawUpstream) -> None:
    """64 callers at once, every call dropped: at most 1.2 times the calls, plus the reserve of
    10; not the three times that two retries each would make."""
    name = key()
    target = f"{PREFIX}/{raw_upstream.script(name, HANG_UP, close=True)}"
    with (
        relay_to(raw_upstream, upstream_breaker_failures=0) as relay,
        ThreadPoolExecutor(64) as pool,
    ):
        statuses = list(pool.map(lambda _: send(relay, target).status, range(64)))
    assert statuses == [502] * 64
    attempts = len(raw_upstream.received(name))
    assert 64 + 10 <= attempts <= 64 * 1.2 + 10


@pytest.mark.slow
def test_the_breaker_opens_refuses_at_once_and_closes_after_recovery(
    raw_upstream: RawUpstream,
) -> None:
    name = key()
    target = f"{PREFIX}/{raw_upstream.script(name, HANG_UP, close=True)}"
    settings = {
        "upstream_retries": 0,
        "upstream_breaker_failures": 3,
        "upstream_breaker_cooloff": 1,
        "upstream_breaker_trials": 2,
    }
    with relay_to(raw_upstream, **settings) as relay:
        for _ in range(3):
            assert_json_error(send(relay, target), 502)
        refused = send(relay, target)
        assert_json_error(refused, 503)
        assert len(raw_upstream.received(name)) == 3  # refused without trying
        (retry_after,) = refused.values(b"retry-after")

        raw_upstream.script(name, OK)  # the upstream recovers
        time.sleep(int(retry_after))  # as long as the service asked: the breaker tries again
        for _ in range(2):
            assert send(relay, target).status == 200
        assert send(relay, target).status == 200
{%- if cookiecutter.metrics %}
        scraped = send(relay, "/metrics").body.decode()
    for line in [
        'http_client_circuit_state{state="closed"} 1.0',
        'http_client_circuit_transitions_total{state="open"} 1.0',
        'http_client_circuit_transitions_total{state="half_open"} 1.0',
        'http_client_circuit_transitions_total{state="closed"} 1.0',
        "http_client_circuit_refused_total 1.0",
    ]:
        assert line in scraped.splitlines(), scraped
{%- endif %}
    assert len(raw_upstream.received(name)) == 6


def test_the_breaker_opens_on_an_upstream_that_never_answers(raw_upstream: RawUpstream) -> None:
    """Each call waits out UPSTREAM_TIMEOUT until the breaker opens; then callers are told at
    once, and nothing more is sent."""
    name = key()
    target = f"{PREFIX}/{raw_upstream.script(name, b'')}"
    with relay_to(raw_upstream, upstream_timeout=0.2, upstream_breaker_failures=2) as relay:
        for _ in range(2):
            assert_json_error(send(relay, target), 504)
        refused = send(relay, target)
    assert_json_error(refused, 503)
    assert b"the upstream is failing" in refused.body
    # At most: a call may time out before the upstream has read it.
    assert len(raw_upstream.received(name)) <= 2


@pytest.mark.anyio
async def test_endpoints_of_your_own_get_the_same_policy(raw_upstream: RawUpstream) -> None:
    dropped, posted = key(), key()
    upstream = Upstream(relay_settings(raw_upstream.url))
    async with upstream.client as client:
        response = await client.get(raw_upstream.script(dropped, OK, first=[HANG_UP]))
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(raw_upstream.script(posted, OK, first=[HANG_UP]), content=b"x")
    assert len(raw_upstream.received(dropped)) == 2
    assert len(raw_upstream.received(posted)) == 1


def trickle(
    url: str,
    target: str,
    length: int,
    halfway: threading.Barrier | None = None,
    resume: threading.Event | None = None,
) -> bytes:
    """A caller that sends its body a byte every 50 ms, until answered; the answer.

    With `halfway` and `resume`, it waits at `halfway` once it has sent half of its body, and
    goes on once `resume` is set."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {length}\r\n\r\n"
        sock.sendall(head.encode())
        sock.settimeout(0.05)
        for sent in range(length):
            if halfway is not None and resume is not None and sent == length // 2:
                halfway.wait(30)
                assert resume.wait(30)
            try:
                sock.sendall(b"x")
                return sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionError:
                break
        sock.settimeout(30)
        return sock.recv(65536)


@pytest.mark.slow
def test_slow_uploaders_cannot_take_the_pool(raw_upstream: RawUpstream, prefix: str) -> None:
    """Eight callers stop half-way through their bodies, with a pool of two: a plain GET is
    still served, and each body, once whole, goes upstream whole."""
    name = key()
    halfway, served = threading.Barrier(9), threading.Event()
    target = f"{prefix}/{name}"
    with (
        relay_to(raw_upstream, upstream_max_connections=2, upstream_pool_timeout=5) as relay,
        ThreadPoolExecutor(8) as pool,
    ):
        uploads = [pool.submit(trickle, relay, target, 20, halfway, served) for _ in range(8)]
        halfway.wait(30)  # every caller has sent half of its body, and waits
        try:
            # Were their connections taken, this would wait UPSTREAM_POOL_TIMEOUT for a 503.
            response = send(relay, f"{prefix}/{key()}")
        finally:
            served.set()
        answers = [upload.result() for upload in uploads]
    assert response.status == 200, response.raw
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers), answers
    assert [request.body for request in raw_upstream.received(name)] == [b"x" * 20] * 8


@pytest.mark.slow
def test_a_body_that_takes_too_long_in_all_is_cut_off_with_408(
    raw_upstream: RawUpstream, prefix: str
) -> None:
    """A byte every 50 ms never pauses long, but the whole body has a deadline."""
    name = key()
    with relay_to(raw_upstream, client_body_deadline=0.5, client_body_timeout=10) as relay:
        answer = trickle(relay, f"{prefix}/{name}", 10_000)
{%- if cookiecutter.metrics %}
        scraped = send(relay, "/metrics").body.decode()
    assert 'http_server_request_body_cut_off_total{reason="deadline"} 1.0' in scraped
{%- endif %}
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer
    assert raw_upstream.received(name) == []
