"""A Retry's exception info: the fields billiard's ExceptionInfo gives, built only when read."""

from __future__ import annotations

import pickle
import sys
from types import SimpleNamespace
from typing import Any

from billiard.einfo import ExceptionInfo
from celery.app import trace
from celery.exceptions import Retry

from orders.core.errors import TransientError
from worker import retry_info
from worker.retry_info import RetryAwareRequest, RetryInfo, exception_info


def _raised(exc: BaseException) -> Any:
    try:
        try:
            raise TransientError("injected transient failure (rate 0.1)")
        except TransientError as cause:
            raise exc from cause
    except BaseException:
        return sys.exc_info()


def test_a_retry_gets_the_same_fields_as_billiards_only_when_read() -> None:
    exc_info = _raised(Retry("Retry in 2s", TransientError("boom"), when=2))
    lazy, eager = exception_info(exc_info), ExceptionInfo(exc_info)
    assert isinstance(lazy, RetryInfo)
    assert "traceback" not in vars(lazy) and "tb" not in vars(lazy)  # nothing formatted yet
    assert lazy.exception.exc is eager.exception.exc  # what a task-retried event reports
    assert "traceback" not in vars(lazy)
    assert lazy.traceback == eager.traceback
    assert str(lazy.exception) == str(eager.exception)
    assert lazy.tb.tb_lineno == eager.tb.tb_lineno
    assert lazy.exc_info[0] is Retry


def test_a_pickled_retry_info_carries_every_field() -> None:
    """A prefork child sends it to its parent: what arrives needs no traceback to format."""
    exc_info = _raised(Retry("Retry in 2s", TransientError("boom"), when=2))
    copy = pickle.loads(pickle.dumps(exception_info(exc_info)))
    billiards = pickle.loads(pickle.dumps(ExceptionInfo(exc_info)))
    assert copy.traceback == billiards.traceback
    assert "TransientError: injected transient failure" in copy.traceback
    assert type(copy.exception) is type(billiards.exception) is Retry  # billiard rebuilds the exception
    assert str(copy.exception.__cause__) == str(billiards.exception.__cause__)  # with the text as cause


def test_other_exceptions_keep_billiards_eager_info() -> None:
    """A failure's stack trace goes into its dead letter: built at once, as Celery does."""
    info = exception_info(_raised(ValueError("bad")))
    assert type(info) is ExceptionInfo
    assert "ValueError: bad" in info.traceback


def test_install_gives_celerys_tracer_the_lazy_info(monkeypatch: Any) -> None:
    monkeypatch.setattr(trace, "ExceptionInfo", trace.ExceptionInfo)  # restored after the test
    retry_info.install()
    assert trace.ExceptionInfo is exception_info


class _Eventer:
    """A worker's event dispatcher: enabled for heartbeats; task events only if "task" is a group."""

    def __init__(self, events: bool) -> None:
        self.enabled = True
        self.groups = {"worker", "task"} if events else {"worker"}


class _Request:
    """What RetryAwareRequest.on_retry uses of a Celery Request: its task, eventer, ack and events."""

    _task_events_go_out = RetryAwareRequest._task_events_go_out

    def __init__(self, events: bool) -> None:
        self.task = SimpleNamespace(acks_late=True, send_events=True)
        self._eventer = _Eventer(events)
        self.acked = False
        self.events: list[tuple[str, dict[str, Any]]] = []

    def acknowledge(self) -> None:
        self.acked = True

    def send_event(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))


def test_a_retry_with_events_off_is_acknowledged_and_never_formatted() -> None:
    info = exception_info(_raised(Retry("Retry in 2s", TransientError("boom"), when=2)))
    request = _Request(events=False)
    RetryAwareRequest.on_retry(request, info)  # type: ignore[arg-type]
    assert request.acked and request.events == []
    assert "traceback" not in vars(info)


def test_a_retry_with_events_on_sends_celerys_event() -> None:
    exc_info = _raised(Retry("Retry in 2s", TransientError("boom"), when=2))
    request = _Request(events=True)
    RetryAwareRequest.on_retry(request, exception_info(exc_info))  # type: ignore[arg-type]
    [(kind, fields)] = request.events
    assert kind == "task-retried"
    billiards = ExceptionInfo(exc_info)  # what Celery's own Request.on_retry sends
    assert fields == {"exception": repr(billiards.exception.exc), "traceback": billiards.traceback}
