"""Contract C4's worker, in a process of its own: a real Celery worker whose task gets a Request class at
worker_init, as worker/fast_path.py gives it one. Exits 0 once a request of that class served the task.

An embedded worker sets the process's current Celery app and its logging up; kept out of pytest's
process, it changes nothing the other tests see. Usage: python -m tests.contract.request_probe REDIS_URL
"""

from __future__ import annotations

import sys
import time
from typing import Any

from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import worker_init
from celery.worker.request import Request

served: list[str] = []


class Marked(Request):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        served.append(self.id)


def main(redis_url: str) -> int:
    app = Celery("contract-c4", broker=redis_url, set_as_current=False)
    app.conf.update(task_default_queue="c4", task_ignore_result=True, worker_hijack_root_logger=False)

    @app.task(name="c4.noop", shared=False)
    def noop() -> None:
        pass

    @worker_init.connect(weak=False)
    def install(**_: object) -> None:
        type(app.tasks["c4.noop"]).Request = Marked  # as worker/fast_path.py does, at the same moment

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        app.send_task("c4.noop", task_id="c4-id")
        deadline = time.monotonic() + 20
        while not served and time.monotonic() < deadline:
            time.sleep(0.05)
    if served != ["c4-id"]:
        print(f"the task's requests were not of the class set at worker_init (saw {served})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
