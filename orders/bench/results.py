"""`orders bench` results as data: which figures there are, their ratios, the targets, the JSON document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orders.bench.cost import COMPONENTS, LABELS
from orders.bench.stats import Summary, ratio

SCHEMA = "orders-bench/2"
RATE, MS, SECONDS, SHARE, CPU = "orders/s", "ms", "s", "%", "µs/order"
SCALING = (1, 2, 4)
QUANTILE_NAMES = ("p50", "p95", "p99", "max")


def _latencies(key: str, what: str) -> dict[str, tuple[str, str]]:
    return {f"{key}_latency_{q}": (f"{what}, {q}", MS) for q in QUANTILE_NAMES}


# key -> (label, unit), in table order; a run that was not measured leaves its rows out.
FIGURES: dict[str, tuple[str, str]] = {
    "ceiling": ("no-op ceiling: project configuration, our Redis transport", RATE),
    "ceiling_stock": ("no-op ceiling: project configuration, kombu's stock Redis transport", RATE),
    "plain": ("no-op ceiling: plain default Celery app, events off", RATE),
    "plain_events": ("no-op ceiling: plain default Celery app, events on (-E)", RATE),
    "drain": ("drain: pre-filled topic, bridge and workers started after it", RATE),
    "drain_stock": ("drain on Celery and kombu as shipped (ORDERS_STOCK_CELERY=true: no fast path)", RATE),
    "drain_events": ("drain with task events on (TASK_EVENTS=true: as while Flower watches)", RATE),
    "e2e": ("e2e live: the producer inside the clock", RATE),
    "e2e_intake": ("e2e live: intake (orders first processed per second)", RATE),
    **_latencies("e2e", "backlog wait at full speed (record timestamp to aggregated)"),
    **_latencies("half", "latency at half the drain rate, Tansu (intended send to aggregated)"),
    "fail10_intake": ("10% transient failures, 2/4/8 s: intake", RATE),
    "fail10_result": ("10% transient failures, 2/4/8 s: orders settled per second", RATE),
    "fail10_settle_after_intake_s": ("10% transient failures: last settle after the last intake", SECONDS),
    "fail10_failed_share": ("10% transient failures: failed attempts among all attempts", SHARE),
    "bridge": ("bridge alone, no worker", RATE),
    "baseline": ("baseline: blocking consumer, 10% failures, 2/4/8 s", RATE),
    "baseline_failed_share": ("baseline: failed attempts among all attempts", SHARE),
    "drain_apache": ("drain on Apache Kafka", RATE),
    **_latencies("half_apache", "latency at half the drain rate, Apache Kafka"),
    "drain_rabbitmq": ("drain on Apache Kafka, RabbitMQ as Celery's broker", RATE),
    **_latencies("half_rabbitmq", "latency at half the drain rate, RabbitMQ as Celery's broker"),
    "drain_kafka1": ("drain on Apache Kafka, 1 broker (the replicated lane's launcher)", RATE),
    "drain_kafka3": ("drain on Apache Kafka, 3 brokers: replication 3, min.insync.replicas 2", RATE),
    **{f"scaling_{k}": (f"drain, {k} worker process{'es' if k > 1 else ''}", RATE) for k in SCALING},
}
# figure key -> label of its cost row
COSTS: dict[str, str] = {
    "ceiling": "no-op ceiling, project configuration",
    "ceiling_stock": "no-op ceiling, project configuration, stock transport",
    "plain": "no-op ceiling, plain Celery app, events off",
    "plain_events": "no-op ceiling, plain Celery app, events on",
    "drain": "drain",
    "drain_stock": "drain, Celery and kombu as shipped",
    "drain_events": "drain, task events on",
    "e2e": "e2e live (producer included)",
    "half": "paced at half the drain rate",
    "fail10": "10% transient failures",
    "bridge": "bridge alone",
    "drain_apache": "drain, Apache Kafka",
    "half_apache": "paced, Apache Kafka",
    "drain_rabbitmq": "drain, RabbitMQ as Celery's broker",
    "half_rabbitmq": "paced, RabbitMQ as Celery's broker",
    "drain_kafka1": "drain, Apache Kafka, 1 broker",
    "drain_kafka3": "drain, Apache Kafka, 3 brokers (replicated)",
}
COST_COLUMNS = (*COMPONENTS, "total", "redis_server", "other_cores")
COST_LABELS = {
    **LABELS,
    "total": "total",
    "redis_server": "Redis command time",
    "other_cores": "other work (cores)",
}
# key -> (label, numerator, denominator); "cpu:<key>" is the total CPU per order of that run
RATIOS: dict[str, tuple[str, str, str]] = {
    "drain_over_plain": ("drain / plain Celery ceiling (events off)", "drain", "plain"),
    "e2e_over_plain": ("e2e live / plain Celery ceiling (events off)", "e2e", "plain"),
    "drain_over_ceiling": ("drain / project ceiling", "drain", "ceiling"),
    "drain_over_drain_stock": ("drain / drain on Celery and kombu as shipped", "drain", "drain_stock"),
    "cpu_drain_over_ceiling": ("CPU per order: drain / project ceiling (no-op)", "cpu:drain", "cpu:ceiling"),
    "fail10_intake_over_e2e_intake": ("intake at 10% failures / intake at 0%", "fail10_intake", "e2e_intake"),
    "fail10_result_over_baseline": (
        "10% failures: pipeline / blocking baseline",
        "fail10_result",
        "baseline",
    ),
    "bridge_over_drain": ("bridge alone / drain", "bridge", "drain"),
    "kafka3_over_kafka1": ("drain: 3 brokers / 1 broker", "drain_kafka3", "drain_kafka1"),
    "cpu_kafka3_over_kafka1": ("CPU per order: 3 brokers / 1 broker", "cpu:drain_kafka3", "cpu:drain_kafka1"),
}
# (ratio or figure key, comparison, wanted): the targets of issue 16
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("drain_over_plain", ">=", 1.5),
    ("cpu_drain_over_ceiling", "<=", 2.0),
    ("half_latency_p99", "<=", 50.0),
    ("half_apache_latency_p99", "<=", 50.0),
    ("fail10_intake_over_e2e_intake", ">=", 0.8),
    ("fail10_settle_after_intake_s", "<=", 16.0),
    ("fail10_result_over_baseline", ">=", 100.0),
    ("bridge_over_drain", ">=", 3.0),
)


def build_results(
    parameters: Mapping[str, Any],
    figures: Mapping[str, Summary],
    machine: Mapping[str, Any],
    command: str,
    started: str,
    finished: str,
    costs: Mapping[str, Mapping[str, Summary]] | None = None,
    commands: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """The JSON document: parameters, machine, figures, CPU per order, ratios of medians and targets."""
    costs = costs or {}
    doc_figures = {
        key: {"label": label, "unit": unit, **figures[key].to_json()}
        for key, (label, unit) in FIGURES.items()
        if key in figures
    }
    doc_costs = {
        key: {"label": label, "components": {name: costs[key][name].to_json() for name in costs[key]}}
        for key, label in COSTS.items()
        if key in costs
    }
    medians = {key: summary.median for key, summary in figures.items()}
    medians.update({f"cpu:{key}": by_name["total"].median for key, by_name in costs.items()})
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
        "cost": doc_costs,
        "redis_commands": {key: dict(calls) for key, calls in (commands or {}).items()},
        "ratios": ratios,
        "targets": evaluate_targets(doc_figures, ratios),
    }


def evaluate_targets(figures: Mapping[str, Any], ratios: Mapping[str, Any]) -> list[dict[str, Any]]:
    targets = []
    for key, comparison, wanted in TARGETS:
        if key in ratios:
            label, measured, unit = ratios[key]["label"], ratios[key]["value"], ""
        elif key in figures:
            label, measured, unit = figures[key]["label"], figures[key]["median"], figures[key]["unit"]
        else:
            continue
        met = measured >= wanted if comparison == ">=" else measured <= wanted
        targets.append({"key": key, "label": label, "measured": measured, "unit": unit,
                        "target": f"{comparison} {wanted:g}", "met": met})  # fmt: skip
    return targets


def fmt(value: float, unit: str) -> str:
    if unit in (RATE, CPU):
        return f"{value:,.0f}"
    if unit in (MS, SHARE, SECONDS):
        return f"{value:,.1f}"
    return f"{value:,.2f}" if value < 10 else f"{value:,.0f}"
