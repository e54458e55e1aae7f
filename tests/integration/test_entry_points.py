"""The processes' entry points: settings are read when a process starts, and a bad one is a clear message.

Each runs as a user would, in a subprocess, with an environment holding one malformed variable.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness.services import REPO_ROOT

BAD = {"REDIS_URL": "http://not-redis:1"}  # the settings refuse it: "must be a redis://, rediss:// ..."


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in BAD}
    return subprocess.run(
        argv, env={**environ, **env}, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )


def test_importing_the_task_module_reads_no_environment() -> None:
    code = "import worker.tasks, worker.celery as c; print(c.settings.cache_info().currsize)"
    done = run([sys.executable, "-c", code], **BAD)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"  # no settings were built by the import


def test_the_worker_reads_its_settings_when_it_starts() -> None:
    code = "import worker.tasks as t; t.process_order.max_retries"  # creating the task configures the app
    done = run([sys.executable, "-c", code], **BAD, MAX_RETRIES="5")
    assert done.returncode == 1
    assert "REDIS_URL: Value error, must be a redis://" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_worker_takes_its_retry_policy_from_the_settings() -> None:
    code = (
        "import worker.tasks as t; p = t.process_order; "
        "print(p.max_retries, p.retry_backoff, p.retry_backoff_max)"
    )
    done = run([sys.executable, "-c", code], MAX_RETRIES="5", RETRY_BACKOFF_BASE="3", RETRY_BACKOFF_MAX="40")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["5", "3", "40"]


@pytest.mark.parametrize("argv", [["bridge"], ["stats"], ["produce", "--count", "1"], ["dlq", "list"]])
def test_orders_commands_turn_a_bad_setting_into_a_message_and_exit_code(argv: list[str]) -> None:
    done = run([sys.executable, "-m", "orders.cli", *argv], **BAD)
    assert done.returncode == 1
    assert "Error: Invalid configuration:" in done.stderr
    assert "REDIS_URL" in done.stderr and "Traceback" not in done.stderr


def test_python_m_bridge_exits_with_the_message() -> None:
    done = run([sys.executable, "-m", "bridge"], **BAD)
    assert done.returncode == 1
    assert "REDIS_URL" in done.stderr and "Traceback" not in done.stderr


def test_celery_worker_exits_with_the_message() -> None:
    done = run([sys.executable, "-m", "celery", "-A", "worker", "worker", "--pool=solo"], **BAD)
    assert done.returncode != 0
    assert "REDIS_URL: Value error, must be a redis://" in done.stderr + done.stdout
