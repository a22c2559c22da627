"""The streaming relay: bytes flow as they arrive, and every upstream response is closed."""

import asyncio
import hashlib
from collections.abc import Iterator

{{ cookiecutter.__httpx_import }}
import pytest

from tests.conftest import StartRelay
from tests.servers import CLIENT_TLS, Service, linux_only
from tests.upstream_app import CHUNK, Recorder, wait_for_no_open_streams


@pytest.mark.slow
def test_large_body_streams_through_intact(client: httpx.Client) -> None:
    size = 64 * 1024 * 1024
    digest = hashlib.sha256()
    received = 0
    with client.stream("GET", f"/stream/bytes/{size}") as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(CHUNK * (size // len(CHUNK))).hexdigest()


@pytest.mark.parametrize("query", ["", "?sized"], ids=["chunked", "content-length"])
def test_first_bytes_arrive_before_the_upstream_has_finished(
    client: httpx.Client, recorder: Recorder, query: str
) -> None:
    recorder.gate.clear()
    with client.stream("GET", f"/stream/gated{query}") as response:
        chunks = response.iter_raw()
        # The upstream holds back the rest until the gate opens: a relay that waited for the
        # whole body would time out here.
        assert next(chunks) == b"first"
        recorder.gate.set()
        assert b"".join(chunks) == b"last"


@pytest.mark.slow
def test_client_disconnects_close_the_upstream_response(
    start_relay: StartRelay, recorder: Recorder
) -> None:
    endless = f"/stream/bytes/{1 << 40}"  # a TiB: it only ends when the relay closes it

    async def disconnect_once(url: str) -> None:
        async with (
            httpx.AsyncClient(base_url=url, verify=CLIENT_TLS) as client,
            client.stream("GET", endless) as response,
        ):
            async for _chunk in response.aiter_raw():
                break

    with start_relay(upstream_max_connections=2, upstream_pool_timeout=1) as url:
        # Far more disconnects than the pool has connections.
        for _ in range(20):
            asyncio.run(disconnect_once(url))
            assert wait_for_no_open_streams(recorder, seconds=2), "upstream stream left open"
        assert httpx.get(f"{url}/stream/status/200").status_code == 200


def test_upstream_failure_mid_body_breaks_the_response_off(
    client: httpx.Client,
) -> None:
    with client.stream("GET", "/stream/broken") as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            for _chunk in response.iter_raw():
                pass


MIB = 1024 * 1024


@pytest.mark.slow
@linux_only
def test_memory_does_not_grow_with_the_body_size(service: Service) -> None:
    def peak_streaming(size: int) -> int:
        """The service's peak memory while it streams `size` bytes, from its memory now."""
        service.reset_peak_rss()
        with httpx.stream("GET", f"{service.url}/stream/bytes/{size}") as response:
            assert sum(len(chunk) for chunk in response.iter_raw()) == size
        return service.peak_rss_kib()

    small = peak_streaming(16 * MIB)
    large = peak_streaming(512 * MIB)
    # 32x the body, and the peak resident memory grows by less than 32 MiB.
    assert large - small < 32 * 1024, (small, large)


@pytest.mark.slow
@linux_only
def test_request_bodies_stream_to_the_upstream(service: Service) -> None:
    size = 256 * MIB

    def body() -> Iterator[bytes]:
        for _ in range(size // MIB):
            yield bytes(MIB)

    service.reset_peak_rss()
    before = service.peak_rss_kib()
    response = httpx.post(
        f"{service.url}/stream/sink",
        content=body(),
        headers={"content-length": str(size)},
        timeout=60,
    )
    after = service.peak_rss_kib()
    assert response.json() == {"received": size}
    assert after - before < 32 * 1024, (before, after)


@pytest.mark.slow
def test_upstream_failures_mid_body_do_not_leak_connections(start_relay: StartRelay) -> None:
    with start_relay(upstream_max_connections=2, upstream_pool_timeout=1) as url:
        for _ in range(6):
            with (
                httpx.Client(base_url=url) as client,
                client.stream("GET", "/stream/broken") as response,
                pytest.raises(httpx.RemoteProtocolError),
            ):
                response.read()
        assert httpx.get(f"{url}/stream/status/200").status_code == 200
