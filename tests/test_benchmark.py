"""The generated benchmark is one command away: it starts everything, measures, prints its table.

Its numbers are not asserted (speed is measured by benchmarks, not by timed tests); that the
command a user runs works, is. The template's goals, which `benchmarks/compare.py` judges, are
checked here on made-up results.
"""

import shutil
from typing import Any

import pytest

from benchmarks.compare import goals
from tests.projects import DEFAULTS, Bake, environment_key

BENCH = ("run", "--locked", "--group", "bench")

# The default project is rendered and synced by the worker that holds its environment.
pytestmark = pytest.mark.xdist_group(environment_key(DEFAULTS))


def test_benchmark_command_starts_and_its_code_passes_mypy_with_its_packages(bake: Bake) -> None:
    project = bake()
    result = project.uv(*BENCH, "python", "-m", "benchmarks.bench", "--help")
    assert "--seconds" in result.stdout
    # A plain `uv sync` leaves the baselines' packages out; with them, they are type-checked too.
    project.uv(*BENCH, "mypy")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (apt-get install wrk)")
def test_benchmark_prints_service_and_baselines(bake: Bake) -> None:
    project = bake()
    quick = ["--seconds", "1", "--warmup", "0", "--small", "4", "--big", "1"]
    table = project.uv(*BENCH, "python", "-m", "benchmarks.bench", *quick).stdout
    for target in [
        "service /stream/",
        "service /buffered/",
        "upstream, direct (ceiling)",
        "requests.get in async def",
        "httpx 0.28 shared client",
        "FastAPI + shared aiohttp session",
        "bare ASGI relay on aiohttp",
    ]:
        assert f"| {target}" in table, table
    assert "## The service relative to each baseline" in table


def test_websocket_benchmark_prints_service_baselines_and_goals(bake: Bake) -> None:
    project = bake()
    quick = ["--seconds", "0.5", "--warmup", "0", "--idle", "20"]
    table = project.uv(*BENCH, "python", "-m", "benchmarks.sessions", *quick).stdout
    for target in [
        "upstream, direct (ceiling)",
        "service",
        "bare ASGI relay on aiohttp",
        "fastapi-proxy-lib",
    ]:
        assert f"| {target} " in table, table
    assert "- [" in table.split("## Goals", 1)[1], table


def result(target: str, body: str, connections: int, rate: float, **more: Any) -> dict[str, Any]:
    return {
        "target": target,
        "body": body,
        "concurrency": connections,
        "requests_per_s": rate,
        "mib_per_s": more.get("mib_per_s", 0.0),
        "p99_ms": more.get("p99_ms"),
        "errors": more.get("errors", 0),
    }


def test_goals_say_which_hold_and_which_are_missed() -> None:
    results = [
        result("service /stream/", "small JSON", 64, 3000, p99_ms=40.0),
        result("service /stream/", "small JSON", 256, 2900, errors=3),
        result("service /stream/", "10 MiB", 4, 100, mib_per_s=1000),
        result("service /buffered/", "small JSON", 64, 2000, p99_ms=60.0),
        result("service /buffered/", "10 MiB", 4, 80, mib_per_s=800),
        result("fastapi", "small JSON", 64, 2500, p99_ms=50.0),
        result("bare", "small JSON", 64, 4000),
        result("httpx", "small JSON", 64, 500),
        result("requests", "small JSON", 64, 2000),
        result("direct", "10 MiB", 4, 300, mib_per_s=3000),
    ]
    assert goals(results) == [
        "- [ ] /buffered/ small JSON at 64: >= 1x the fastapi relay: 0.80x  **MISSED**",
        "- [ ] /buffered/ small JSON at 64: >= 0.6x the bare relay: 0.50x  **MISSED**",
        "- [x] /buffered/ small JSON at 64: >= 3x the httpx relay: 4.00x",
        "- [ ] /buffered/ small JSON at 64: >= 2x the requests relay: 1.00x  **MISSED**",
        "- [ ] /buffered/ p99 at 64 no worse than the fastapi relay's: 60.0 ms, the fastapi relay"
        " 50.0 ms  **MISSED**",
        "- [x] /stream/ small JSON at 64: >= 1x the fastapi relay: 1.20x",
        "- [x] /stream/ small JSON at 64: >= 0.6x the bare relay: 0.75x",
        "- [x] /stream/ small JSON at 64: >= 3x the httpx relay: 6.00x",
        "- [ ] /stream/ small JSON at 64: >= 2x the requests relay: 1.50x  **MISSED**",
        "- [x] /stream/ p99 at 64 no worse than the fastapi relay's: 40.0 ms, the fastapi relay 50.0 ms",
        "- [ ] /stream/ no errors at 256 connections: 3 errors  **MISSED**",
        "- [ ] /stream/ 10 MiB at 4: >= 90% of the direct rate: 33% (1,000 of 3,000 MiB/s)  **MISSED**",
    ]
