"""`orders bench` results rendered: the terminal tables, docs/benchmarks.md and the scaling plot."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from orders.bench.ab import AB_TESTS, side_key
from orders.bench.merge import amendment_lines
from orders.bench.methods import METHODS
from orders.bench.results import COST_COLUMNS, COST_LABELS, CPU, SCALING, fmt
from orders.bench.shard_report import shard_section

LIMITS_HEADING = "## What limits the pipeline"
TOP_COMMANDS = 8


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
    targets = Table(title="ratios (of medians, or per pair), against the targets", title_justify="left")
    for name in ("ratio", "measured", "range over pairs", "target", "met"):
        targets.add_column(name, justify="right" if name == "measured" else "left")
    for t in results["targets"]:
        met = "yes" if t["met"] else "[bold red]no[/]"
        wanted = f"{t['target']} {t['unit']}".strip()
        targets.add_row(t["label"], fmt(t["measured"], t["unit"]), _spread(results, t["key"]), wanted, met)
    with_target = {t["key"] for t in results["targets"]}
    for key, item in results["ratios"].items():
        if key not in with_target:
            targets.add_row(item["label"], fmt(item["value"], ""), _spread(results, key), "", "")
    ab = Table(title="A/B in the same run (medians; on / off per pair)", title_justify="left")
    for name in AB_COLUMNS:
        ab.add_column(name, justify="left" if name in ("change", "component") else "right")
    for row in _ab_rows(results):
        ab.add_row(*row)
    return Group(figures, costs, targets, ab)


AB_COLUMNS = ("change", "pairs", "drain off / on (orders/s)", "CPU µs/order off / on", "component",
              "its CPU µs/order off / on", "on / off: its CPU (range)")  # fmt: skip


def _spread(results: Mapping[str, Any], key: str) -> str:
    """A paired ratio's lowest and highest pair, and how many pairs; '' for a ratio of medians."""
    item = results["ratios"].get(key)
    if not item or not item.get("paired"):
        return ""
    pairs = len(item["runs"])
    return f"{item['min']:.2f}-{item['max']:.2f} ({pairs} pair{'s' if pairs > 1 else ''})"


def _ab_rows(results: Mapping[str, Any]) -> list[list[str]]:
    """One row per A/B phase measured: each side's rate and CPU per order, the component's ratio."""
    rows, figures, cost = [], results["figures"], results.get("cost", {})
    for key, test in AB_TESTS.items():
        off, on = side_key(key, "off"), side_key(key, "on")
        if off not in cost or on not in cost:
            continue
        part = test.component

        def pair(name: str, off: str = off, on: str = on) -> str:
            return " / ".join(fmt(cost[k]["components"][name]["median"], CPU) for k in (off, on))

        ratio = results["ratios"].get(f"{key}_cpu_{part}", {})
        rates = " / ".join(fmt(figures[k]["median"], "orders/s") for k in (off, on))
        shown = f"{ratio['value']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})" if ratio.get("paired") else ""
        rows.append([test.label, str(len(figures[on]["runs"])), rates, pair("total"), COST_LABELS[part],
                     pair(part), shown])  # fmt: skip
    return rows


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
        "", "```sh", results["command"], "```", "", *amendment_lines(results),
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
    lines += ["", "## Against the targets of issues 16 and 23", "",
              "Ratios of runs measured in the same rounds (the ratio phases, the A/B phases) are the median "
              "of the per-round ratios, with their range; the others are ratios of medians.", "",
              "| target | measured | range over pairs | wanted | met |",
              "| --- | ---: | --- | --- | --- |"]  # fmt: skip
    for t in results["targets"]:
        met = "yes" if t["met"] else "**no**"
        wanted = f"{t['target']} {t['unit']}".strip()
        spread = _spread(results, t["key"])
        lines.append(f"| {t['label']} | {fmt(t['measured'], t['unit'])} | {spread} | {wanted} | {met} |")
    with_target = {t["key"] for t in results["targets"]}
    lines += [
        f"| {item['label']} | {fmt(item['value'], '')} | {_spread(results, key)} | | |"
        for key, item in results["ratios"].items()
        if key not in with_target
    ]
    lines += _markdown_ab(results)
    lines += shard_section(results)
    if plot:
        lines += ["", "## Scaling", "", f"![drain throughput vs worker processes]({plot})"]
    lines += ["", "## Machine", "", "| | |", "| --- | --- |", *_machine_rows(machine), "",
              "## How each figure is measured", ""]  # fmt: skip
    lines += [f"- {method}" for method in METHODS]
    lines += ["", (kept_limits or _limits_placeholder()).rstrip(), ""]
    return "\n".join(lines)


def _markdown_ab(results: Mapping[str, Any]) -> list[str]:
    rows = _ab_rows(results)
    if not rows:
        return []
    lines = ["", "## A/B in the same run", "",
             "Each change drained the same pre-filled topic off and on, in turns (`orders/bench/ab.py`): "
             "medians of each side; the on / off ratio of the component's CPU per order per pair, its "
             "median and range.", "",
             "| " + " | ".join(AB_COLUMNS) + " |",
             "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]  # fmt: skip
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


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
