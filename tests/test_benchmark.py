"""The generated benchmark is one command away: it starts everything, measures, prints its table.

Its numbers are not asserted (speed is measured by benchmarks, not by timed tests); that the
command a user runs works, is.
"""

import shutil

import pytest

from tests.conftest import DEFAULTS, Bake, environment_key

# The default project is rendered and synced by the worker that holds its environment.
pytestmark = pytest.mark.xdist_group(environment_key(DEFAULTS))


def test_benchmark_command_starts(bake: Bake) -> None:
    project = bake()
    project.uv("sync", "--locked")
    result = project.uv("run", "python", "benchmarks/bench.py", "--help")
    assert "--seconds" in result.stdout


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (apt-get install wrk)")
def test_benchmark_prints_service_and_baselines(bake: Bake) -> None:
    project = bake()
    project.uv("sync", "--locked")
    quick = ["--seconds", "1", "--warmup", "0", "--small", "4", "--big", "1"]
    table = project.uv("run", "python", "benchmarks/bench.py", *quick).stdout
    for target in [
        "service /stream/",
        "service /buffered/",
        "upstream, direct (ceiling)",
        "requests.get in async def",
        "httpx 0.28 shared client",
        "bare ASGI relay on aiohttp",
    ]:
        assert f"| {target}" in table, table
    assert "## Goals" in table
