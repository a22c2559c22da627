"""Under concurrent load, and through a shutdown, the service keeps every request intact.

The service runs as in production: its own uvicorn process, configured by environment.
"""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

{{ cookiecutter.__httpx_import }}
import pytest

from tests.conftest import RELAY_PREFIXES, SERVICE_POOL
from tests.servers import Service, run_service
from tests.upstream_app import Recorder

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
    try:
        writer.write(request.encode() + body)
        # The server closes the connection once the response is complete.
        response = await reader.read()
    finally:
        # Closed even when cancelled: a socket left to the garbage collector would complain
        # later, in another test, that its event loop is closed.
        writer.close()
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
        # Against a hang: on a busy machine the slowest transport needs a few seconds.
        async with asyncio.timeout(120), asyncio.TaskGroup() as requests:
            for number in range(IN_FLIGHT):
                requests.create_task(one(number))

    mark = service.log_mark()
    asyncio.run(load())
    log = service.log(since=mark)
    for trouble in ["Traceback", "LocalProtocolError", "ERROR"]:
        assert trouble not in log, log[-2000:]


def test_sigterm_lets_requests_in_flight_finish_and_closes_the_client(
    upstream: str, recorder: Recorder
) -> None:
    names = ["sigterm" + prefix.replace("/", "-") for prefix in RELAY_PREFIXES]
    holds = [recorder.hold(name) for name in names]
    with run_service(upstream) as service, ThreadPoolExecutor(len(RELAY_PREFIXES)) as pool:
        # A request in flight on every relay endpoint when the signal arrives.
        in_flight = [
            pool.submit(httpx.get, f"{service.url}{prefix}/held/{name}", timeout=60)
            for prefix, name in zip(RELAY_PREFIXES, names, strict=True)
        ]
        for hold in holds:
            hold.wait_until_arrived()
        service.terminate()
        # The service has stopped accepting and waits for what is in flight: let it finish.
        assert service.log_lines_with("Shutting down", seconds=30), service.log()
        for hold in holds:
            hold.released.set()
        statuses = [request.result().status_code for request in in_flight]
        status = service.exit_status()
        log = service.log()
    assert statuses == [200] * len(RELAY_PREFIXES)
    # A clean shutdown is a success, as an orchestrator reads the exit status.
    assert status == 0, log
    assert "upstream client closed" in log
    assert "Traceback" not in log
