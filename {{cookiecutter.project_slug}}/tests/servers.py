"""Real servers on 127.0.0.1: apps under uvicorn in a thread (`serve`, and the service with its
own server options, `serve_service` and `serve_relay`), and processes: apps under uvicorn
(`run_uvicorn`), and the service started as in production (`run_service`).

The tests and the benchmark both start their servers here.
"""

import asyncio
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

{{ cookiecutter.__httpx_import }}
import pytest
import uvicorn
from starlette.types import ASGIApp

from {{ cookiecutter.package_name }}.app import create_app
from {{ cookiecutter.package_name }}.server import server_options
from {{ cookiecutter.package_name }}.settings import Settings

# One TLS context for the clients the tests build by the dozen: each client would otherwise load
# the CA bundle, ~20 ms of CPU. (The servers under test speak plain HTTP anyway.)
CLIENT_TLS = ssl.create_default_context()


class QuickServer(uvicorn.Server):
    """uvicorn's server, looking for the signal to stop every 10 ms instead of every 100 ms.

    The tests start and stop dozens of servers, and each stop waits for the next look.
    """

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter += 1
            await asyncio.sleep(0.01)


@contextmanager
def serve(app: ASGIApp, **options: Any) -> Iterator[str]:
    """Run `app` under uvicorn in a thread on a free loopback port; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options.setdefault("log_level", "warning")
    # A test that leaves a stream open must not hang the run on shutdown.
    options.setdefault("timeout_graceful_shutdown", 2)
    server = QuickServer(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class CollectedLog(logging.Handler):
    """Every record an in-thread service logs, formatted and kept in memory.

    Not read from a captured stream: a late line from an earlier test's server could land there.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, seconds: float = 30) -> bool:
        """Whether `text` is logged within `seconds`: a line may follow its response."""
        deadline = time.monotonic() + seconds
        while text not in self.text():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


@contextmanager
def collect_logs() -> Iterator[CollectedLog]:
    """What the service's package and uvicorn log while in this block (in this process)."""
    collected = CollectedLog()
    loggers = [logging.getLogger("{{ cookiecutter.package_name }}"), logging.getLogger("uvicorn")]
    for logger in loggers:
        logger.addHandler(collected)
    try:
        yield collected
    finally:
        for logger in loggers:
            logger.removeHandler(collected)


def free_port() -> int:
    """A loopback port that nothing listens on now, for a server about to bind it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port held but never listened on: connecting to it is refused until the end.

    A port that is merely free can be taken by another server of a parallel test run.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


def serve_service(app: ASGIApp, settings: Settings) -> AbstractContextManager[str]:
    """Run the service's `app` under uvicorn as `{{ cookiecutter.project_slug }}` runs it (`server.py`)."""
    return serve(app, **server_options(settings))


def serve_relay(settings: Settings) -> AbstractContextManager[str]:
    """Run the service made from `settings` as production does."""
    return serve_service(create_app(settings), settings)


def relay_settings(upstream: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "upstream_base_url": f"{upstream}/api/",
        "upstream_timeout": 5.0,
        # A test that leaves a stream open must not hang the run on shutdown.
        "shutdown_timeout": 2.0,
        # Tests that fail on purpose share relays: a breaker opened by one would refuse the
        # next test's calls (test_resilience.py gives relays of their own a breaker).
        "upstream_breaker": False,
    }
    values.update(overrides)
    return Settings(**values)


# For tests that measure the service's peak memory: only Linux lets another process read it
# (VmHWM in /proc/<pid>/status) and reset it (/proc/<pid>/clear_refs).
linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="peak memory is read from /proc, which only Linux has"
)


@dataclass
class Service:
    """An app running in its own uvicorn process: the service, or the benchmark's servers."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_mark(self) -> int:
        """Where the log ends now: `log(since=mark)` is then what was written after this."""
        return self.log_path.stat().st_size

    def log(self, since: int = 0) -> str:
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode()

    def log_lines_with(self, text: str, seconds: float = 5, since: int = 0) -> list[str]:
        """The log lines holding `text`, waiting for the first: a line may follow its response."""
        deadline = time.monotonic() + seconds
        while not (lines := [line for line in self.log(since).splitlines() if text in line]):
            if time.monotonic() > deadline:
                return []
            time.sleep(0.02)
        return lines

    def peak_rss_kib(self) -> int:
        """The process's peak resident memory since start or `reset_peak_rss` (VmHWM), in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError("no VmHWM in /proc: peak memory cannot be read on this system")

    def reset_peak_rss(self) -> None:
        """Lower the peak resident memory to the current one, as if the process had just started.

        A shared service has had its peaks from earlier tests; after this, `peak_rss_kib` sees
        only what came since.
        """
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        except OSError as exc:
            raise RuntimeError(f"peak memory cannot be reset on this system: {exc}") from exc

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator sends it, without waiting for the process to end."""
        self.process.send_signal(signal.SIGTERM)

    def exit_status(self) -> int:
        """The exit status, once the process has ended."""
        return self.process.wait(timeout=60)


@contextmanager
def run_process(
    command: list[str], port: int, env: Mapping[str, str], ready: str = "/healthz"
) -> Iterator[Service]:
    """Start `command`, serving on `port`; yield it once `ready` answers 200.

    It runs in an empty directory, so a `.env` in the project cannot change what is tested.
    The process is killed on the way out if it is still running.
    """
    with tempfile.TemporaryDirectory() as directory:
        log_path = Path(directory) / "process.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, env=env, cwd=directory, stderr=log, stdout=log)
        service = Service(f"http://127.0.0.1:{port}", process, log_path)
        try:
            wait_until_ready(service, ready)
            yield service
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def run_uvicorn(
    app: str, *options: str, env: Mapping[str, str], ready: str = "/healthz"
) -> AbstractContextManager[Service]:
    """Start `uvicorn app` in its own process on a free port (the benchmark's other servers)."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", app,
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", *options,
    ]  # fmt: skip
    return run_process(command, port, env, ready)


# How the image starts the service (its Dockerfile's CMD): the tests and the benchmark do the same.
SERVICE_COMMAND = [str(Path(sys.executable).with_name("{{ cookiecutter.project_slug }}"))]


def run_service(upstream: str, **settings: str) -> AbstractContextManager[Service]:
    """The service as in production, configured through its environment, relaying to `upstream`."""
    port = free_port()
    env = {
        **os.environ,
        "UPSTREAM_BASE_URL": f"{upstream}/api/",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SHUTDOWN_TIMEOUT": "10",
    }
    env.update(settings)
    return run_process(SERVICE_COMMAND, port, env)


def wait_until_ready(service: Service, path: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=service.url, verify=CLIENT_TLS) as probe:
        while True:
            assert service.process.poll() is None, service.log()
            assert time.monotonic() < deadline, f"{path} did not answer 200:\n{service.log()}"
            try:
                if probe.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
