"""`orders bench` results as data: which figures there are, their ratios, the targets, the JSON document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orders.bench.ab import AB_TESTS, SIDES, side_key
from orders.bench.cost import COMPONENTS, LABELS
from orders.bench.shards import PRIMARIES
from orders.bench.shards import RUNS as SHARD_RUNS
from orders.bench.stats import Summary, ratio

# 3: ratios of runs measured in rounds carry the range over their pairs; A/B phases; "interleaved"
SCHEMA = "orders-bench/3"
RATE, MS, SECONDS, SHARE, CPU = "orders/s", "ms", "s", "%", "µs/order"
SCALING = (1, 2, 4)
QUANTILE_NAMES = ("p50", "p95", "p99", "max")


def _short(ab_key: str) -> str:
    """An A/B phase's name in labels: ``handoff`` for ``ab_handoff``."""
    return ab_key.removeprefix("ab_")


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
    "trace_off": ("drain, tracing off (the tracing phase's reference)", RATE),
    "trace_1": ("drain, tracing on, every trace sampled (1.0)", RATE),
    "trace_001": ("drain, tracing on, 1 trace in 100 sampled (0.01)", RATE),
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
    "drain_rabbitmq_cluster": (
        "drain, a three-node RabbitMQ cluster (quorum queue) as Celery's broker",
        RATE,
    ),
    **_latencies("half_rabbitmq_cluster", "latency at half the drain rate, three-node RabbitMQ cluster"),
    **{f"scaling_{k}": (f"drain, {k} worker process{'es' if k > 1 else ''}", RATE) for k in SCALING},
    **{side_key(k, side): (f"drain, A/B {_short(k)} {side}", RATE) for k in AB_TESTS for side in SIDES},
    **_latencies("wait_off", "aggregate on a Sentinel set, broker apart, no WAIT (REDIS_WAIT_REPLICAS=0)"),
    **_latencies("wait_on", "the same, each task's write and WAIT 1 in one round trip (the default)"),
}


def _shard_figures() -> dict[str, tuple[str, str]]:
    """The shards phase: each run's drain, and per Cluster primary its command time and script share."""
    figures = {}
    for key, shards in SHARD_RUNS.items():
        figures[key] = (f"drain, aggregate on a 3-primary Redis Cluster, {shards} shard(s)", RATE)
        for i in range(PRIMARIES):
            share = f"{shards} shard(s): primary {i}'s share of script time"
            figures[f"{key}_node{i}_script_share"] = (share, SHARE)
            figures[f"{key}_node{i}_command_us"] = (f"{shards} shard(s): primary {i}'s command time", CPU)
    return figures


FIGURES.update(_shard_figures())
# figure key -> label of its cost row
COSTS: dict[str, str] = {
    "ceiling": "no-op ceiling, project configuration",
    "ceiling_stock": "no-op ceiling, project configuration, stock transport",
    "plain": "no-op ceiling, plain Celery app, events off",
    "plain_events": "no-op ceiling, plain Celery app, events on",
    "drain": "drain",
    "drain_stock": "drain, Celery and kombu as shipped",
    "drain_events": "drain, task events on",
    "trace_off": "drain, tracing off",
    "trace_1": "drain, tracing sampled 1.0",
    "trace_001": "drain, tracing sampled 0.01",
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
    "drain_rabbitmq_cluster": "drain, three-node RabbitMQ cluster, quorum queue",
    "half_rabbitmq_cluster": "paced, three-node RabbitMQ cluster, quorum queue",
    **{side_key(k, side): f"drain, A/B {_short(k)} {side}" for k in AB_TESTS for side in SIDES},
    "wait_off": "paced, aggregate on Sentinel, no WAIT",
    "wait_on": "paced, aggregate on Sentinel, WAIT 1 per task",
    **{key: f"drain, aggregate on Redis Cluster, {n} shard(s)" for key, n in SHARD_RUNS.items()},
}
COST_COLUMNS = (*COMPONENTS, "total", "redis_server", "other_cores")
COST_LABELS = {
    **LABELS,
    "total": "total",
    "redis_server": "Redis command time",
    "other_cores": "other work (cores)",
}


def _ab_ratios() -> dict[str, tuple[str, str, str]]:
    """Per A/B phase: on / off of the drain rate, the total CPU per order and the component's."""
    ratios = {}
    for key, test in AB_TESTS.items():
        on, off, what, part = side_key(key, "on"), side_key(key, "off"), _short(key), test.component
        ratios[f"{key}_rate"] = (f"A/B {what}: drain rate, on / off", on, off)
        ratios[f"{key}_cpu"] = (f"A/B {what}: CPU per order, on / off", f"cpu:{on}", f"cpu:{off}")
        ratios[f"{key}_cpu_{part}"] = (
            f"A/B {what}: {LABELS[part]} CPU per order, on / off",
            f"cpu.{part}:{on}",
            f"cpu.{part}:{off}",
        )
    return ratios


# key -> (label, numerator, denominator): a figure's median, or "cpu:<run>" (the run's total CPU per
# order), "cpu.<component>:<run>" (one component's). Both sides measured in the same rounds: the
# median of the per-round ratios, with their range (results' "paired").
RATIOS: dict[str, tuple[str, str, str]] = {
    "drain_over_plain": ("drain / plain Celery ceiling (events off)", "drain", "plain"),
    "cpu_drain_over_plain": (
        "CPU per order: drain / plain Celery ceiling (events off)",
        "cpu:drain",
        "cpu:plain",
    ),
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
    **_ab_ratios(),
    "shards_3_over_1": ("drain: aggregate in 3 shards / 1 (same Redis Cluster)", "shards_3", "shards_1"),
    "cpu_shards_3_over_1": ("CPU per order: 3 shards / 1", "cpu:shards_3", "cpu:shards_1"),
    "cpu_wait_on_over_off": ("CPU per order: per-task WAIT / none", "cpu:wait_on", "cpu:wait_off"),
    "p99_wait_on_over_off": (
        "p99 latency: per-task WAIT / none",
        "wait_on_latency_p99",
        "wait_off_latency_p99",
    ),
}
# (ratio or figure key, comparison, wanted): the targets of issues 16 and 23
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("drain_over_plain", ">=", 1.5),
    ("cpu_drain_over_ceiling", "<=", 2.0),
    ("half_latency_p99", "<=", 50.0),
    ("half_apache_latency_p99", "<=", 50.0),
    ("fail10_intake_over_e2e_intake", ">=", 0.8),
    ("fail10_settle_after_intake_s", "<=", 16.0),
    ("fail10_result_over_baseline", ">=", 100.0),
    ("bridge_over_drain", ">=", 3.0),
    ("ab_handoff_cpu_bridge", "<=", 0.7),  # issue 23: the bridge with the template / with Celery's messages
    ("ab_group_commit_cpu_workers", "<=", 0.75),  # issue 23: with group commit / per-task writes
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
    rounds = [set(group) for group in parameters.get("interleaved", [])]
    ratios = {
        key: {"label": label, **item}
        for key, (label, top, bottom) in RATIOS.items()
        if (item := ratio_of(_series(top, figures, costs), _series(bottom, figures, costs), rounds))
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


def _series(key: str, figures: Mapping[str, Summary], costs: Mapping[str, Mapping[str, Summary]]) -> Any:
    """(run key, its runs' Summary) for one side of a ratio; None when it was not measured."""
    if not key.startswith("cpu"):
        return (key, figures[key]) if key in figures else None
    kind, _, run = key.partition(":")
    component = kind.partition(".")[2] or "total"
    summary = costs.get(run, {}).get(component)
    return (run, summary) if summary is not None else None


def ratio_of(
    top: tuple[str, Summary] | None, bottom: tuple[str, Summary] | None, rounds: list[set[str]]
) -> dict[str, Any] | None:
    """The ratio's JSON: of medians, or, for two runs measured in the same rounds, the median of the
    per-round ratios with their range (``paired``). None when a side is missing or zero."""
    if top is None or bottom is None:
        return None
    (top_run, tops), (bottom_run, bottoms) = top, bottom
    together = any({top_run, bottom_run} <= group for group in rounds)
    if together and len(tops.runs) == len(bottoms.runs) and min(bottoms.runs) > 0:
        pairs = Summary.of(t / b for t, b in zip(tops.runs, bottoms.runs, strict=True))
        return {"value": pairs.median, "min": pairs.min, "max": pairs.max, "runs": list(pairs.runs),
                "paired": True}  # fmt: skip
    value = ratio(tops.median, bottoms.median)
    return None if value is None else {"value": value, "paired": False}


def evaluate_targets(figures: Mapping[str, Any], ratios: Mapping[str, Any]) -> list[dict[str, Any]]:
    targets = []
    for key, comparison, wanted in TARGETS:
        spread = None
        if key in ratios:
            label, measured, unit = ratios[key]["label"], ratios[key]["value"], ""
            spread = [ratios[key]["min"], ratios[key]["max"]] if ratios[key]["paired"] else None
        elif key in figures:
            label, measured, unit = figures[key]["label"], figures[key]["median"], figures[key]["unit"]
        else:
            continue
        met = measured >= wanted if comparison == ">=" else measured <= wanted
        targets.append({"key": key, "label": label, "measured": measured, "range": spread, "unit": unit,
                        "target": f"{comparison} {wanted:g}", "met": met})  # fmt: skip
    return targets


def fmt(value: float, unit: str) -> str:
    if unit in (RATE, CPU):
        return f"{value:,.0f}"
    if unit in (MS, SHARE, SECONDS):
        return f"{value:,.1f}"
    return f"{value:,.2f}" if value < 10 else f"{value:,.0f}"
