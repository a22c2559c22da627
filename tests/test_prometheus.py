"""The metrics as a real Prometheus sees them: Debian's `prometheus` scrapes the service every
second while it relays to an upstream that fails on purpose, evaluates the alerting rules the
project ships without an error, sets off the ones those failures should, and answers every query
docs/deploy.md recommends with data."""

import functools
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.projects import DEFAULTS, Bake, Project, environment_key
from tests.running import free_port, image_command, program, serving

pytestmark = pytest.mark.xdist_group(environment_key(DEFAULTS))


class _Upstream(BaseHTTPRequestHandler):
    """`/fail/...` answers 500, anything else 200."""

    def do_GET(self) -> None:
        self.send_response(500 if self.path.startswith("/fail/") else 200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def upstream() -> Iterator[str]:
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}"


def recommended_queries(project: Project) -> list[str]:
    """The PromQL in the list of queries docs/deploy.md recommends."""
    docs = project.read("docs/deploy.md")
    listed = docs[docs.index("Queries worth a dashboard") : docs.index("- **Alerts.**")]
    return re.findall(r"`([^`]+)`", listed)


def get(url: str) -> Any:
    """GET `url`; its JSON, or its text."""
    with urllib.request.urlopen(url, timeout=30) as response:
        body = response.read()
    return json.loads(body) if body.startswith(b"{") else body.decode()


@contextmanager
def prometheus(
    executable: str, directory: Path, target: str, rules: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Prometheus server (`executable`) scraping `target` and evaluating `rules`, every second."""
    config = directory / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [{"job_name": "relay", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    port = free_port()
    log = (directory / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            executable,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: get(f"{url}/-/ready"), server, "ready")
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def eventually(condition: Callable[[], object], server: subprocess.Popen[bytes], what: str) -> None:
    """Wait until `condition` holds: Prometheus scrapes and evaluates once a second, so a minute
    is many rounds."""
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, "prometheus exited"
        try:
            if condition():
                return
        except OSError:
            pass  # not listening yet
        assert time.monotonic() < deadline, f"not within a minute: {what}"
        time.sleep(0.2)


def fetch(url: str) -> int:
    """GET `url`; its status."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


@contextmanager
def traffic(service: str) -> Iterator[list[tuple[str, int]]]:
    """Callers relaying through both endpoints, half of them to a path the upstream fails;
    yields the list of the answers that were not the upstream's."""
    stop = threading.Event()
    wrong: list[tuple[str, int]] = []

    def call() -> None:
        while not stop.is_set():
            for path in ["/stream/ok", "/buffered/ok", "/stream/fail/x", "/buffered/fail/x"]:
                status = fetch(service + path)
                if status != (500 if "fail" in path else 200):
                    wrong.append((path, status))
            stop.wait(0.05)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    try:
        yield wrong
    finally:
        stop.set()
        caller.join(timeout=60)


def test_prometheus_scrapes_the_service_evaluates_its_rules_and_answers_the_docs_queries(
    bake: Bake, tmp_path: Path
) -> None:
    executable = program("prometheus", "prometheus")
    project = bake()
    queries = recommended_queries(project)
    assert len(queries) >= 6, queries
    rules = project.path / "deploy" / "prometheus" / "alerts.yml"
    with (
        upstream() as origin,
        image_command(project, tmp_path, UPSTREAM_BASE_URL=f"{origin}/") as service,
        prometheus(executable, tmp_path, service.url.removeprefix("http://"), rules) as (url, server),
        traffic(service.url) as wrong,
    ):

        def answers(query: str) -> bool:
            found = get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
            return bool(found["data"]["result"])

        for query in queries:
            eventually(functools.partial(answers, query), server, query)

        def evaluated() -> list[dict[str, Any]]:
            groups = get(f"{url}/api/v1/rules")["data"]["groups"]
            return [rule for group in groups for rule in group["rules"]]

        eventually(
            lambda: all(rule["health"] != "unknown" for rule in evaluated()), server, "rules evaluated"
        )
        assert [rule["name"] for rule in evaluated() if rule["health"] != "ok"] == []

        def alerting() -> set[tuple[str, str]]:
            alerts = get(f"{url}/api/v1/alerts")["data"]["alerts"]
            return {(alert["labels"]["alertname"], alert["labels"].get("error_type", "")) for alert in alerts}

        # Half the relayed calls fail with the upstream's 500: both error alerts are on their way.
        expected = {("RelayErrorRatioHigh", ""), ("UpstreamErrorsHigh", "500")}
        eventually(lambda: expected <= alerting(), server, f"{expected} among {alerting()}")
    assert wrong == []
