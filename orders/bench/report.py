"""`orders bench` results: the JSON document, its table, docs/benchmarks.md and the scaling plot."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from orders.bench.stats import Summary, ratio

SCHEMA = "orders-bench/1"
RATE, MS = "orders/s", "ms"
SCALING = (1, 2, 4)
LIMITS_HEADING = "## What limits the pipeline"

# key -> (label, unit); "{workers}" is the bench's worker layout.
FIGURES: dict[str, tuple[str, str]] = {
    "ceiling": ("ceiling: no-op drain, {workers} solo workers", RATE),
    "ceiling_stock": ("ceiling, kombu's stock Redis transport", RATE),
    "e2e": ("e2e, 0% failures", RATE),
    "latency_full_p50": ("latency p50, full speed", MS),
    "latency_full_p95": ("latency p95, full speed", MS),
    "latency_full_p99": ("latency p99, full speed", MS),
    "latency_half_p50": ("latency p50, half the e2e rate", MS),
    "latency_half_p95": ("latency p95, half the e2e rate", MS),
    "latency_half_p99": ("latency p99, half the e2e rate", MS),
    "e2e_fail10": ("e2e, 10% transient failures", RATE),
    "bridge": ("bridge alone, no worker", RATE),
    "baseline": ("baseline: blocking consumer, 10% failures", RATE),
    **{f"scaling_{k}": (f"e2e, {k} worker process{'es' if k > 1 else ''}", RATE) for k in SCALING},
}
# key -> (label, numerator figure, denominator figure)
RATIOS: dict[str, tuple[str, str, str]] = {
    "e2e_over_ceiling": ("e2e / ceiling, 0% failures", "e2e", "ceiling"),
    "e2e_fail10_over_ceiling": ("e2e / ceiling, 10% transient failures", "e2e_fail10", "ceiling"),
    "e2e_over_ceiling_stock": ("e2e / stock ceiling", "e2e", "ceiling_stock"),
    "bridge_over_e2e": ("bridge alone / e2e", "bridge", "e2e"),
    "e2e_fail10_over_baseline": ("e2e (10% failures) / baseline", "e2e_fail10", "baseline"),
}
# (ratio or figure key, comparison, wanted): the targets of issue 7
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("e2e_over_ceiling", ">=", 0.85),
    ("e2e_fail10_over_ceiling", ">=", 0.75),
    ("e2e_over_ceiling_stock", ">=", 1.0),
    ("bridge_over_e2e", ">=", 2.5),
    ("latency_half_p99", "<=", 50.0),
    ("e2e_fail10_over_baseline", ">=", 100.0),
)
METHODS = (
    "**ceiling**: N `orders.noop` tasks are published (pipelined batches of 500) under a staging key "
    "while the workers start; once every worker serves its metrics the list is renamed into the queue "
    "in one step. Completed = N - queue length - kombu's unacked hash, polled every 5 ms; the rate runs "
    "from the first completion seen to the queue and the unacked hash being empty. The stock variant "
    "starts the same workers with `ORDERS_STOCK_TRANSPORT=1`.",
    "**e2e**: workers and `orders bridge` running on a fresh topic (3 partitions), consumer group and "
    "Redis database; the bench produces N orders as fast as it can (or paced, for half load); rate = "
    "N / (last aggregate update - first produce). An order counts once settled: counted or dead-lettered "
    "(the aggregate's dedupe keeps the count exact). The 10% run sets `FAILURE_RATE=0.1` and "
    "`RETRY_BACKOFF_BASE=0`, so retries happen at once.",
    "**latency**: producer timestamp -> counted in the aggregate, from the workers' "
    "`orders_end_to_end_latency_seconds` histograms summed bucket by bucket; the quantiles are "
    "bucket-interpolated (as PromQL's `histogram_quantile`), so they are only as fine as the buckets. "
    "Half load produces at half the median full-speed e2e rate.",
    "**bridge alone**: N orders pre-produced, no worker, `MAX_QUEUE_DEPTH` above N; rate from the "
    "first batch landing in the Celery queue to the queue holding N (when N fits in one batch, "
    "as in a smoke run, from the bridge's readiness instead).",
    "**baseline**: one consumer (`orders/bench/baseline.py`) that decodes and records each order "
    "inline and, on an injected transient failure (10%), sleeps 2^n s in its poll loop (1, 2, 4 s) "
    "and retries, then gives up; orders done / time, over a fixed time from its first record.",
    "**scaling**: e2e at 1, 2 and 4 solo worker processes.",
)


def build_results(
    parameters: Mapping[str, Any],
    figures: Mapping[str, Summary],
    machine: Mapping[str, Any],
    command: str,
    started: str,
    finished: str,
) -> dict[str, Any]:
    """The JSON document: parameters, machine, figures, ratios of medians and the targets."""
    workers = parameters.get("workers", 2)
    doc_figures = {
        key: {"label": FIGURES[key][0].format(workers=workers), "unit": FIGURES[key][1],
              **figures[key].to_json()}
        for key in FIGURES if key in figures
    }  # fmt: skip
    medians = {key: summary.median for key, summary in figures.items()}
    ratios = {
        key: {"label": label, "value": value}
        for key, (label, top, bottom) in RATIOS.items()
        if (value := ratio(medians.get(top), medians.get(bottom))) is not None
    }
    return {
        "schema": SCHEMA,
        "command": command,
        "started": started,
        "finished": finished,
        "parameters": dict(parameters),
        "machine": dict(machine),
        "figures": doc_figures,
        "ratios": ratios,
        "targets": evaluate_targets(doc_figures, ratios),
    }


def evaluate_targets(figures: Mapping[str, Any], ratios: Mapping[str, Any]) -> list[dict[str, Any]]:
    targets = []
    for key, comparison, wanted in TARGETS:
        if key in ratios:
            label, measured = ratios[key]["label"], ratios[key]["value"]
        elif key in figures:
            label, measured = figures[key]["label"], figures[key]["median"]
        else:
            continue
        met = measured >= wanted if comparison == ">=" else measured <= wanted
        target = f"{comparison} {wanted:g}"
        targets.append({"key": key, "label": label, "measured": measured, "target": target, "met": met})
    return targets


def fmt(value: float, unit: str) -> str:
    if unit == RATE:
        return f"{value:,.0f}"
    if unit == MS:
        return f"{value:,.1f}"
    return f"{value:,.2f}" if value < 10 else f"{value:,.0f}"


def table(results: Mapping[str, Any]) -> Group:
    """For the terminal: the figures, then the ratios and the targets of issue 7."""
    params = results["parameters"]
    title = f"orders bench: {params['orders']:,} orders, median of {_runs(params['repeat'])}"
    figures = Table(title=title, title_justify="left")
    for name in ("figure", "median", "min", "max", "unit"):
        figures.add_column(name, justify="left" if name in ("figure", "unit") else "right")
    for f in results["figures"].values():
        figures.add_row(f["label"], *(fmt(f[k], f["unit"]) for k in ("median", "min", "max")), f["unit"])
    targets = Table(title="ratios of medians, against the targets", title_justify="left")
    for name in ("ratio", "measured", "target", "met"):
        targets.add_column(name, justify="right" if name == "measured" else "left")
    for t in results["targets"]:
        unit = MS if t["key"] in results["figures"] else ""
        targets.add_row(t["label"], fmt(t["measured"], unit), t["target"] + (" ms" if unit else ""),
                        "yes" if t["met"] else "[bold red]no[/]")  # fmt: skip
    with_target = {t["key"] for t in results["targets"]}
    for key, item in results["ratios"].items():
        if key not in with_target:
            targets.add_row(item["label"], fmt(item["value"], ""), "", "")
    return Group(figures, targets)


def markdown(results: Mapping[str, Any], plot: str | None, kept_limits: str | None = None) -> str:
    """docs/benchmarks.md; ``kept_limits`` is an existing "What limits the pipeline" section to keep."""
    params, machine = results["parameters"], results["machine"]
    lines = [
        "# Benchmarks", "",
        f"Measured by `orders bench` from {results['started']} to {results['finished']}. Reproduce with:",
        "", "```sh", results["command"], "```", "",
        f"Each figure is the median of {_runs(params['repeat'])} of {params['orders']:,} orders (no-op "
        f"tasks for the ceiling), with the lowest and highest run. Workers are "
        f"`celery -A worker worker --pool=solo` processes, {params['workers']} unless a figure says so.",
        "",
        "## Results", "", "| figure | median | min | max | unit |", "| --- | ---: | ---: | ---: | --- |",
    ]  # fmt: skip
    for f in results["figures"].values():
        cells = " | ".join(fmt(f[k], f["unit"]) for k in ("median", "min", "max"))
        lines.append(f"| {f['label']} | {cells} | {f['unit']} |")
    lines += ["", "Latencies are bucket-interpolated from Prometheus histograms (see below).", "",
              "## Against the targets of issue 7", "", "| target | measured | wanted | met |",
              "| --- | ---: | --- | --- |"]  # fmt: skip
    for t in results["targets"]:
        unit = MS if t["key"].startswith("latency") else ""
        met = "yes" if t["met"] else "**no**"
        lines.append(f"| {t['label']} | {fmt(t['measured'], unit)} | {t['target']} | {met} |")
    if plot:
        lines += ["", "## Scaling", "", f"![e2e throughput vs worker processes]({plot})"]
    lines += ["", "## Machine", "", "| | |", "| --- | --- |", *_machine_rows(machine), "",
              "## How each figure is measured", ""]  # fmt: skip
    lines += [f"- {method}" for method in METHODS]
    lines += ["", (kept_limits or _limits_placeholder()).rstrip(), ""]
    return "\n".join(lines)


def _runs(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def _machine_rows(machine: Mapping[str, Any]) -> list[str]:
    redis_server = machine.get("redis_server", {})
    packages = ", ".join(f"{name} {v}" for name, v in machine.get("packages", {}).items() if v)
    aof = "AOF " + (
        f"appendfsync {redis_server.get('appendfsync', '?')}" if redis_server.get("aof") else "off"
    )
    rows = {
        "CPU": f"{machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gib')} GiB",
        "OS": machine.get("os"), "Python": machine.get("python"), "packages": packages,
        "librdkafka": machine.get("librdkafka"), "Redis": f"{redis_server.get('version')}, {aof}",
        "Kafka broker": machine.get("broker"),
    }  # fmt: skip
    return [f"| {name} | {value} |" for name, value in rows.items()]


def _limits_placeholder() -> str:
    note = "<!-- to be written from a profile of a full-size run (py-spy or pyinstrument) -->"
    return f"{LIMITS_HEADING}\n\n{note}\n"


def kept_limits_section(existing: str) -> str | None:
    """The "What limits the pipeline" section of an existing report, up to the next heading of its level."""
    match = re.search(rf"^{re.escape(LIMITS_HEADING)}.*?(?=^## |\Z)", existing, re.MULTILINE | re.DOTALL)
    return match.group(0).rstrip() + "\n" if match else None


def write_report(results: Mapping[str, Any], path: Path) -> Path | None:
    """Write ``path`` (Markdown) and bench-scaling.png beside it; keeps a written limits section."""
    plot = write_plot(results, path.with_name("bench-scaling.png"))
    kept = kept_limits_section(path.read_text()) if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(results, plot.name if plot else None, kept))
    return plot


def write_plot(results: Mapping[str, Any], path: Path) -> Path | None:
    """Throughput vs worker processes (median, min-max bars) with the no-op ceiling; None without data."""
    points = [
        (k, results["figures"][f"scaling_{k}"]) for k in SCALING if f"scaling_{k}" in results["figures"]
    ]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs, medians = [k for k, _ in points], [f["median"] for _, f in points]
    errors = [[f["median"] - f["min"] for _, f in points], [f["max"] - f["median"] for _, f in points]]
    ax.errorbar(xs, medians, yerr=errors, marker="o", capsize=4, label="e2e, 0% failures")
    for key, marker in (("ceiling", "s"), ("ceiling_stock", "^")):
        if key in results["figures"]:
            figure = results["figures"][key]
            ax.plot([results["parameters"]["workers"]], [figure["median"]], marker, label=figure["label"])
    ax.set(xlabel="worker processes (solo pool)", ylabel="orders/s", xticks=list(SCALING), ylim=(0, None))
    machine = results["machine"]
    ax.set_title(f"orders bench: throughput vs workers ({machine.get('cores')} cores)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
