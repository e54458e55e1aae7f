"""Contracts C7 and C8's worker, in a process of its own: a real solo worker on our transport, with group
commit installed the way worker/tasks.py installs it, running 12 tasks queued before it starts.

Exits 0 when the worker_init sender's pool_cls said solo (C7), every task ran inside the transport's
delivery of its message and joined the tick's batch, each batch (more than one order, at least once)
reached the writer while all of its messages were still unacknowledged in Redis (no ack sent during the
delivery), and all acks reached Redis afterwards (C8); otherwise prints what it saw and exits 1.
Usage: python -m tests.contract.group_commit_probe REDIS_URL
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import worker_init

from worker import fast_path, group_commit
from worker.settings import WorkerSettings

TASKS = 12
QUEUE = "c8"


class Writer:
    """Records each batch, and which of its orders' messages Redis still held unacknowledged then."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.batches: list[int] = []
        self.unacked_at_flush: list[int] = []

    def record_orders(self, orders: Sequence[tuple[str, str, int]]) -> list[bool | Exception]:
        self.batches.append(len(orders))
        self.unacked_at_flush.append(int(self.client.hlen("unacked")))
        return [True] * len(orders)


def run(redis_url: str) -> str | None:
    """What went wrong, or None."""
    client = redis.Redis.from_url(redis_url)
    app = Celery("contract-c8", broker=redis_url, set_as_current=False)
    app.conf.update(task_default_queue=QUEUE, task_ignore_result=True, worker_hijack_root_logger=False,
                    broker_transport="worker.transport:Transport", worker_prefetch_multiplier=4,
                    broker_transport_options={"priority_steps": [0]}, task_acks_late=True)  # fmt: skip
    joined: list[bool] = []
    done: list[bool] = []

    @app.task(name="c8.write", shared=False)
    def write(n: int) -> None:
        joined.append(group_commit.join((f"o{n}", "p", n), done.append))

    for n in range(TASKS):
        write.delay(n)
    writer = Writer(client)
    settings = WorkerSettings.from_env({}, env_file=None)
    installed: list[bool] = []
    worker_init.connect(
        lambda sender, **_: installed.append(
            fast_path.install_group_commit(settings, sender.pool_cls, lambda: writer)
        ),
        weak=False,
    )
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        deadline = time.monotonic() + 20
        while (len(done) < TASKS or client.hlen("unacked")) and time.monotonic() < deadline:
            time.sleep(0.05)
    group_commit.disable()
    if installed != [True]:
        return f"C7: group commit installed {installed} from the worker_init sender's pool_cls (solo)"
    return _judge(joined, done, writer, int(client.hlen("unacked")))


def _judge(joined: list[bool], done: list[bool], writer: Writer, unacked: int) -> str | None:
    if joined != [True] * TASKS:
        return f"C8: of {TASKS} tasks, joined a tick: {joined} (ran outside the transport's delivery)"
    if sum(writer.batches) != TASKS or max(writer.batches) < 2 or len(done) != TASKS:
        return f"C8: batches {writer.batches}, outcomes {len(done)} of {TASKS}"
    if any(unacked < batch for unacked, batch in zip(writer.unacked_at_flush, writer.batches, strict=True)):
        return f"C8: acks reached Redis before the flush (unacked at the flushes: {writer.unacked_at_flush})"
    if unacked:
        return f"C8: {unacked} messages still unacknowledged after the flushes"
    return None


def main(redis_url: str) -> int:
    problem: Any = run(redis_url)
    if problem:
        print(problem)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
