"""The buffered relay: whole responses, within a size limit, within an overall deadline."""

from collections.abc import Iterator

{{ cookiecutter.__httpx_import }}
import pytest

from tests.conftest import SERVICE_BUFFERED_MAX_BYTES, StartRelay
from tests.servers import Service, linux_only
from tests.upstream_app import Recorder, wait_for_no_open_streams


def test_response_over_the_limit_is_refused(start_relay: StartRelay) -> None:
    with start_relay(buffered_max_bytes=1000) as url:
        for path in ["/buffered/bytes/5000", "/buffered/raw?hex=" + "00" * 1001]:
            response = httpx.get(url + path)
            assert response.status_code == 502
            assert "1000 bytes" in response.json()["detail"]
        assert httpx.get(url + "/buffered/raw?hex=" + "00" * 1000).content == bytes(1000)


def test_request_body_over_the_limit_is_refused(start_relay: StartRelay) -> None:
    def chunked() -> Iterator[bytes]:
        yield b"x" * 600
        yield b"x" * 600

    with start_relay(buffered_max_bytes=1000) as url:
        declared = httpx.post(url + "/buffered/echo/x", content=b"x" * 1001)
        streamed = httpx.post(url + "/buffered/echo/x", content=chunked())
        accepted = httpx.post(url + "/buffered/status/200", content=b"x" * 1000)
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "1000 bytes" in response.json()["detail"]
    assert accepted.status_code == 200


def test_chunked_upstream_body_gets_a_content_length(client: httpx.Client) -> None:
    response = client.get("/buffered/bytes/200000")
    assert response.headers["content-length"] == "200000"
    assert len(response.content) == 200000


def test_upstream_failure_mid_body_is_502(client: httpx.Client) -> None:
    response = client.get("/buffered/broken")
    assert response.status_code == 502
    assert response.json()["detail"]


@pytest.mark.slow
def test_whole_exchange_has_a_deadline(start_relay: StartRelay) -> None:
    # Each chunk of /drip arrives well inside the timeout; the whole body does not.
    with start_relay(upstream_timeout=0.5) as url:
        response = httpx.get(url + "/buffered/drip?chunks=10&interval=0.2", timeout=5)
    assert response.status_code == 504
    assert response.json()["detail"]


@pytest.mark.slow
@linux_only
def test_oversized_response_is_refused_without_reading_it_whole(
    service: Service, recorder: Recorder
) -> None:
    service.reset_peak_rss()
    before = service.peak_rss_kib()
    # 1 GiB, chunked: no Content-Length says in advance that it is too large.
    response = httpx.get(f"{service.url}/buffered/bytes/{1 << 30}", timeout=30)
    after = service.peak_rss_kib()
    assert response.status_code == 502
    assert f"{SERVICE_BUFFERED_MAX_BYTES} bytes" in response.json()["detail"]
    assert after - before < 32 * 1024, (before, after)
    assert wait_for_no_open_streams(recorder, seconds=2), "upstream stream left open"


@pytest.mark.slow
def test_upstream_failures_mid_body_do_not_leak_connections(start_relay: StartRelay) -> None:
    with start_relay(upstream_max_connections=2, upstream_pool_timeout=1) as url:
        for _ in range(6):
            assert httpx.get(f"{url}/buffered/broken").status_code == 502
        assert httpx.get(f"{url}/buffered/status/200").status_code == 200
