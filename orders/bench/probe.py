"""When each task attempt ended, recorded inside bench workers (`celery ... worker -I orders.bench.probe`).

The workers' latency histogram has buckets 5-250 ms wide; the bench needs each order's own figure. A
receiver of Celery's ``task_postrun`` signal (sent after the task body, so after the aggregate write)
keeps (task id = orderId, retries, state, wall-clock time, record timestamp) in memory, and the
worker writes them to ``probe-<pid>.tsv`` in its working directory as it shuts down. Appending a
tuple to a list costs the worker about a microsecond per attempt; nothing goes to Redis.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, worker_shutdown

PREFIX = "probe-"
_attempts: list[tuple[str, int, str, float, int]] = []


@task_postrun.connect
def _attempt_ended(task_id: str = "", task: Any = None, args: Any = None, state: str = "", **_: Any) -> None:
    retries = task.request.retries if task is not None else 0
    _attempts.append((task_id, retries, state or "", time.time(), _record_timestamp(args)))


def _record_timestamp(args: Any) -> int:
    """The Kafka record's timestamp (ms) from a process_order task's origin argument, else 0."""
    if isinstance(args, list | tuple) and len(args) == 2 and isinstance(args[1], dict):
        return int(args[1].get("timestamp") or 0)
    return 0


@worker_shutdown.connect
def _write(**_: Any) -> None:
    lines = (f"{tid}\t{retries}\t{state}\t{at:.6f}\t{ts}\n" for tid, retries, state, at, ts in _attempts)
    (Path.cwd() / f"{PREFIX}{os.getpid()}.tsv").write_text("".join(lines))


@dataclass(frozen=True, slots=True)
class Attempt:
    order_id: str
    retries: int
    state: str  # SUCCESS, RETRY, FAILURE
    ended: float  # wall clock, s
    record_ms: int  # the Kafka record's timestamp (the producer's create time), ms


def read_attempts(directory: Path) -> list[Attempt]:
    """Every attempt the probed workers that ran in ``directory`` recorded."""
    attempts = []
    for path in sorted(directory.glob(f"{PREFIX}*.tsv")):
        for line in path.read_text().splitlines():
            tid, retries, state, at, ts = line.split("\t")
            attempts.append(Attempt(tid, int(retries), state, float(at), int(ts)))
    return attempts
