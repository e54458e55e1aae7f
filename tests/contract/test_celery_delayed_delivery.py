"""Celery's consumer steps: where worker/delayed_delivery.py swaps native delayed delivery's setup."""

from __future__ import annotations

import inspect

from tests.contract.contract import Contract

C6 = Contract(
    "C6", "celery", "Consumer.Blueprint.default_steps naming celery.worker.consumer.delayed_delivery:"
    "DelayedDelivery, a StartStopStep after Tasks whose include_if(c) decides and start(c) sets up",
    "worker/delayed_delivery.py", "setting native delayed delivery up through one node that answers: "
    "if the name moves, the worker runs Celery's step again, which waits on every dead node of a "
    "cluster's broker URLs at each connection (scenario Q1)",
    "celery/worker/consumer/consumer.py: Consumer.Blueprint; celery/worker/consumer/delayed_delivery.py",
)  # fmt: skip


def test_c6_our_consumer_replaces_celerys_delayed_delivery_step_and_only_it() -> None:
    with C6.holds():
        from celery import bootsteps
        from celery.worker.consumer import Consumer as CeleryConsumer
        from celery.worker.consumer.delayed_delivery import DelayedDelivery as CeleryStep
        from celery.worker.consumer.tasks import Tasks

        from worker.delayed_delivery import CELERY_STEP, OUR_STEP, Consumer, DelayedDelivery

        celery_steps = list(CeleryConsumer.Blueprint.default_steps)
        assert CELERY_STEP in celery_steps, f"Celery's steps: {celery_steps}"
        ours = list(Consumer.Blueprint.default_steps)
        assert ours == [OUR_STEP if step == CELERY_STEP else step for step in celery_steps]
        assert issubclass(CeleryStep, bootsteps.StartStopStep) and Tasks in CeleryStep.requires
        assert list(inspect.signature(CeleryStep.include_if).parameters) == ["self", "c"]
        assert list(inspect.signature(DelayedDelivery.start).parameters) == ["self", "c"]
