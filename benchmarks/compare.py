"""Benchmark every client package x transport combination of the template, side by side.

From the template's root: `python -m benchmarks.compare [--seconds 5]` (needs what
`pip install -r requirements-dev.txt` gives, and `wrk`).

Renders each combination of `httpx_package` and `http_transport` (the other answers at their
defaults unless given as key=value) into a temporary directory, runs each project's own
benchmark one after the other, and prints one table: the service's requests/s for every body
and concurrency in each combination, with the baselines measured in the same runs, and then
the template's goals for each combination, met or missed.

`--before REF` also renders each combination from the template as it was at git `REF`, and
measures its service right before the current one's, so that a change is judged before and
after in one run on one machine.
"""

import argparse
import io
import itertools
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from tests.projects import CHOICES, DEFAULTS, TEMPLATE, Answers, Project, render

BASELINES = {
    "direct": "upstream direct",
    "requests": "requests relay",
    "httpx": "httpx 0.28 relay",
    "fastapi": "FastAPI + aiohttp relay",
    "bare": "bare ASGI relay",
}
SMALL, BIG = "small JSON", "10 MiB"
# The template's goals for a service, small JSON at 64 connections: at least as fast as the
# relay a user would write by hand (FastAPI + one aiohttp session), within a given share of the
# least Python can do (the bare relay), and far faster than the relays written the usual ways.
FASTER_THAN = {"fastapi": 1.0, "bare": 0.6, "httpx": 3.0, "requests": 2.0}
# Its p99 latency no worse than the hand-written relay's, and its share of the upstream's own
# rate on a 10 MiB body at 4 connections.
P99_NO_WORSE_THAN = "fastapi"
SHARE_OF_DIRECT = 0.9


def template_at(ref: str, workdir: Path) -> Path:
    """The template's files as they were at git `ref`."""
    archive = subprocess.run(
        ["git", "-C", str(TEMPLATE), "archive", ref], capture_output=True, check=True
    ).stdout
    target = workdir / f"template-{ref.replace('/', '-')}"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def bench(
    answers: Answers, workdir: Path, bench_args: list[str], template: Path = TEMPLATE, label: str = ""
) -> dict[str, Any]:
    """Render one combination, run its benchmark, and return the results it wrote."""
    name = f"{answers['httpx_package']}-{answers['http_transport']}{label}"
    output = workdir / name
    output.mkdir()
    print(f"Rendering and installing {name} ...", file=sys.stderr, flush=True)
    rendered = render(output, answers, template)
    if rendered.returncode != 0:
        raise SystemExit(f"rendering {name} failed:\n{rendered.stdout}\n{rendered.stderr}")
    (path,) = output.iterdir()
    project = Project(path, {**DEFAULTS, **answers}, shared=workdir / "environments" / name)
    results = workdir / f"{name}.json"
    project.uv("sync", "--locked", "--quiet")
    command = ["run", "--locked", "--group", "bench", "python", "-m", "benchmarks.bench"]
    project.uv(*command, *bench_args, "--json", str(results), timeout=3600)
    document: dict[str, Any] = json.loads(results.read_text())
    return document


def goals(results: list[dict[str, Any]]) -> list[str]:
    """The template's goals for each of one combination's relay endpoints, met or missed, where
    measured."""
    cells = {(r["target"], r["body"], r["concurrency"]): r for r in results}
    lines = []
    for service in sorted({r["target"] for r in results if r["target"].startswith("service")}):
        lines += endpoint_goals(cells, service)
    return lines


def endpoint_goals(cells: dict[tuple[str, str, int], dict[str, Any]], service: str) -> list[str]:
    """The goals for one endpoint (`service /stream/`)."""
    endpoint = service.removeprefix("service ")
    lines = []

    def goal(text: str, met: bool, detail: str) -> None:
        missed = "" if met else "  **MISSED**"
        lines.append(f"- [{'x' if met else ' '}] {endpoint} {text}: {detail}{missed}")

    small = cells.get((service, SMALL, 64))
    for key, factor in FASTER_THAN.items():
        base = cells.get((key, SMALL, 64))
        if small and base and base["requests_per_s"]:
            got = small["requests_per_s"] / base["requests_per_s"]
            goal(f"small JSON at 64: >= {factor:g}x the {key} relay", got >= factor, f"{got:.2f}x")
    base = cells.get((P99_NO_WORSE_THAN, SMALL, 64))
    if small and base and small.get("p99_ms") is not None and base.get("p99_ms") is not None:
        detail = f"{small['p99_ms']:.1f} ms, the {P99_NO_WORSE_THAN} relay {base['p99_ms']:.1f} ms"
        goal("p99 at 64 no worse than the fastapi relay's", small["p99_ms"] <= base["p99_ms"], detail)
    if busy := cells.get((service, SMALL, 256)):
        goal("no errors at 256 connections", busy["errors"] == 0, f"{busy['errors']} errors")
    for (target, body, connections), r in sorted(cells.items()):
        direct = cells.get(("direct", BIG, connections))
        streamed = target == service and endpoint == "/stream/" and body == BIG
        if streamed and direct and direct["mib_per_s"]:
            share = r["mib_per_s"] / direct["mib_per_s"]
            detail = f"{share:.0%} ({r['mib_per_s']:,.0f} of {direct['mib_per_s']:,.0f} MiB/s)"
            if bare := cells.get(("bare", BIG, connections)):
                detail += f"; the bare relay: {bare['mib_per_s'] / direct['mib_per_s']:.0%}"
            text = f"10 MiB at {connections}: >= {SHARE_OF_DIRECT:.0%} of the direct rate"
            goal(text, share >= SHARE_OF_DIRECT, detail)
    return lines


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
        for row in [headers, *rows]
    ]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def combined(runs: dict[str, dict[str, Any]]) -> str:
    """One row per service endpoint, body and concurrency; per combination: req/s, ratios, errors."""
    headers = ["endpoint", "body", "conc"]
    for name in runs:
        headers += [
            f"{name} req/s",
            f"{name} vs {BASELINES['httpx']}",
            f"{name} vs {BASELINES['requests']}",
            f"{name} % of direct",
            f"{name} errors",
        ]
    cells: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = {}
    for name, document in runs.items():
        by_cell = {(r["target"], r["body"], r["concurrency"]): r for r in document["results"]}
        for (target, body, conc), result in by_cell.items():
            if target.startswith("service"):
                entry = dict(result)
                for key in BASELINES:
                    base = by_cell.get((key, body, conc))
                    entry[key] = base["requests_per_s"] if base else 0.0
                cells.setdefault((target.removeprefix("service "), body, conc), {})[name] = entry
    rows = []
    for (endpoint, body, conc), per_run in cells.items():
        row = [endpoint, body, str(conc)]
        for name in runs:
            r = per_run.get(name)
            if r is None:
                row += ["-"] * 5
                continue
            rate = r["requests_per_s"]
            row += [
                f"{rate:,.0f}" + (f" ({r['mib_per_s']:,.0f} MiB/s)" if body != "small JSON" else ""),
                f"{rate / r['httpx']:.2f}x" if r["httpx"] else "-",
                f"{rate / r['requests']:.2f}x" if r["requests"] else "-",
                f"{100 * rate / r['direct']:.0f}" if r["direct"] else "-",
                str(r["errors"]),
            ]
        rows.append(row)
    baseline_headers = ["baseline", "body", "conc", *runs]
    baseline_rows = []
    first = next(iter(runs.values()))
    for result in first["results"]:
        if result["target"] in BASELINES:
            cell = (result["target"], result["body"], result["concurrency"])
            row = [result["label"], result["body"], str(result["concurrency"])]
            for document in runs.values():
                match = [r for r in document["results"] if (r["target"], r["body"], r["concurrency"]) == cell]
                row.append(f"{match[0]['requests_per_s']:,.0f}" if match else "-")
            baseline_rows.append(row)
    return "\n\n".join(
        [
            "## The service in each combination (ratios against the baselines of the same run)",
            markdown(headers, rows),
            "## Baselines as measured in each run (req/s; the spread is this machine's noise)",
            markdown(baseline_headers, baseline_rows),
        ]
    )


def before_after(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The service's cells measured before and after, side by side."""
    earlier = {(r["target"], r["body"], r["concurrency"]): r for r in before["results"]}
    rows = []
    for r in after["results"]:
        old = earlier.get((r["target"], r["body"], r["concurrency"]))
        if not r["target"].startswith("service") or old is None:
            continue
        change = r["requests_per_s"] / old["requests_per_s"] if old["requests_per_s"] else 0.0
        rows.append(
            [
                r["target"].removeprefix("service "),
                r["body"],
                str(r["concurrency"]),
                f"{old['requests_per_s']:,.0f}",
                f"{r['requests_per_s']:,.0f}",
                f"{change:.2f}x",
                f"{old['p99_ms']:.1f}" if old.get("p99_ms") is not None else "-",
                f"{r['p99_ms']:.1f}" if r.get("p99_ms") is not None else "-",
            ]
        )
    headers = ["endpoint", "body", "conc", "before req/s", "after req/s", "after/before"]
    return markdown([*headers, "before p99 ms", "after p99 ms"], rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per cell (5)")
    parser.add_argument("--keep", action="store_true", help="keep the rendered projects")
    parser.add_argument("--before", metavar="REF", help="also measure the template at this git ref")
    parser.add_argument("--only", help="the combinations to measure, as httpx2+aiohttp,httpx+native (all)")
    parser.add_argument("answers", nargs="*", help="other cookiecutter answers, as key=value")
    parser.add_argument("--bench-arg", action="append", default=[], help="passed on to bench.py (repeatable)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: sudo apt-get install -y wrk (or brew install wrk)", file=sys.stderr)
        return 2
    extra = dict(answer.split("=", 1) for answer in args.answers)
    bench_args = ["--seconds", str(args.seconds), *args.bench_arg]
    workdir = Path(tempfile.mkdtemp(prefix="relay-compare-"))
    runs: dict[str, dict[str, Any]] = {}
    earlier: dict[str, dict[str, Any]] = {}
    try:
        old_template = template_at(args.before, workdir) if args.before else None
        for package, transport in itertools.product(CHOICES["httpx_package"], CHOICES["http_transport"]):
            name = f"{package}+{transport}"
            if args.only and name not in args.only.split(","):
                continue
            answers = {**extra, "httpx_package": package, "http_transport": transport}
            if old_template is not None:
                service_only = [*bench_args, "--targets", "service"]
                earlier[name] = bench(answers, workdir, service_only, old_template, "-before")
            runs[name] = bench(answers, workdir, bench_args)
    finally:
        if args.keep:
            print(f"Rendered projects kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print("# The service in every client package x transport combination")
    print(next(iter(runs.values()))["machine"].split("\n", 1)[1])
    print()
    print(combined(runs))
    for name, document in runs.items():
        if name in earlier:
            print(f"\n## Before ({args.before}) and after: {name}\n")
            print(before_after(earlier[name], document))
        print(f"\n## Goals: {name}\n")
        print("\n".join(goals(document["results"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
