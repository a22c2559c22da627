"""Under concurrent load, and through a shutdown, the service keeps every request intact.

The service runs as in production: its own uvicorn process, configured by environment.
"""

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import {{ cookiecutter.httpx_package }}

from tests.conftest import run_service

IN_FLIGHT = 500
POOL = 100


def test_hundreds_of_requests_in_flight_all_succeed_intact(upstream: str, prefix: str) -> None:
    async def one(client: {{ cookiecutter.httpx_package }}.AsyncClient, number: int) -> None:
        # Each waits 0.1 s upstream: all are in flight while the pool serves 100 at a time.
        response = await client.post(
            f"{prefix}/echo/{number}?delay=0.1", content=b"body %d" % number
        )
        assert response.status_code == 200, response.text
        seen = response.json()
        assert (seen["raw_path"], seen["body"]) == (f"/api/echo/{number}", f"body {number}")

    async def load(url: str) -> None:
        limits = {{ cookiecutter.httpx_package }}.Limits(max_connections=IN_FLIGHT)
        async with {{ cookiecutter.httpx_package }}.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            await asyncio.gather(*(one(client, number) for number in range(IN_FLIGHT)))

    settings = {"UPSTREAM_MAX_CONNECTIONS": str(POOL), "UPSTREAM_POOL_TIMEOUT": "30"}
    with run_service(upstream, **settings) as service:
        asyncio.run(load(service.url))
        log = service.log()
    for trouble in ["Traceback", "LocalProtocolError", "ERROR"]:
        assert trouble not in log, log[-2000:]


def test_sigterm_lets_requests_in_flight_finish_and_closes_the_client(
    upstream: str, prefix: str
) -> None:
    with run_service(upstream) as service, ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit({{ cookiecutter.httpx_package }}.get, f"{service.url}{prefix}/slow?seconds=1", timeout=10)
        time.sleep(0.3)
        status = service.stop()
        response = in_flight.result()
        log = service.log()
    assert response.status_code == 200
    # uvicorn re-raises SIGTERM once it has shut down cleanly.
    assert status in {0, -signal.SIGTERM}, log
    assert "upstream client closed" in log
    assert "Traceback" not in log
