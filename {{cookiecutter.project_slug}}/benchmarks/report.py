"""The benchmark's results as Markdown: every measurement, then the service against baselines."""

from collections.abc import Sequence

from benchmarks.wrk import Result

# The baselines the service is compared with, by target key, as the ratio table names them.
BASELINES = {
    "direct": "upstream direct",
    "requests": "requests relay",
    "httpx": "httpx relay",
    "fastapi": "FastAPI + aiohttp relay",
    "bare": "bare relay",
}


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in [headers, *rows]
    ]
    lines.insert(1, "| " + " | ".join("-" * width for width in widths) + " |")
    return "\n".join(lines)


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator > 0 else "-"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def results_table(results: Sequence[Result]) -> str:
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
    return markdown(headers, rows)


def ratios_table(results: Sequence[Result]) -> str:
    """Each service row against the baseline measured with the same body and concurrency."""
    by_cell = {(r.target, r.body, r.concurrency): r for r in results}
    rows = []
    for r in results:
        if not r.target.startswith("service"):
            continue
        cells = []
        for key in BASELINES:
            base = by_cell.get((key, r.body, r.concurrency))
            cells.append(ratio(r.requests_per_s, base.requests_per_s) if base else "-")
        rows.append([r.label, r.body, str(r.concurrency), *cells])
    headers = ["target", "body", "conc", *(f"vs {name}" for name in BASELINES.values())]
    return markdown(headers, rows)


def report(results: Sequence[Result], rss_at_start: float | None) -> str:
    parts = ["## Results", "", results_table(results)]
    service = [r for r in results if r.target.startswith("service")]
    if service:
        parts += [
            "",
            "## The service relative to each baseline (ratio of req/s; above 1x it is faster)",
            "",
            ratios_table(results),
            "",
            f"Service RSS: {rss_at_start or 0:.0f} MiB after start-up, "
            f"peak {max(r.peak_rss_mib for r in service):.0f} MiB (sampled every 20 ms).",
        ]
    return "\n".join(parts)
