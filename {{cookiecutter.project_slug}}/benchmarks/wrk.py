"""Drive one URL with wrk and read what it measured, and the peak memory of the server behind."""

import re
import subprocess
import threading
from dataclasses import dataclass

import psutil

MIB = 1024 * 1024
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


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


@dataclass(frozen=True)
class Measured:
    """wrk's own figures for one run."""

    requests: int
    requests_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int


def rss_mib(pid: int) -> float:
    try:
        rss: int = psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0.0
    return rss / MIB


class PeakRss:
    """Samples a process's resident memory every 20 ms while in use; `peak` is the largest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mib(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, rss_mib(self.pid))

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib(self.pid))


def parse(output: str) -> Measured:
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
    return Measured(
        int(done.group(1)), float(rate.group(1)), percentiles["50"], percentiles["99"], errors
    )


def run(url: str, connections: int, seconds: int, threads: int) -> str:
    """wrk's report for `url` at `connections` for `seconds`; fails with its output if wrk does."""
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


def version() -> str:
    result = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (result.stdout or result.stderr).split("[", 1)[0].strip() or "wrk"
