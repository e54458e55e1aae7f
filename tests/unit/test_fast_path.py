"""worker/fast_path.py: one setting turns the worker's whole fast path on or off."""

from __future__ import annotations

import pytest
from billiard.einfo import ExceptionInfo
from celery.app import trace

from orders.core.celery_config import FAST_TRANSPORT, celery_config
from orders.core.settings import Settings
from worker import fast_path
from worker.hooks import OrderTask
from worker.retry_info import exception_info

CELERYS = "celery.worker.request:Request"


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever install() changes is put back after the test."""
    monkeypatch.setattr(trace, "ExceptionInfo", ExceptionInfo)
    monkeypatch.setattr(OrderTask, "Request", CELERYS)


@pytest.mark.usefixtures("restored")
def test_by_default_the_worker_installs_the_fast_path() -> None:
    settings = Settings.from_env({}, env_file=None)
    fast_path.install(settings, OrderTask)
    assert trace.ExceptionInfo is exception_info
    assert OrderTask.Request == "worker.retry_info:RetryAwareRequest"
    assert celery_config(settings)["broker_transport"] == FAST_TRANSPORT


@pytest.mark.usefixtures("restored")
def test_orders_stock_celery_leaves_celery_and_kombu_as_shipped() -> None:
    settings = Settings.from_env({"ORDERS_STOCK_CELERY": "true"}, env_file=None)
    fast_path.install(settings, OrderTask)
    assert trace.ExceptionInfo is ExceptionInfo
    assert OrderTask.Request == CELERYS
    assert celery_config(settings)["broker_transport"] is None


@pytest.mark.usefixtures("restored")
@pytest.mark.parametrize(("env", "installed"), [({}, True), ({"ORDERS_STOCK_CELERY": "true"}, False)])
def test_a_starting_worker_installs_it_from_its_settings(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], installed: bool
) -> None:
    """Celery sends worker_init before the consumer builds its strategies; worker/tasks.py's receiver
    installs the fast path from the worker's own settings (worker/tasks.py, which Celery imports first)."""
    from celery.signals import worker_init

    import worker.tasks

    monkeypatch.setattr(worker.tasks, "settings", lambda: Settings.from_env(env, env_file=None))
    worker_init.send(sender=None)
    assert (trace.ExceptionInfo is exception_info) is installed
    assert (OrderTask.Request == fast_path.REQUEST) is installed
