"""Celery's per-task log lines: the loggers and the message worker/task_log.py relies on."""

from __future__ import annotations

import subprocess
import sys

from tests.contract.contract import Contract
from tests.harness.services import REPO_ROOT

C5 = Contract(
    "C5", "celery", "the per-task INFO lines: 'received' on the logger celery.worker.strategy (asked once "
    "whether INFO is on, when the worker's consumer builds its strategies) and 'succeeded' on "
    "celery.app.trace with LOG_SUCCESS as the record's msg; retries and expected failures on the latter too",
    "worker/task_log.py", "TASK_SUCCESS_LOG=false dropping those two lines and keeping every other: a "
    "change may bring them back (a cost, nothing fails) or silence retries and failures",
    "celery/worker/strategy.py: default; celery/app/trace.py: LOG_SUCCESS, info, build_tracer, "
    "TraceInfo.handle_retry, handle_failure",
)  # fmt: skip


def test_c5_the_success_lines_go_and_retries_and_failures_stay(redis_url: str) -> None:
    """Real workers, in a process of their own (tests/contract/task_log_probe.py)."""
    with C5.holds():
        probe = [sys.executable, "-m", "tests.contract.task_log_probe", redis_url]
        done = subprocess.run(probe, capture_output=True, text=True, timeout=90, cwd=REPO_ROOT)
        last = (done.stdout.strip() or done.stderr.strip()).splitlines()[-1:] or ["no output"]
        assert done.returncode == 0, last[0]
