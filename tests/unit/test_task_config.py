"""The task's retry policy as Celery sees it: 2, 4, 8 s by default, 3 retries, late acks."""

from __future__ import annotations

import pytest
from celery.utils.time import get_exponential_backoff_interval

from orders.core.celery_config import task_id_for
from worker.tasks import process_order


def test_default_backoff_is_2_4_8_seconds() -> None:
    task = process_order
    assert task.max_retries == 3
    assert task.retry_jitter is False
    # autoretry computes each countdown with this Celery function from the task's options
    countdowns = [
        get_exponential_backoff_interval(int(max(1.0, task.retry_backoff)), r, task.retry_backoff_max, False)
        for r in range(task.max_retries)
    ]
    assert countdowns == [2, 4, 8]


def test_late_acks_and_redelivery_on_worker_loss() -> None:
    assert process_order.acks_late is True
    assert process_order.reject_on_worker_lost is True
    assert process_order.name == "orders.process_order"


def test_task_events_are_sent_while_someone_watches_unless_asked_for() -> None:
    """Off by default (Flower turns them on as it connects); TASK_EVENTS=true sends them from the start."""
    from worker.celery import worker_config
    from worker.settings import WorkerSettings

    quiet = worker_config(WorkerSettings.from_env({}, env_file=None))
    assert (quiet["worker_send_task_events"], quiet["task_send_sent_event"]) == (False, False)
    watched = worker_config(WorkerSettings.from_env({"TASK_EVENTS": "true"}, env_file=None))
    assert (watched["worker_send_task_events"], watched["task_send_sent_event"]) == (True, True)


@pytest.mark.parametrize(
    ("order_id", "kept"),
    [
        ("o-1", True),
        ("x" * 255, True),
        ("é" * 127, True),
        ("x" * 256, False),
        ("é" * 128, False),
        ("é" * 256, False),
    ],
)
def test_the_task_id_is_the_order_id_unless_amqp_cannot_carry_it(order_id: str, kept: bool) -> None:
    task_id = task_id_for({"orderId": order_id, "product": "p", "price": "1.00"})
    assert (task_id == order_id) is kept
    assert len(task_id.encode()) <= 255
    assert task_id == task_id_for({"orderId": order_id, "product": "other", "price": "2.00"})  # every copy
