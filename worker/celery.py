"""The Celery app. `celery -A worker worker` imports this module and finds ``app``."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_ready

from bridge.handoff import TASK_TIME_LIMIT, celery_config
from bridge.settings import Settings


def create_app(settings: Settings) -> Celery:
    app = Celery("orders", include=["worker.tasks"])
    app.conf.update(
        celery_config(settings),
        # Acknowledge after the task ran, and put the message back if the worker dies mid-task:
        # safe because the aggregate is idempotent on orderId.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_time_limit=TASK_TIME_LIMIT,
        # Flower and `celery events` see tasks without anyone passing -E.
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app


@worker_ready.connect
def _serve_metrics(**_: object) -> None:
    """The worker's /metrics, from the process that runs the tasks (solo) or merges them (prefork)."""
    from bridge.metrics import serve_metrics

    serve_metrics(settings.metrics_port)


settings = Settings.from_env()
app = create_app(settings)
