"""Load-test WebSocket sessions through the service against their baselines, all on 127.0.0.1.

From the project root: `uv run --group bench python -m benchmarks.sessions [--seconds 5]`.

Starts, each in its own process: an echo server (the `websockets` library's, `peers.py`) as
the upstream, the service exactly as in production, and two baselines under uvicorn like the
service (`baselines.py`): a bare ASGI relay on one aiohttp session, and fastapi-proxy-lib's
WebSocket reverse proxy. A load process then keeps sessions open to each, every session
sending a message and waiting for its echo, one at a time: round trips per second, and their
latency (p50, p99). Last, the service holds 1,000 idle sessions open, and its memory is read
before and after. Every process started is stopped at the end, whatever happens.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack

from benchmarks.bench import PROJECT, SERVICE_ENDPOINTS, UVICORN_OPTIONS
from benchmarks.report import markdown, ms, ratio
from benchmarks.wrk import rss_mib
from tests.servers import SERVICE_COMMAND, Service, free_port, run_process, run_uvicorn

KIB = 1024
# Larger than any message sent here, so that every relay passes them.
MAX_MESSAGE = str(4 * KIB * KIB)
# What is measured: (sessions, message size), and the idle sessions held open.
SMALL = (64, 64)
BIG = (4, KIB * KIB)
IDLE = 1000
# The template's goals for the service: its rate against each baseline's, and its memory.
GOALS = [(SMALL, "bare", 0.7), (SMALL, "proxylib", 1.2), (BIG, "bare", 0.8)]
IDLE_KIB_AT_MOST = 64
LABELS = {
    "direct": "upstream, direct (ceiling)",
    "service": "service",
    "bare": "bare ASGI relay on aiohttp",
    "proxylib": "fastapi-proxy-lib",
}


def peers(*args: str) -> list[str]:
    """The command that runs one of the benchmark's own processes (`peers.py`)."""
    return [sys.executable, "-m", "benchmarks.peers", *args]


def measure(url: str, sessions: int, size: int, seconds: float, warmup: float) -> dict[str, float]:
    """The load, in a process of its own, so that it shares no GIL with anything measured."""
    command = peers("load", url, str(sessions), str(size), str(seconds), str(warmup))
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 300, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    measured: dict[str, float] = json.loads(result.stdout)
    return measured


def idle_kib_per_session(service: Service, url: str, sessions: int) -> float:
    """How much the service's resident memory grows for each idle session held open, in KiB."""
    command = peers("hold", url, str(sessions))
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        before = rss_mib(service.process.pid)
        if holder.stdout.readline().strip() != b"open":
            raise RuntimeError(f"the idle sessions did not open:\n{service.log()[-4000:]}")
        time.sleep(1)  # the last handshakes' work done
        after = rss_mib(service.process.pid)
        holder.stdin.close()
    return (after - before) * KIB / sessions


def start_servers(stack: ExitStack) -> dict[str, tuple[Service, str]]:
    """Every server measured, and the ws:// URL a session opens on it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("UPSTREAM_", "BENCH_"))}
    port = free_port()
    # Processes start in an empty directory: this module is found through PYTHONPATH.
    echo_env = {**base, "PYTHONPATH": str(PROJECT)}
    upstream = stack.enter_context(run_process(peers("echo", str(port)), port, echo_env))
    service_port = free_port()
    service_env = {
        **base,
        "HOST": "127.0.0.1",
        "PORT": str(service_port),
        "UPSTREAM_BASE_URL": f"{upstream.url}/",
        "LOG_LEVEL": "WARNING",
        "WEBSOCKET_MAX_MESSAGE_BYTES": MAX_MESSAGE,
        "WEBSOCKET_MAX_SESSIONS": str(2 * IDLE),
    }
    service = stack.enter_context(run_process(SERVICE_COMMAND, service_port, service_env))
    baseline_env = {**base, "BENCH_UPSTREAM_URL": f"{upstream.url}/"}
    apps = ("--app-dir", str(PROJECT))
    bare = stack.enter_context(
        run_uvicorn(
            "benchmarks.baselines:bare_relay", *UVICORN_OPTIONS, *apps,
            env=baseline_env, ready="/chunks/healthz",
        )
    )  # fmt: skip
    proxylib = stack.enter_context(
        run_uvicorn(
            "benchmarks.baselines:proxy_lib_relay", *UVICORN_OPTIONS, *apps,
            env=baseline_env, ready="/healthz",
        )
    )  # fmt: skip
    prefix = SERVICE_ENDPOINTS[0][0]
    return {
        "direct": (upstream, f"{ws(upstream)}/echo"),
        "service": (service, f"{ws(service)}{prefix}echo"),
        "bare": (bare, f"{ws(bare)}/chunks/echo"),
        "proxylib": (proxylib, f"{ws(proxylib)}/echo"),
    }


def ws(server: Service) -> str:
    return server.url.replace("http://", "ws://")


def report(
    results: dict[tuple[str, tuple[int, int]], dict[str, float]], sessions: int, idle: float
) -> str:
    """The results as Markdown: each target's rates, then the service against the goals."""
    rows = []
    for (target, (count, size)), measured in results.items():
        service = results[("service", (count, size))]["per_s"]
        rows.append(
            [
                LABELS[target],
                f"{size:,} B",
                str(count),
                f"{measured['per_s']:,.0f}",
                ms(measured["p50_ms"]),
                ms(measured["p99_ms"]),
                ratio(service, measured["per_s"]) if target != "service" else "",
            ]
        )
    headers = ["target", "message", "sessions", "round trips/s", "p50 ms", "p99 ms", "service vs"]
    lines = [markdown(headers, rows), "", "## Goals", ""]
    for (count, size), baseline, share in GOALS:
        service = results[("service", (count, size))]["per_s"]
        got = service / results[(baseline, (count, size))]["per_s"]
        mark = "x" if got >= share else " "
        lines.append(
            f"- [{mark}] {size:,} B messages, {count} sessions: at least {share}x "
            f"{LABELS[baseline]}: {got:.2f}x"
        )
    mark = "x" if idle <= IDLE_KIB_AT_MOST else " "
    lines.append(
        f"- [{mark}] {sessions:,} idle sessions: at most {IDLE_KIB_AT_MOST} KiB of the service's "
        f"memory each: {idle:.1f} KiB"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5, help="seconds per cell (5)")
    parser.add_argument("--warmup", type=float, default=1, help="warm-up seconds per cell (1)")
    parser.add_argument("--idle", type=int, default=IDLE, help=f"idle sessions held ({IDLE})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    results: dict[tuple[str, tuple[int, int]], dict[str, float]] = {}
    with ExitStack() as stack:
        servers = start_servers(stack)
        for cell in (SMALL, BIG):
            for target, (_, url) in servers.items():
                print(f"Measuring {LABELS[target]}, {cell} ...", file=sys.stderr, flush=True)
                results[(target, cell)] = measure(url, *cell, options.seconds, options.warmup)
        service, url = servers["service"]
        idle = idle_kib_per_session(service, url, options.idle)
    print(report(results, options.idle, idle))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
