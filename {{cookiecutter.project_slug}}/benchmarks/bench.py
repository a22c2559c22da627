"""Load-test the service under uvicorn against its baselines, with wrk, all on 127.0.0.1.

From the project root: `uv run python benchmarks/bench.py [--seconds 5]` (needs `wrk`).

Starts, each in its own process: the upstream (`upstream.py`), the service exactly as in
production (one uvicorn worker, uvloop, httptools), and the baselines (`baselines.py`): a naive
`requests` relay, a shared `httpx.AsyncClient` relay on httpx's default transport, and a bare
ASGI relay on aiohttp, the least code that can relay (the ceiling for any of them). wrk then
measures each target at several concurrencies, for a small JSON body and for a 10 MiB body,
and the results are printed as Markdown tables: requests/s, latency (p50, p99), errors, the
peak RSS of the process measured, and the service's speed relative to each baseline.
Every process started is stopped at the end, whatever happens.
"""

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from types import FrameType
from typing import IO

import psutil
from upstream import BIG_PATH, BIG_SIZE, SMALL_BODY, SMALL_PATH

BENCHMARKS = Path(__file__).resolve().parent
SERVICE_APP = "{{ cookiecutter.package_name }}.main:app"
# As in the image: the service's own protocol (httptools, trailers kept out of the headers).
SERVICE_OPTIONS = ["--http", "{{ cookiecutter.package_name }}.server:HttpProtocol"]
HEALTH = "/healthz"
DISTRIBUTION = "{{ cookiecutter.project_slug }}"
CLIENT_PACKAGE = "{{ cookiecutter.httpx_package }}"
TRANSPORT = "{{ cookiecutter.http_transport }}"
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
HOST = "127.0.0.1"
SMALL = "small JSON"
BIG = "10 MiB"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Target:
    """One thing wrk measures: a URL prefix on one of the started servers."""

    key: str
    label: str
    server: str
    prefix: str

    def url(self, port: int, body: str) -> str:
        return f"http://{HOST}:{port}{self.prefix}{SMALL_PATH if body == SMALL else BIG_PATH}"


@dataclass(frozen=True)
class Result:
    """What wrk measured for one target, body and concurrency."""

    target: str
    label: str
    body: str
    concurrency: int
    requests: int
    requests_per_s: float
    mib_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    peak_rss_mib: float


class Server:
    """A uvicorn process on a free port of 127.0.0.1, its output kept in a log file."""

    def __init__(self, name: str, app: str, extra: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                *("--host", HOST, "--port", str(self.port)),
                *("--loop", "uvloop", "--http", "httptools"),
                *("--no-access-log", "--log-level", "warning"),
                *("--timeout-graceful-shutdown", "5"),
                # Last, so that a server's own options win.
                *extra,
            ],
            env=env,
            # Not the project root: a `.env` there must not change what is measured.
            cwd=tempfile.gettempdir(),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.psutil = psutil.Process(self.process.pid)

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        """Wait until `path` answers 200, or fail with the server's output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with suppress(OSError, http.client.HTTPException):
                status, _ = fetch(self.port, path)
                if status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.output()}")

    def rss_mib(self) -> float:
        try:
            return self.psutil.memory_info().rss / MIB
        except psutil.Error:
            return 0.0

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def fetch(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class PeakRss:
    """Samples a process's resident memory every 20 ms while in use; `peak` is the largest."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = server.rss_mib()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, self.server.rss_mib())

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.server.rss_mib())


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_wrk(output: str) -> tuple[int, float, float | None, float | None, int]:
    """Requests, requests/s, p50 and p99 in ms, and errors (socket errors and non-2xx/3xx)."""
    done = re.search(r"(\d+) requests in", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if done is None or rate is None:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    percentiles: dict[str, float | None] = {"50": None, "99": None}
    pattern = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)", re.M)
    for percent, value, unit in pattern.findall(output):
        percentiles[percent] = float(value) * _UNITS_MS[unit]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return int(done.group(1)), float(rate.group(1)), percentiles["50"], percentiles["99"], errors


def run_wrk(url: str, connections: int, seconds: int, threads: int) -> str:
    command = [
        "wrk",
        *(f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s"),
        *("--timeout", "30s", "--latency", url),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def measure(
    target: Target, server: Server, body: str, connections: int, args: argparse.Namespace
) -> Result:
    url = target.url(server.port, body)
    with PeakRss(server) as rss:
        output = run_wrk(url, connections, args.seconds, args.threads)
    done, rate, p50, p99, errors = parse_wrk(output)
    size = len(SMALL_BODY) if body == SMALL else BIG_SIZE
    return Result(
        target=target.key,
        label=target.label,
        body=body,
        concurrency=connections,
        requests=done,
        requests_per_s=rate,
        mib_per_s=rate * size / MIB,
        p50_ms=p50,
        p99_ms=p99,
        errors=errors,
        peak_rss_mib=rss.peak,
    )


def check_target(target: Target, server: Server) -> None:
    """One request of each body through the target must come back whole, or nothing counts."""
    for body, expected in ((SMALL, len(SMALL_BODY)), (BIG, BIG_SIZE)):
        path = target.url(server.port, body).split(str(server.port), 1)[1]
        status, content = fetch(server.port, path)
        if status != 200 or len(content) != expected:
            raise RuntimeError(
                f"{target.label}: GET {path} gave {status} with {len(content)} bytes, "
                f"expected 200 with {expected}\n{server.output()}"
            )


def service_env(base: dict[str, str], upstream_url: str, pool: int) -> dict[str, str]:
    """The service's settings: the benchmark's upstream, a pool for every connection wrk opens."""
    return {
        **base,
        "UPSTREAM_BASE_URL": upstream_url,
        "UPSTREAM_MAX_CONNECTIONS": str(pool),
        "UPSTREAM_MAX_KEEPALIVE_CONNECTIONS": str(pool),
        "LOG_LEVEL": "WARNING",
{%- if cookiecutter.response_mode != "stream" %}
        # Room for the 10 MiB body when it is read whole.
        "BUFFERED_MAX_BYTES": str(2 * BIG_SIZE),
{%- endif %}
    }


def targets(names: set[str]) -> list[Target]:
    """Every target asked for: the service first, then the baselines."""
    style = SERVICE_ENDPOINTS[0][1]
    found = [
        Target(f"service {prefix}", f"service {prefix}", "service", prefix)
        for prefix, _ in SERVICE_ENDPOINTS
    ]
    found += [
        Target("direct", "upstream, direct (ceiling)", "upstream", "/"),
        Target("requests", "requests.get in async def", "requests", "/whole/"),
        Target("httpx", f"httpx 0.28 shared client ({style})", "httpx", f"/{style}/"),
        Target("bare", "bare ASGI relay on aiohttp", "bare", "/chunks/"),
    ]
    return [target for target in found if target.server in names]


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator > 0 else "-"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in [headers, *rows]
    ]
    lines.insert(1, "| " + " | ".join("-" * width for width in widths) + " |")
    return "\n".join(lines)


def report(results: list[Result], started: dict[str, float]) -> str:
    headers = ["target", "body", "conc", "req/s", "MiB/s", "p50 ms", "p99 ms", "errors", "RSS MiB"]
    rows = [
        [
            r.label,
            r.body,
            str(r.concurrency),
            f"{r.requests_per_s:,.0f}",
            f"{r.mib_per_s:,.1f}",
            ms(r.p50_ms),
            ms(r.p99_ms),
            str(r.errors),
            f"{r.peak_rss_mib:.0f}",
        ]
        for r in results
    ]
    parts = ["## Results", "", markdown(headers, rows)]

    by_cell = {(r.target, r.body, r.concurrency): r for r in results}
    baselines = {
        "direct": "upstream direct",
        "requests": "requests relay",
        "httpx": "httpx relay",
        "bare": "bare relay",
    }
    service_results = [r for r in results if r.target.startswith("service")]
    ratio_rows = [
        [
            r.label,
            r.body,
            str(r.concurrency),
            *(
                ratio(r.requests_per_s, base.requests_per_s)
                if (base := by_cell.get((key, r.body, r.concurrency)))
                else "-"
                for key in baselines
            ),
        ]
        for r in service_results
    ]
    parts += [
        "",
        "## The service relative to each baseline (ratio of req/s; above 1x the service is faster)",
        "",
        markdown(["target", "body", "conc", *(f"vs {n}" for n in baselines.values())], ratio_rows),
    ]
    if service_results:
        peak = max(r.peak_rss_mib for r in service_results)
        parts.append(
            f"\nService RSS: {started.get('service', 0):.0f} MiB after start-up, "
            f"peak {peak:.0f} MiB (sampled every 20 ms)."
        )
    parts += ["", *verdicts(by_cell)]
    return "\n".join(parts)


def verdicts(by_cell: dict[tuple[str, str, int], Result]) -> list[str]:
    """The template's goals for the service, each met or missed, where measured."""
    service = f"service {SERVICE_ENDPOINTS[0][0]}"
    lines = ["## Goals", ""]

    def goal(text: str, met: bool, detail: str) -> None:
        lines.append(f"- [{'x' if met else ' '}] {text}: {detail}{'' if met else '  **MISSED**'}")

    s64 = by_cell.get((service, SMALL, 64))
    for key, factor in (("httpx", 3.0), ("requests", 2.0)):
        base = by_cell.get((key, SMALL, 64))
        if s64 and base:
            got = s64.requests_per_s / base.requests_per_s if base.requests_per_s else float("inf")
            goal(f"small JSON at 64: >= {factor:g}x the {key} relay", got >= factor, f"{got:.2f}x")
    s256 = by_cell.get((service, SMALL, 256))
    if s256:
        goal("no errors at 256 connections", s256.errors == 0, f"{s256.errors} errors")
    for (key, body, connections), r in sorted(by_cell.items()):
        direct = by_cell.get(("direct", BIG, connections))
        if key == service and body == BIG and direct and direct.mib_per_s:
            share = r.mib_per_s / direct.mib_per_s
            rates = f"{r.mib_per_s:,.0f} of {direct.mib_per_s:,.0f} MiB/s"
            detail = f"{share * 100:.0f} percent ({rates})"
            if bare := by_cell.get(("bare", BIG, connections)):
                detail += f"; the bare relay: {bare.mib_per_s / direct.mib_per_s * 100:.0f} percent"
            text = f"10 MiB at {connections}: >= 50% of direct upstream throughput"
            goal(text, share >= 0.5, detail)
    return lines


def describe_machine(args: argparse.Namespace) -> str:
    def package(name: str) -> str:
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            return f"{name} (not installed)"

    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout or wrk.stderr).split("[", 1)[0].strip() or "wrk"
    # The service's own requirements, as installed, and what the baselines add.
    requirements = requires(DISTRIBUTION) or []
    names = [re.split(r"[^A-Za-z0-9_.-]", req, maxsplit=1)[0] for req in requirements]
    names += ["starlette", "httpx", "requests", "aiohttp"]
    cpus = os.cpu_count() or 1
    return "\n".join(
        [
            f"# Benchmark: {SERVICE_APP} ({CLIENT_PACKAGE} client, {TRANSPORT} transport)",
            "",
            f"Python {platform.python_version()}, "
            + ", ".join(package(name) for name in sorted(set(names)))
            + f", {wrk_version}.",
            f"{cpus} CPU cores, shared by the upstream, the relay measured and wrk "
            f"(-t{args.threads}), all on {HOST}; {args.seconds} s per cell, after a "
            f"{args.warmup} s warm-up per target; the upstream answers after "
            f"{args.upstream_delay_ms:g} ms.",
        ]
    )


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into an exception, so the `finally` that stops the servers runs."""

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
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per cell (5)")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds per target (1)")
    parser.add_argument(
        "--small", type=counts, default=[1, 64, 256], help="connections for small JSON (1,64,256)"
    )
    parser.add_argument("--big", type=counts, default=[1, 16], help="connections for 10 MiB (1,16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--targets",
        default="service,upstream,requests,httpx,bare",
        help="servers to measure (service,upstream,requests,httpx,bare)",
    )
    parser.add_argument(
        "--upstream-delay-ms",
        type=float,
        default=0.0,
        help="milliseconds the upstream waits before each answer, to play a remote API (0)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
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
    pool = max([*args.small, *args.big]) + 16
    base = {k: v for k, v in os.environ.items() if not k.startswith(("UPSTREAM_", "BENCH_"))}
    bench_dir = ("--app-dir", str(BENCHMARKS))
    results: list[Result] = []
    started: dict[str, float] = {}
    machine = describe_machine(args)
    print(machine, flush=True)
    with stop_on_sigterm(), ExitStack() as stack:
        upstream_env = {**base, "BENCH_UPSTREAM_DELAY_MS": str(args.upstream_delay_ms)}
        upstream_args = [*bench_dir, "--lifespan", "off"]
        upstream = Server("upstream", "upstream:app", upstream_args, upstream_env)
        stack.callback(upstream.stop)
        upstream.wait_ready(f"/{SMALL_PATH}")
        upstream_url = f"http://{HOST}:{upstream.port}/"
        baseline_env = {
            **base,
            "BENCH_UPSTREAM_URL": upstream_url,
            "BENCH_MAX_CONNECTIONS": str(pool),
        }
        servers = {"upstream": upstream}
        ready = f"/whole/{SMALL_PATH}"
        plans = [
            (
                "service",
                SERVICE_APP,
                SERVICE_OPTIONS,
                service_env(base, upstream_url, pool),
                HEALTH,
            ),
            ("requests", "baselines:requests_relay", bench_dir, baseline_env, ready),
            ("httpx", "baselines:httpx_relay", bench_dir, baseline_env, ready),
            ("bare", "baselines:bare_relay", bench_dir, baseline_env, f"/chunks/{SMALL_PATH}"),
        ]
        for name, app, extra, env, path in plans:
            if name in names:
                server = Server(name, app, extra, env)
                stack.callback(server.stop)
                server.wait_ready(path)
                servers[name] = server
                started[name] = server.rss_mib()
        for target in targets(names):
            server = servers[target.server]
            check_target(target, server)
            print(f"\nMeasuring {target.label} ...", file=sys.stderr, flush=True)
            if args.warmup > 0:
                run_wrk(target.url(server.port, SMALL), 64, args.warmup, args.threads)
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
        for server in servers.values():
            if server.process.poll() is not None:
                print(f"{server.name} exited during the run:\n{server.output()}", file=sys.stderr)
    print()
    print(report(results, started))
    if args.json:
        document = {"machine": machine, "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
