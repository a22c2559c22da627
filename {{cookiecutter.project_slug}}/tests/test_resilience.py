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
from tests.servers import collect_logs, refused_port, relay_settings, serve_relay
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
    with relay_to(raw_upstream, upstream_breaker=False) as url:
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
        "upstream_breaker_min_calls": 1,
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
        relay_to(raw_upstream, upstream_breaker=False) as relay,
        ThreadPoolExecutor(64) as pool,
    ):
        statuses = list(pool.map(lambda _: send(relay, target).status, range(64)))
    assert statuses == [502] * 64
    attempts = len(raw_upstream.received(name))
    assert 64 + 10 <= attempts <= 64 * 1.2 + 10


def test_a_blip_amid_steady_traffic_never_opens_the_breaker(raw_upstream: RawUpstream) -> None:
    """Two calls whose connections drop, each sent three times, between healthy ones: the
    breaker (with its defaults) counts two failed calls, not six, of 52, and stays closed."""
    dropped = key()
    target = f"{PREFIX}/{raw_upstream.script(dropped, HANG_UP, close=True)}"
    with relay_to(raw_upstream, upstream_breaker=True) as relay:
        before = [send(relay, f"{PREFIX}/{key()}").status for _ in range(30)]
        blip = [send(relay, target).status for _ in range(2)]
        after = [send(relay, f"{PREFIX}/{key()}").status for _ in range(20)]
    assert (before, blip, after) == ([200] * 30, [502] * 2, [200] * 20)
    assert len(raw_upstream.received(dropped)) == 6  # each call retried twice


def test_a_failing_path_closes_every_path_only_once_it_is_half_the_traffic(
    raw_upstream: RawUpstream,
) -> None:
    """The breaker judges the upstream as a whole (docs/relay.md): one path that keeps failing
    beside healthy ones leaves them served; once its failures are half of the calls, every
    path is refused."""
    failing = f"{PREFIX}/{raw_upstream.script(key(), HANG_UP, close=True)}"
    healthy = f"{PREFIX}/{key()}"
    with relay_to(raw_upstream, upstream_breaker=True) as relay:
        for turn in range(30):
            assert send(relay, healthy).status == 200
            if turn % 4 == 0:  # two failed calls in a row, a third of all calls
                for _ in range(2):
                    assert_json_error(send(relay, failing), 502)
        # Now the failing path alone: at 30 failed calls of 60 (or sooner, once the window
        # has moved on from the first calls) it opens.
        statuses = [send(relay, failing).status for _ in range(30)]
        assert 503 in statuses, statuses
        assert_json_error(send(relay, healthy), 503)


def test_a_refusing_upstream_opens_the_breaker_and_callers_are_refused_at_once() -> None:
    """24 callers at once to an upstream that refuses connections: the breaker opens once
    20 calls have failed, and the next caller gets 503 with `Retry-After` without waiting."""
    with refused_port() as port, ThreadPoolExecutor(24) as pool:
        settings = relay_settings(f"http://127.0.0.1:{port}", upstream_breaker=True)
        with serve_relay(settings) as relay:
            statuses = list(pool.map(lambda _: send(relay, f"{PREFIX}/{key()}").status, range(24)))
            refused = send(relay, f"{PREFIX}/{key()}")
    assert set(statuses) <= {502, 503}, statuses
    assert statuses.count(502) >= 20  # every call the breaker let through failed
    assert_json_error(refused, 503)
    assert b"the upstream is failing" in refused.body
    assert int(refused.values(b"retry-after")[0]) >= 1


@pytest.mark.slow
def test_a_hanging_upstream_opens_the_breaker_within_a_timeout_and_recovery_closes_it(
    raw_upstream: RawUpstream,
) -> None:
    """24 callers at once to an upstream that never answers: each waits UPSTREAM_TIMEOUT and
    gets 504, and then the breaker is open (by default, at half of at least 20 calls failed):
    the next caller is answered 503 at once, and the upstream gets nothing more. Once it
    answers again, the trial calls close the breaker."""
    name = key()
    target = f"{PREFIX}/{raw_upstream.script(name, b'')}"
    settings = {"upstream_breaker": True, "upstream_timeout": 2, "upstream_breaker_cooloff": 1}
    with relay_to(raw_upstream, **settings) as relay, ThreadPoolExecutor(24) as pool:
        with collect_logs() as logs:
            statuses = list(pool.map(lambda _: send(relay, target).status, range(24)))
            started = time.monotonic()
            refused = send(relay, target)
            waited = time.monotonic() - started
        # Every call let through waited its timeout; the breaker opened at the 20th.
        assert set(statuses) <= {503, 504}, statuses
        assert statuses.count(504) >= 20
        assert_json_error(refused, 503)
        assert waited < settings["upstream_timeout"]  # told at once, not after a timeout
        assert len(raw_upstream.received(name)) <= 24  # nothing sent while open
        assert "upstream circuit open: 20 of 20 calls failed in the last 10s" in logs.text()
        (retry_after,) = refused.values(b"retry-after")

        raw_upstream.script(name, OK)  # the upstream recovers
        time.sleep(int(retry_after))  # as long as the service asked: the breaker tries again
        assert [send(relay, target).status for _ in range(4)] == [200] * 4  # 3 trials, then closed
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
