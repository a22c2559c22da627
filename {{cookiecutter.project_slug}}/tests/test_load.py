"""Under concurrent load, and through a shutdown, the service keeps every request intact.

The service runs as in production: its own uvicorn process, configured by environment.
"""

import asyncio
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

{{ cookiecutter.__httpx_import }}
import pytest

from tests.conftest import RELAY_PREFIXES, SERVICE_POOL
from tests.servers import Service, run_service

# Hundreds of requests, and a service stopped with SIGTERM.
pytestmark = pytest.mark.slow

IN_FLIGHT = 500


async def post(url: str, target: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """POST on a connection of its own, as a separate caller would: status, headers and body.

    A bare HTTP/1.1 exchange: at this concurrency an httpx client would cost more CPU than the
    service under test, as its pool does work in proportion to its open connections per request.
    """
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    request = (
        f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(request.encode() + body)
    # The server closes the connection once the response is complete.
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, content = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split(" ")[1]), headers, content


def test_hundreds_of_requests_in_flight_all_succeed_intact(service: Service, prefix: str) -> None:
    assert IN_FLIGHT > SERVICE_POOL

    async def one(number: int) -> None:
        # Each waits 0.1 s upstream: all are in flight while the pool serves 100 at a time.
        status, headers, content = await post(
            service.url, f"{prefix}/echo/{number}?delay=0.1", b"body %d" % number
        )
        assert status == 200, content
        assert int(headers["content-length"]) == len(content)
        seen = json.loads(content)
        assert (seen["raw_path"], seen["body"]) == (f"/api/echo/{number}", f"body {number}")

    async def load() -> None:
        async with asyncio.timeout(60):
            await asyncio.gather(*(one(number) for number in range(IN_FLIGHT)))

    mark = service.log_mark()
    asyncio.run(load())
    log = service.log(since=mark)
    for trouble in ["Traceback", "LocalProtocolError", "ERROR"]:
        assert trouble not in log, log[-2000:]


def test_sigterm_lets_requests_in_flight_finish_and_closes_the_client(upstream: str) -> None:
    with run_service(upstream) as service, ThreadPoolExecutor(len(RELAY_PREFIXES)) as pool:
        # A request in flight on every relay endpoint when the signal arrives.
        in_flight = [
            pool.submit(httpx.get, f"{service.url}{prefix}/slow?seconds=1", timeout=10)
            for prefix in RELAY_PREFIXES
        ]
        time.sleep(0.3)
        status = service.stop()
        statuses = [request.result().status_code for request in in_flight]
        log = service.log()
    assert statuses == [200] * len(RELAY_PREFIXES)
    # uvicorn re-raises SIGTERM once it has shut down cleanly.
    assert status in {0, -signal.SIGTERM}, log
    assert "upstream client closed" in log
    assert "Traceback" not in log
