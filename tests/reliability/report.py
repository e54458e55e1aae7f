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
from tests.reliability.report_template import TEMPLATE

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
    "18": "nemesis: seeded random kills, pauses, partitions under load",
    "18r": "nemesis, Celery on the RabbitMQ cluster (its nodes faulted too)",
    "22a": "aggregate's Sentinel primary SIGKILLed, replicas behind",
    "22b": "broker's Sentinel primary SIGKILLed, replicas behind",
    "22c": "primary cut off from its replicas, not its clients",
    "22d": "separate broker Redis restarted during hand-backs",
    "22e": "silent partition from the primary, never healed",
    "22f": "a primary of the 3-shard aggregate on Redis Cluster SIGKILLed, its replica behind",
    "23": "group commit: writes refused, then a worker SIGKILLed in each window of a flush",
    "Q1": "RabbitMQ cluster: the quorum queue's leader SIGKILLed, restarted",
    "Q2": "RabbitMQ cluster: the quorum queue's leader partitioned, healed",
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
        f"redis-server {version}, Apache Kafka 4.1.1 (KRaft), Tansu, RabbitMQ 3.10.8"  # fmt: skip
