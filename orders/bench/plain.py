"""A plain Celery app, every setting at its default: what a user means by "stock Celery".

`orders bench` drains no-op tasks with `celery -A orders.bench.plain worker --pool=solo` (and `-E` for
task events), on kombu's own Redis transport: early acks, prefetch multiplier 4, no events, no
visibility-timeout tuning. Celery reads the broker from ``CELERY_BROKER_URL`` itself; the queue is
Celery's default, ``celery``. The task has the project's no-op name, so the same pre-filled messages
serve both ceilings.
"""

from __future__ import annotations

from celery import Celery

from orders.core.order import NOOP_TASK

QUEUE = "celery"  # Celery's default queue

app = Celery("plain")


@app.task(name=NOOP_TASK)
def noop() -> None:
    """Does nothing."""
