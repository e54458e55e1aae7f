"""The ``shards`` phase's results as Markdown: docs/benchmarks.md and docs/scaling.md's generated block."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orders.bench.results import CPU, RATE, SHARE, fmt
from orders.bench.shards import NODE_COMPONENTS, PRIMARIES, REPLICAS_COMPONENT, RUNS

HEADING = "Sharded aggregate: 1 shard against 3 on one Redis Cluster"
ONE, THREE = RUNS  # the figure keys: shards_1, shards_3


def shard_section(results: Mapping[str, Any], level: str = "##") -> list[str]:
    """The section (heading at ``level``), or nothing when the phase did not run."""
    figures = results.get("figures", {})
    if ONE not in figures or THREE not in figures:
        return []
    one, three = figures[ONE], figures[THREE]
    return [
        "", f"{level} {HEADING}", "",
        f"The `shards` phase: the drain of {results['parameters']['orders']:,} orders with the aggregate "
        "on a Redis Cluster on loopback (three primaries with a replica each, `orders/bench/shards.py`), "
        "Celery's broker on the bench's own Redis, with `AGGREGATE_SHARDS=1` and `=3` in turns, each on "
        "an empty aggregate; each task's script with its `WAIT 1` (the default on a Cluster). On this "
        "machine's two cores the total rate cannot rise with shards: the six Cluster nodes, the workers "
        "and the bridge share the same two cores. The figure to read is the split: at one shard every "
        "order's script runs on the primary that owns `{orders}`, at three on the primary that owns its "
        "shard's slot.", "",
        f"- Drain, 3 shards / 1: {_ratio(results, 'shards_3_over_1')}; medians {_range(three, RATE)} "
        f"against {_range(one, RATE)} orders/s.",
        f"- CPU per order of all processes, 3 shards / 1: {_ratio(results, 'cpu_shards_3_over_1')}.",
        f"- Which primary owns which shard: {_owners(results)}.", "",
        "| Cluster primary | scripts' time, 1 shard | scripts' time, 3 shards | command time µs/order, "
        "1 / 3 shards | CPU µs/order, 1 / 3 shards |",
        "| --- | ---: | ---: | ---: | ---: |",
        *_node_rows(results), _replica_row(results),
        "", "Scripts' time: the node's share of all primaries' `EVALSHA` time (`INFO commandstats`), median "
        "and range over the runs. Command time: every command the node executed, per order (the home "
        "shard's primary also takes the bridge's counters and the bench's polling). CPU: the node's "
        "process (psutil), with its network I/O.",
    ]  # fmt: skip


def _ratio(results: Mapping[str, Any], key: str) -> str:
    item = results.get("ratios", {}).get(key)
    if not item:
        return "not measured"
    spread = f" (pairs {item['min']:.2f}-{item['max']:.2f})" if item.get("paired") else ""
    return f"{item['value']:.2f}{spread}"


def _range(figure: Mapping[str, Any], unit: str) -> str:
    return f"{fmt(figure['median'], unit)} ({fmt(figure['min'], unit)}-{fmt(figure['max'], unit)})"


def _owners(results: Mapping[str, Any]) -> str:
    owners = results["parameters"].get("shard_owners", {}).get("3", {})
    return ", ".join(f"`{{{tag}}}` on primary {node}" for tag, node in owners.items()) or "not recorded"


def _node_rows(results: Mapping[str, Any]) -> list[str]:
    figures, rows = results["figures"], []
    for i in range(PRIMARIES):
        shares = [_range(figures[f"{key}_node{i}_script_share"], SHARE) + " %" for key in RUNS]
        command = " / ".join(fmt(figures[f"{key}_node{i}_command_us"]["median"], CPU) for key in RUNS)
        rows.append(f"| {i} | {shares[0]} | {shares[1]} | {command} | {_cpu(results, NODE_COMPONENTS[i])} |")
    return rows


def _replica_row(results: Mapping[str, Any]) -> str:
    return f"| the three replicas | | | | {_cpu(results, REPLICAS_COMPONENT)} |"


def _cpu(results: Mapping[str, Any], component: str) -> str:
    cost = results.get("cost", {})
    cells = [cost.get(key, {}).get("components", {}).get(component, {}).get("median") for key in RUNS]
    return " / ".join("?" if value is None else fmt(value, CPU) for value in cells)
