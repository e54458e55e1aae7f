"""The per-task log lines at a cost you choose: Celery's "received" and "succeeded" lines, or neither.

Celery logs two INFO lines for every task: ``Task orders.process_order[id] received`` (the logger
``celery.worker.strategy``) and ``Task orders.process_order[id] succeeded in 0.001s: True``
(``celery.app.trace``). ``TASK_SUCCESS_LOG=false`` drops those two and nothing else:

- ``celery.worker.strategy`` logs from WARNING up: the received line is its only INFO line, and Celery
  then skips building it (it asks the logger once, when the worker's consumer starts);
- a filter on ``celery.app.trace`` drops its success records only, so Celery's other task lines stay as
  they are: a scheduled retry and an expected failure at INFO, an unexpected one at ERROR with its
  traceback, a rejection at WARNING. Our hooks add a WARNING when retries run out and an ERROR for each
  dead letter (worker/hooks.py).

Contract C5 in worker/fast_path.py's list: those loggers and Celery's success message. What it saves is
in docs/benchmarks.md.
"""

from __future__ import annotations

import logging

from celery.app.trace import LOG_SUCCESS

from worker.settings import WorkerSettings

log = logging.getLogger(__name__)
RECEIVED_LOGGER = "celery.worker.strategy"
TRACE_LOGGER = "celery.app.trace"


class DropSuccessLines(logging.Filter):
    """Celery's "Task ... succeeded in ..." records; every other record of its tracer passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != LOG_SUCCESS


def apply(settings: WorkerSettings) -> None:
    """Drop the per-task success lines unless ``TASK_SUCCESS_LOG`` keeps them (Celery's default).

    Call it before the worker's consumer starts (``worker_init``: worker/tasks.py does), in the pool's
    parent: prefork children inherit the loggers.
    """
    if settings.task_success_log:
        return
    logging.getLogger(RECEIVED_LOGGER).setLevel(logging.WARNING)
    trace = logging.getLogger(TRACE_LOGGER)
    if not any(isinstance(f, DropSuccessLines) for f in trace.filters):
        trace.addFilter(DropSuccessLines())


def announce(settings: WorkerSettings) -> None:
    """One line at start-up when the success lines are off (call it once logging is set up)."""
    if not settings.task_success_log:
        log.info("TASK_SUCCESS_LOG=false: no received or succeeded line per task; failures, retries "
                 "and dead letters still log")  # fmt: skip
