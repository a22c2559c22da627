"""Benchmark every client package x transport combination of the template, side by side.

From the template's root: `python benchmarks/compare.py [--seconds 5]` (needs cookiecutter and
uv importable by this Python, as `pip install -r requirements-dev.txt` gives, and `wrk`).

Renders each combination of `httpx_package` and `http_transport` (the other answers at their
defaults unless given as key=value) into a temporary directory, runs each project's own
benchmark (`uv run python benchmarks/bench.py`) one after the other, and prints
one table: the service's requests/s for every body and concurrency in each combination, with
the baselines measured in the same runs.
"""

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parent.parent
CHOICES = json.loads((TEMPLATE / "cookiecutter.json").read_text())
UV = [sys.executable, "-m", "uv"]
BASELINES = {
    "direct": "upstream direct",
    "requests": "requests relay",
    "httpx": "httpx 0.28 relay",
    "bare": "bare ASGI relay",
}


def interpreter(version: str) -> str | None:
    """A local CPython `version`: on PATH, else under pyenv; None to let uv find one."""
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [
        str(p) for p in sorted(pyenv_root.glob(f"versions/{version}*/bin/python{version}"), reverse=True)
    ]
    for candidate in candidates:
        if (
            candidate
            and subprocess.run([candidate, "--version"], capture_output=True, check=False).returncode == 0
        ):
            return candidate
    return None


def environment(python_version: str) -> dict[str, str]:
    """No inherited virtualenv or version-manager pin; the project's Python for uv."""
    drop = {"VIRTUAL_ENV", "PYENV_VERSION", "UV_PROJECT_ENVIRONMENT"}
    env = {key: value for key, value in os.environ.items() if key not in drop}
    found = interpreter(python_version)
    if found:
        env["UV_PYTHON"] = found
    return env


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> None:
    print(f"$ {' '.join(command)}", file=sys.stderr, flush=True)
    result = subprocess.run(command, cwd=cwd, env=env, timeout=timeout, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {result.returncode} in {cwd}")


def bench(
    answers: dict[str, str], workdir: Path, bench_args: list[str], env: dict[str, str]
) -> dict[str, Any]:
    """Render one combination, run its benchmark, and return the results it wrote."""
    name = f"{answers['httpx_package']}-{answers['http_transport']}"
    output = workdir / name
    output.mkdir()
    run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "--output-dir", str(output), str(TEMPLATE)]
        + [f"{key}={value}" for key, value in answers.items()],
        cwd=workdir,
        env=env,
        timeout=600,
    )
    (project,) = output.iterdir()
    results = workdir / f"{name}.json"
    run([*UV, "sync", "--locked", "--quiet"], cwd=project, env=env, timeout=900)
    run(
        [*UV, "run", "--locked", "python", "benchmarks/bench.py", *bench_args, "--json", str(results)],
        cwd=project,
        env=env,
        timeout=3600,
    )
    document: dict[str, Any] = json.loads(results.read_text())
    return document


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per cell (5)")
    parser.add_argument("--keep", action="store_true", help="keep the rendered projects")
    parser.add_argument("answers", nargs="*", help="other cookiecutter answers, as key=value")
    parser.add_argument("--bench-arg", action="append", default=[], help="passed on to bench.py (repeatable)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: sudo apt-get install -y wrk (or brew install wrk)", file=sys.stderr)
        return 2
    extra = dict(answer.split("=", 1) for answer in args.answers)
    python_version = extra.get("python_version", CHOICES["python_version"][0])
    env = environment(python_version)
    workdir = Path(tempfile.mkdtemp(prefix="relay-compare-"))
    runs: dict[str, dict[str, Any]] = {}
    try:
        for package, transport in itertools.product(CHOICES["httpx_package"], CHOICES["http_transport"]):
            answers = {**extra, "httpx_package": package, "http_transport": transport}
            runs[f"{package}+{transport}"] = bench(
                answers, workdir, ["--seconds", str(args.seconds), *args.bench_arg], env
            )
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
