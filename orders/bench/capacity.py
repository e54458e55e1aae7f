"""A capacity plan from measured CPU per order: cores per component at a target rate, and where one Redis
saturates. Written into docs/scaling.md between two markers, so the prose around it stays by hand.

The arithmetic is deliberately plain: a component needs rate x (CPU µs per order) of CPU time per
second, in cores; a single-threaded Redis saturates at 1e6 / (its CPU µs per order) orders/s. The
per-order figures come from the drain runs, where every order goes through the whole pipeline once,
the producer's from the live run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orders.bench.merge import amendment_lines
from orders.bench.shard_report import shard_section

BEGIN, END = "<!-- capacity:begin (orders bench --capacity) -->", "<!-- capacity:end -->"
RATES = (10_000, 100_000)
# A core kept this busy at most: queues grow without bound as a component nears 100%.
HEADROOM = 0.7
# component -> (label, figure key of the run its CPU per order comes from)
PLAN = {
    "producer": ("producer (the bench's, Avro via the registry)", "e2e"),
    "broker": ("Kafka broker (Apache Kafka 4.1)", "drain_apache"),
    "bridge": ("bridges", "drain"),
    "workers": ("Celery workers (solo pool)", "drain"),
    "redis": ("Redis: aggregate + Celery broker", "drain"),
}
RABBIT_PLAN = {
    "redis": ("Redis: aggregate only", "drain_rabbitmq"),
    "celery_broker": ("RabbitMQ: Celery broker", "drain_rabbitmq"),
    "workers": ("Celery workers on RabbitMQ", "drain_rabbitmq"),
    "bridge": ("bridges on RabbitMQ", "drain_rabbitmq"),
}


def per_order(results: Mapping[str, Any], run: str, component: str) -> float | None:
    item = results.get("cost", {}).get(run, {}).get("components", {}).get(component)
    return None if item is None else float(item["median"])


def cores(rate: float, us_per_order: float) -> float:
    return rate * us_per_order / 1e6


def saturation(us_per_order: float) -> float:
    """Orders/s at which one single-threaded process is fully busy."""
    return 1e6 / us_per_order if us_per_order > 0 else math.inf


def plan_rows(results: Mapping[str, Any], plan: Mapping[str, tuple[str, str]]) -> list[str]:
    rows = []
    for component, (label, run) in plan.items():
        us = per_order(results, run, component)
        if us is None:
            continue
        cells = [f"{cores(rate, us):,.1f} ({math.ceil(cores(rate, us) / HEADROOM):,})" for rate in RATES]
        rows.append(f"| {label} | {us:,.0f} (`{run}`) | " + " | ".join(cells) + " |")
    return rows


def capacity_markdown(results: Mapping[str, Any]) -> str:
    """The generated block: cores per component at 10,000 and 100,000 orders/s, and Redis' ceilings."""
    head = " | ".join(f"cores at {rate:,}/s (at {HEADROOM:.0%} busy)" for rate in RATES)
    lines = [
        BEGIN,
        f"Generated from `{results['command']}` ({results['started']}); CPU µs per order are medians.",
        "",
        *amendment_lines(results),
        "**Redis as Celery's broker** (the default):",
        "",
        f"| component | CPU µs per order (run) | {head} |",
        "| --- | ---: | ---: | ---: |",
        *plan_rows(results, PLAN),
    ]
    rabbit = plan_rows(results, RABBIT_PLAN)
    if rabbit:
        header = f"| component | CPU µs per order (run) | {head} |"
        lines += ["", "**RabbitMQ as Celery's broker**:", "", header, "| --- | ---: | ---: | ---: |", *rabbit]
    lines += ["", *_redis_ceilings(results), *shard_section(results, "###"), END]
    return "\n".join(lines)


def _redis_ceilings(results: Mapping[str, Any]) -> list[str]:
    lines = ["Where one Redis saturates (one core, single-threaded command execution):", ""]
    for run, what in (("drain", "aggregate + Celery broker"), ("drain_rabbitmq", "aggregate only")):
        cpu = per_order(results, run, "redis")
        command = per_order(results, run, "redis_server")
        if cpu is None:
            continue
        lines.append(
            f"- {what}: {cpu:,.0f} µs of Redis CPU per order ({command or 0:,.0f} µs of it executing "
            f"commands) -> saturated at ~{saturation(cpu):,.0f} orders/s, ~{saturation(cpu) * HEADROOM:,.0f} "
            f"at {HEADROOM:.0%} busy."
        )
    return lines


def write_capacity(results: Mapping[str, Any], path: Path) -> None:
    """Replace the generated block of ``path`` (or append one) with the figures of ``results``."""
    text = path.read_text() if path.exists() else "# Scaling\n\n"
    block = capacity_markdown(results)
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    if pattern.search(text):
        path.write_text(pattern.sub(lambda _: block, text))
    else:
        path.write_text(text.rstrip() + "\n\n" + block + "\n")
