"""Contract C5's workers, in a process of their own: which per-task lines Celery logs, and on which
loggers, with Celery's default and with worker/task_log.py's choice applied at worker_init.

Exits 0 when the default logs a received and a succeeded line per task, and TASK_SUCCESS_LOG=false
logs neither while a retry and an expected failure still log; otherwise prints what it saw and exits
1. Usage: python -m tests.contract.task_log_probe REDIS_URL
"""

from __future__ import annotations

import logging
import sys
import time

from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import worker_init

from worker import task_log
from worker.settings import WorkerSettings

WANTED = {"received", "succeeded in", "retry:", "raised expected"}


class Seen(logging.Handler):
    """The per-task lines Celery's loggers pass on, by the phrase that marks each."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.phrases: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        self.phrases += [phrase for phrase in WANTED if phrase in text]


def run_tasks(redis_url: str, success_lines: bool) -> set[str]:
    """One worker at INFO runs a task that succeeds, one that retries once, one that fails as expected."""
    app = Celery("contract-c5", broker=redis_url, set_as_current=False)
    app.conf.update(task_default_queue=f"c5-{success_lines}", task_ignore_result=True,
                    worker_hijack_root_logger=False)  # fmt: skip
    attempts: list[int] = []

    @app.task(name="c5.ok", shared=False)
    def ok() -> bool:
        return True

    @app.task(name="c5.retries", bind=True, shared=False, default_retry_delay=0, max_retries=1)
    def retries(self) -> None:  # type: ignore[no-untyped-def]
        attempts.append(self.request.retries)
        if not self.request.retries:
            raise self.retry(exc=ValueError("once"))

    @app.task(name="c5.fails", shared=False, throws=(KeyError,))
    def fails() -> None:
        attempts.append(-1)
        raise KeyError("expected")

    settings = WorkerSettings.from_env({"TASK_SUCCESS_LOG": str(success_lines).lower()}, env_file=None)
    worker_init.connect(lambda **_: task_log.apply(settings), weak=False)
    seen = Seen()
    logging.getLogger("celery").addHandler(seen)
    with start_worker(app, pool="solo", loglevel="INFO", perform_ping_check=False, shutdown_timeout=10):
        for name in ("c5.ok", "c5.retries", "c5.fails"):
            app.send_task(name)
        deadline = time.monotonic() + 20
        while len(attempts) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the last task's own lines
    logging.getLogger("celery").removeHandler(seen)
    return set(seen.phrases)


def main(redis_url: str) -> int:
    default = run_tasks(redis_url, success_lines=True)
    chosen = run_tasks(redis_url, success_lines=False)
    if default != WANTED or chosen != {"retry:", "raised expected"}:
        print(f"Celery's default logged {sorted(default)}; with the success lines off {sorted(chosen)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
