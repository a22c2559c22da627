"""Load-test the service under uvicorn against its baselines, with wrk, all on 127.0.0.1.

From the project root: `uv run --group bench python -m benchmarks.bench [--seconds 5]` (needs
`wrk`; the `bench` group installs the baselines' packages).

Starts, each in its own process: the upstream (`upstream.py`), the service exactly as in
production (its own command, one worker), and the baselines (`baselines.py`), all under uvicorn
with uvloop and httptools. wrk then measures each at several concurrencies, for a small JSON
body and for a 10 MiB body, and the results are printed as Markdown tables: requests/s, latency
(p50, p99), errors, the peak RSS of the process measured, and the service's speed relative to
each baseline. Every process started is stopped at the end, whatever happens.
"""

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from types import FrameType

from benchmarks import wrk
from benchmarks.report import report
from benchmarks.upstream import BIG_PATH, BIG_SIZE, SMALL_BODY, SMALL_PATH
from benchmarks.wrk import MIB, PeakRss, Result
from tests.servers import SERVICE_COMMAND, Service, free_port, run_process, run_uvicorn

PROJECT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "{{ cookiecutter.project_slug }}"
# The service's relay endpoints (the streamed one first), each with the style of the httpx
# baseline that does the same job: "chunks" streams the body back, "whole" reads it first.
SERVICE_ENDPOINTS = [
{%- if cookiecutter.response_mode != "buffered" %}
    ("/stream/", "chunks"),
{%- endif %}
{%- if cookiecutter.response_mode != "stream" %}
    ("/buffered/", "whole"),
{%- endif %}
]
SMALL = "small JSON"
BIG = "10 MiB"
# How every other server is run: as the service runs, quietly.
UVICORN_OPTIONS = ("--loop", "uvloop", "--http", "httptools", "--log-level", "warning")


@dataclass(frozen=True)
class Target:
    """One thing wrk measures: a URL prefix on one of the started servers."""

    key: str
    label: str
    server: str
    prefix: str

    def path(self, body: str) -> str:
        return f"{self.prefix}{SMALL_PATH if body == SMALL else BIG_PATH}"


def targets(names: set[str]) -> list[Target]:
    """Every target asked for: the service first, then the baselines."""
    style = SERVICE_ENDPOINTS[0][1]
    found = [Target(f"service {p}", f"service {p}", "service", p) for p, _ in SERVICE_ENDPOINTS]
    found += [
        Target("direct", "upstream, direct (ceiling)", "upstream", "/"),
        Target("requests", "requests.get in async def", "requests", "/whole/"),
        Target("httpx", f"httpx 0.28 shared client ({style})", "httpx", f"/{style}/"),
        Target("fastapi", "FastAPI + shared aiohttp session (whole)", "fastapi", "/whole/"),
        Target("bare", "bare ASGI relay on aiohttp", "bare", "/chunks/"),
    ]
    return [target for target in found if target.server in names]


def fetch(url: str, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def check(target: Target, server: Service) -> None:
    """One request of each body through the target must come back whole, or nothing counts."""
    for body, expected in ((SMALL, len(SMALL_BODY)), (BIG, BIG_SIZE)):
        status, content = fetch(server.url, target.path(body))
        if status != 200 or len(content) != expected:
            raise RuntimeError(
                f"{target.label}: GET {target.path(body)} gave {status} with {len(content)} "
                f"bytes, expected 200 with {expected}\n{server.log()[-4000:]}"
            )


def measure(
    target: Target, server: Service, body: str, connections: int, args: argparse.Namespace
) -> Result:
    with PeakRss(server.process.pid) as rss:
        output = wrk.run(server.url + target.path(body), connections, args.seconds, args.threads)
    measured = wrk.parse(output)
    size = len(SMALL_BODY) if body == SMALL else BIG_SIZE
    return Result(
        target=target.key,
        label=target.label,
        body=body,
        concurrency=connections,
        requests=measured.requests,
        requests_per_s=measured.requests_per_s,
        mib_per_s=measured.requests_per_s * size / MIB,
        p50_ms=measured.p50_ms,
        p99_ms=measured.p99_ms,
        errors=measured.errors,
        peak_rss_mib=rss.peak,
    )


def start_servers(
    stack: ExitStack, names: set[str], args: argparse.Namespace
) -> dict[str, Service]:
    """The upstream, then each relay asked for, all stopped when `stack` closes."""
    pool = max([*args.small, *args.big]) + 16
    base = {k: v for k, v in os.environ.items() if not k.startswith(("UPSTREAM_", "BENCH_"))}
    apps = ("--app-dir", str(PROJECT))
    upstream_env = {**base, "BENCH_UPSTREAM_DELAY_MS": str(args.upstream_delay_ms)}
    upstream = stack.enter_context(
        run_uvicorn(
            "benchmarks.upstream:app", *UVICORN_OPTIONS, *apps, "--lifespan", "off",
            env=upstream_env, ready=f"/{SMALL_PATH}",
        )
    )  # fmt: skip
    service_port = free_port()
    service_env = {
        **base,
        "HOST": "127.0.0.1",
        "PORT": str(service_port),
        "UPSTREAM_BASE_URL": f"{upstream.url}/",
        "UPSTREAM_MAX_CONNECTIONS": str(pool),
{%- if cookiecutter.http_transport == "native" %}
        "UPSTREAM_MAX_KEEPALIVE_CONNECTIONS": str(pool),
{%- endif %}
        "LOG_LEVEL": "WARNING",
{%- if cookiecutter.response_mode != "stream" %}
        # Room for the 10 MiB body when it is read whole.
        "BUFFERED_MAX_BYTES": str(2 * BIG_SIZE),
{%- endif %}
    }
    baseline_env = {
        **base,
        "BENCH_UPSTREAM_URL": f"{upstream.url}/",
        "BENCH_MAX_CONNECTIONS": str(pool),
    }
    whole, chunks = f"/whole/{SMALL_PATH}", f"/chunks/{SMALL_PATH}"
    servers = {"upstream": upstream}
    if "service" in names:
        service = run_process(SERVICE_COMMAND, service_port, service_env)
        servers["service"] = stack.enter_context(service)
    plans = {
        "requests": ("benchmarks.baselines:requests_relay", whole),
        "httpx": ("benchmarks.baselines:httpx_relay", whole),
        "fastapi": ("benchmarks.baselines:fastapi_aiohttp_relay", whole),
        "bare": ("benchmarks.baselines:bare_relay", chunks),
    }
    for name, (app, ready) in plans.items():
        if name in names:
            servers[name] = stack.enter_context(
                run_uvicorn(app, *UVICORN_OPTIONS, *apps, env=baseline_env, ready=ready)
            )
    return servers


def describe_machine(args: argparse.Namespace) -> str:
    def package(name: str) -> str:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return f"{name} (not installed)"

    # The service's own requirements, as installed, and what the baselines add.
    requirements = requires(DISTRIBUTION) or []
    names = [re.split(r"[^A-Za-z0-9_.-]", req, maxsplit=1)[0] for req in requirements]
    names += ["starlette", "httpx", "requests", "aiohttp"]
    return "\n".join(
        [
            f"# Benchmark: {DISTRIBUTION}",
            "",
            f"Python {platform.python_version()}, "
            + ", ".join(package(name) for name in sorted(set(names)))
            + f", {wrk.version()}.",
            f"{os.cpu_count() or 1} CPU cores, shared by the upstream, the relay measured and wrk "
            f"(-t{args.threads}), all on 127.0.0.1; {args.seconds} s per cell, after a "
            f"{args.warmup} s warm-up per target; the upstream answers after "
            f"{args.upstream_delay_ms:g} ms.",
        ]
    )


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into an exception, so that the servers are stopped on the way out."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    add = parser.add_argument
    add("--seconds", type=int, default=5, help="wrk duration per cell (5)")
    add("--warmup", type=int, default=1, help="warm-up seconds per target (1)")
    add("--small", type=counts, default=[64, 256], help="connections, small JSON (64,256)")
    add("--big", type=counts, default=[4], help="connections for 10 MiB (4)")
    add("--threads", type=int, default=1, help="wrk threads (1)")
    add(
        "--targets",
        default="service,upstream,requests,httpx,fastapi,bare",
        help="servers to measure (service,upstream,requests,httpx,fastapi,bare)",
    )
    add(
        "--upstream-delay-ms",
        type=float,
        default=0.0,
        help="milliseconds the upstream waits before each answer, to play a remote API (0)",
    )
    add("--json", type=Path, help="also write the results to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed. Install it, then run this again:\n"
            "  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y wrk\n"
            "  macOS:         brew install wrk",
            file=sys.stderr,
        )
        return 2
    names = {name.strip() for name in args.targets.split(",")}
    machine = describe_machine(args)
    print(machine, flush=True)
    results: list[Result] = []
    with stop_on_sigterm(), ExitStack() as stack:
        servers = start_servers(stack, names, args)
        rss_at_start = wrk.rss_mib(servers["service"].process.pid) if "service" in servers else None
        for target in targets(names):
            server = servers[target.server]
            check(target, server)
            print(f"\nMeasuring {target.label} ...", file=sys.stderr, flush=True)
            if args.warmup > 0:
                wrk.run(server.url + target.path(SMALL), 64, args.warmup, args.threads)
            cells = [(SMALL, c) for c in args.small] + [(BIG, c) for c in args.big]
            for body, connections in cells:
                result = measure(target, server, body, connections, args)
                results.append(result)
                print(
                    f"  {body:>10} c={connections:<4} {result.requests_per_s:>10,.0f} req/s"
                    f" {result.errors:>6} errors",
                    file=sys.stderr,
                    flush=True,
                )
    print()
    print(report(results, rss_at_start))
    if args.json:
        document = {"machine": machine, "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
