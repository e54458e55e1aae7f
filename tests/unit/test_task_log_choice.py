"""TASK_SUCCESS_LOG: Celery's default leaves its loggers alone; off, only the success records are dropped."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from celery.app.trace import LOG_RETRY, LOG_SUCCESS

from worker import task_log
from worker.settings import WorkerSettings

Loggers = tuple[logging.Logger, logging.Logger]


@pytest.fixture
def celery_loggers() -> Iterator[Loggers]:
    received, trace = (logging.getLogger(n) for n in (task_log.RECEIVED_LOGGER, task_log.TRACE_LOGGER))
    saved = (received.level, list(trace.filters))
    yield received, trace
    received.setLevel(saved[0])
    trace.filters[:] = saved[1]


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord(task_log.TRACE_LOGGER, logging.INFO, __file__, 1, msg, ({"id": "o-1"},), None)


def test_by_default_celerys_lines_are_left_alone(celery_loggers: Loggers) -> None:
    received, trace = celery_loggers
    before = (received.level, list(trace.filters))
    task_log.apply(WorkerSettings.from_env({}, env_file=None))
    assert (received.level, trace.filters) == before
    assert trace.filter(_record(LOG_SUCCESS))


def test_off_only_the_success_and_received_lines_go(celery_loggers: Loggers) -> None:
    received, trace = celery_loggers
    off = WorkerSettings.from_env({"TASK_SUCCESS_LOG": "false"}, env_file=None)
    task_log.apply(off)
    task_log.apply(off)  # twice (a worker_init per test worker): one filter
    assert not received.isEnabledFor(logging.INFO) and received.isEnabledFor(logging.WARNING)
    assert sum(isinstance(f, task_log.DropSuccessLines) for f in trace.filters) == 1
    assert not trace.filter(_record(LOG_SUCCESS))
    assert trace.filter(_record(LOG_RETRY))
