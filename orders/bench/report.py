"""`orders bench` results rendered: the terminal tables, docs/benchmarks.md and the scaling plot."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from orders.bench.results import COST_COLUMNS, COST_LABELS, CPU, SCALING, fmt

LIMITS_HEADING = "## What limits the pipeline"
TOP_COMMANDS = 8
METHODS = (
    "**no-op ceilings**: N no-op tasks are published (pipelined batches of 500) under a staging key while "
    "the workers start; once every worker is ready the list is renamed into the queue in one step. "
    "Completed = N - queue length - kombu's unacked hash, polled every 5 ms; the rate runs from the first "
    "completion seen to the queue and the unacked hash being empty. *Project configuration*: the "
    "workers' own Celery settings (late acks, task events, ...) on our Redis transport, or on kombu's "
    "(`ORDERS_STOCK_CELERY=true`). *Plain Celery app*: `orders/bench/plain.py`, every setting at its "
    "default (early acks, prefetch 4, kombu's transport), with `-E` for events on.",
    "**drain**: N orders are produced into a fresh topic (3 partitions) first; then the workers start, "
    "then `orders bridge`. The clock runs from the bridge joining its consumer group to the last "
    "aggregate write. No producer in the clock. *As shipped*: the same drain in the same bench run, "
    "with `ORDERS_STOCK_CELERY=true` on the workers and the bridge (kombu's Redis transport and "
    "Celery's retry tracebacks instead of the fast path, `worker/fast_path.py`).",
    "**e2e live**: workers and bridge running; the bench's producer (its own process) sends N orders "
    "as fast as it can; rate = N / (last aggregate write - first send): producer, broker and pipeline "
    "share the two cores. *Intake*: N / (last order's first attempt - first send). The *backlog wait* "
    "is each order's time from its record timestamp to being aggregated: at full speed that is time "
    "spent queued, not a latency.",
    "**latency at half the drain rate**: the producer paces N orders at half the median drain rate; "
    "each order's latency runs from its *intended* send time (first send + sequence / rate, so a "
    "producer held back hides no wait) to the end of the task that aggregated it, recorded by every "
    "worker (`orders/bench/probe.py`, a `task_postrun` receiver). Quantiles are exact (nearest rank "
    "over all N values).",
    "**10% transient failures**: the same live run with `FAILURE_RATE=0.1`, a fixed `FAILURE_SEED` "
    "and fixed order ids, so every repeat meets the same failures, on the product's backoff "
    "(`RETRY_BACKOFF_BASE=2`: 2, 4, 8 s, then the DLQ). Intake as above; *settled per second* = N / "
    "(last order settled - first send); the last settle is also given after the last intake.",
    "**bridge alone**: N orders pre-produced, no worker, `MAX_QUEUE_DEPTH` above N; rate from the first "
    "batch landing in the Celery queue to the queue holding N.",
    "**baseline**: one consumer (`orders/bench/baseline.py`) that decodes and records each order inline "
    "and, on an injected transient failure, sleeps in its poll loop on the same 2, 4, 8 s schedule, "
    "then gives up; over the first orders of the failure runs' topic with the same seed, so it meets "
    "the same failures; orders done / time from its first record.",
    "**CPU per order**: user + system CPU (psutil) of every process of the run (and its children) over "
    "the measured window, divided by N: the bench's producer (its own figure), the Kafka broker, the "
    "bridge, the workers, RabbitMQ, Redis, the registry. *Redis command time* is the server's own "
    "execution time from `INFO commandstats` (no network I/O). The ceilings count the workers and Redis.",
    "**Apache Kafka / RabbitMQ lanes**: the drain and the half-rate latency again with Apache Kafka "
    "4.1.1 (from the cached jars) in place of Tansu, then also with a private RabbitMQ node as Celery's "
    "broker; half of that lane's own drain rate.",
)


def table(results: Mapping[str, Any]) -> Group:
    """For the terminal: the figures, CPU per order, then the ratios and the targets of issue 16."""
    params = results["parameters"]
    title = f"orders bench: {params['orders']:,} orders, median of {_runs(params['repeat'])}"
    figures = Table(title=title, title_justify="left")
    for name in ("figure", "median", "min", "max", "unit"):
        figures.add_column(name, justify="left" if name in ("figure", "unit") else "right")
    for f in results["figures"].values():
        figures.add_row(f["label"], *(fmt(f[k], f["unit"]) for k in ("median", "min", "max")), f["unit"])
    costs = Table(title="CPU µs per order (medians)", title_justify="left")
    columns = _cost_columns(results)
    for name in ("run", *columns):
        costs.add_column(COST_LABELS.get(name, name), justify="left" if name == "run" else "right")
    for row in _cost_rows(results, columns):
        costs.add_row(*row)
    targets = Table(title="ratios of medians, against the targets", title_justify="left")
    for name in ("ratio", "measured", "target", "met"):
        targets.add_column(name, justify="right" if name == "measured" else "left")
    for t in results["targets"]:
        targets.add_row(t["label"], fmt(t["measured"], t["unit"]), f"{t['target']} {t['unit']}".strip(),
                        "yes" if t["met"] else "[bold red]no[/]")  # fmt: skip
    with_target = {t["key"] for t in results["targets"]}
    for key, item in results["ratios"].items():
        if key not in with_target:
            targets.add_row(item["label"], fmt(item["value"], ""), "", "")
    return Group(figures, costs, targets)


def _cost_columns(results: Mapping[str, Any]) -> list[str]:
    seen = {name for item in results.get("cost", {}).values() for name in item["components"]}
    return [name for name in COST_COLUMNS if name in seen]


def _cost_rows(results: Mapping[str, Any], columns: list[str]) -> list[list[str]]:
    rows = []
    for item in results.get("cost", {}).values():
        parts = item["components"]
        cells = [_cost_cell(parts[c]["median"], c) if c in parts else "" for c in columns]
        rows.append([item["label"], *cells])
    return rows


def _cost_cell(value: float, column: str) -> str:
    return f"{value:.2f}" if column == "other_cores" else fmt(value, CPU)


def _warm_up(params: Mapping[str, Any]) -> str:
    rounds = (params.get("broker_warm_up_jit_cores") or {}).get("apache")
    if not rounds:
        return ""
    shown = ", ".join(f"{share:.2f}" for share in rounds)
    return (
        f" Apache Kafka's new JVM was warmed up first by {len(rounds)} unmeasured paced rounds, until its "
        f"JIT compiler went quiet (it used {shown} of a core in them): a broker in service has long "
        "compiled its request path."
    )


def markdown(results: Mapping[str, Any], plot: str | None, kept_limits: str | None = None) -> str:
    """docs/benchmarks.md; ``kept_limits`` is an existing "What limits the pipeline" section to keep."""
    params, machine = results["parameters"], results["machine"]
    lines = [
        "# Benchmarks", "",
        f"Measured by `orders bench` from {results['started']} to {results['finished']}. Reproduce with:",
        "", "```sh", results["command"], "```", "",
        f"Each figure is the median of {_runs(params['repeat'])} of {params['orders']:,} orders (no-op "
        f"tasks for the ceilings; {params.get('baseline_orders', '?')} orders for the baseline), with the "
        f"lowest and highest run. Workers are solo-pool processes, {params['workers']} unless a figure "
        f"says so. Half load: {params.get('half_load_rate') or 0:,.0f} orders/s.{_warm_up(params)}",
        "", "## Results", "", "| figure | median | min | max | unit |", "| --- | ---: | ---: | ---: | --- |",
    ]  # fmt: skip
    for f in results["figures"].values():
        cells = " | ".join(fmt(f[k], f["unit"]) for k in ("median", "min", "max"))
        lines.append(f"| {f['label']} | {cells} | {f['unit']} |")
    lines += _markdown_costs(results)
    lines += ["", "## Against the targets of issue 16", "", "| target | measured | wanted | met |",
              "| --- | ---: | --- | --- |"]  # fmt: skip
    for t in results["targets"]:
        met = "yes" if t["met"] else "**no**"
        wanted = f"{t['target']} {t['unit']}".strip()
        lines.append(f"| {t['label']} | {fmt(t['measured'], t['unit'])} | {wanted} | {met} |")
    others = [
        item for key, item in results["ratios"].items() if key not in {t["key"] for t in results["targets"]}
    ]
    lines += [f"| {item['label']} | {fmt(item['value'], '')} | | |" for item in others]
    if plot:
        lines += ["", "## Scaling", "", f"![drain throughput vs worker processes]({plot})"]
    lines += ["", "## Machine", "", "| | |", "| --- | --- |", *_machine_rows(machine), "",
              "## How each figure is measured", ""]  # fmt: skip
    lines += [f"- {method}" for method in METHODS]
    lines += ["", (kept_limits or _limits_placeholder()).rstrip(), ""]
    return "\n".join(lines)


def _markdown_costs(results: Mapping[str, Any]) -> list[str]:
    columns = _cost_columns(results)
    if not columns:
        return []
    lines = ["", "## CPU per order", "",
             "Medians of the runs, µs of CPU per order (per task for the ceilings), by process. The last "
             "column is the machine's busy CPU in the same window that was none of the run's processes nor "
             "the bench's own, in cores: other work sharing the two cores while the figure was taken.", "",
             "| run | " + " | ".join(COST_LABELS[c] for c in columns) + " |",
             "| --- |" + " ---: |" * len(columns)]  # fmt: skip
    lines += ["| " + " | ".join(row) + " |" for row in _cost_rows(results, columns)]
    commands = results.get("redis_commands", {})
    if commands:
        lines += ["", "Redis commands per order (median calls; the most frequent):", ""]
        for key, calls in commands.items():
            top = sorted(calls.items(), key=lambda item: -item[1])[:TOP_COMMANDS]
            label = results.get("cost", {}).get(key, {}).get("label", key)
            lines.append(f"- {label}: " + ", ".join(f"{name} {count:.2f}" for name, count in top))
    return lines


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
        "load average (1 min) at start / end": " / ".join(str(v) for v in machine.get("load", [])),
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
    """Drain rate vs worker processes (median, min-max bars) with the no-op ceilings; None without data."""
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
    ax.errorbar(xs, medians, yerr=errors, marker="o", capsize=4, label="drain, orders")
    for key, marker in (("ceiling", "s"), ("plain", "^"), ("plain_events", "v")):
        if key in results["figures"]:
            figure = results["figures"][key]
            ax.plot([results["parameters"]["workers"]], [figure["median"]], marker, label=figure["label"])
    ax.set(xlabel="worker processes (solo pool)", ylabel="per second", xticks=list(SCALING), ylim=(0, None))
    machine = results["machine"]
    ax.set_title(f"orders bench: throughput vs workers ({machine.get('cores')} cores)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
