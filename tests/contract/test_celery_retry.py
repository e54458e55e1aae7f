"""Celery's tracer and Request, billiard's exception info: what worker/retry_info.py replaces or copies."""

from __future__ import annotations

import pickle
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest
from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from celery import Celery
from celery.exceptions import Retry

from tests.contract.contract import Contract
from tests.harness.services import REPO_ROOT

RETRY_INFO = "worker/retry_info.py"
C1 = Contract(
    "C1", "celery", "celery.app.trace looking ExceptionInfo up as a module global when a task raises Retry",
    RETRY_INFO, "formatting a retry's traceback only if read (install() replaces trace.ExceptionInfo); "
    "if the tracer stops looking the name up there, every retry formats it again and nothing fails",
    "celery/app/trace.py: TraceInfo.handle_retry, build_tracer",
)  # fmt: skip
C2 = Contract(
    "C2", "celery", "Request.on_retry(exc_info)'s body: ack a late-ack task, send task-retried with the "
    "exception's repr and the traceback text",
    RETRY_INFO, "RetryAwareRequest.on_retry, which repeats that body but formats the text only for an "
    "event that goes out; a change to Celery's body is lost on the fast path",
    "celery/worker/request.py: Request.on_retry, Request.send_event",
)  # fmt: skip
C3 = Contract(
    "C3", "celery", "Request._eventer (enabled, groups) and task.send_events deciding whether send_event "
    "sends, and EventDispatcher.send dropping a group missing from groups",
    RETRY_INFO, "RetryAwareRequest._task_events_go_out, which must say yes exactly when Celery would "
    "send task-retried: a wrong no loses Flower's retry events, a wrong yes formats every traceback",
    "celery/worker/request.py: Request.__init__, send_event; celery/events/dispatcher.py: "
    "EventDispatcher.send",
)  # fmt: skip
C4 = Contract(
    "C4", "celery", "Task.Request, read when the worker's consumer builds its strategies (after worker_init)",
    "worker/fast_path.py", "giving the task RetryAwareRequest at worker_init; read earlier, the "
    "worker keeps Celery's Request and formats every retry's traceback",
    "celery/worker/strategy.py: default; celery/worker/worker.py: WorkController.__init__; "
    "celery/worker/consumer/tasks.py: Tasks.start",
)  # fmt: skip
B1 = Contract(
    "B1", "billiard", "ExceptionInfo.__init__ setting type, exception, tb, traceback and internal only",
    RETRY_INFO, "RetryInfo, which skips that __init__ and computes each field when read; a field "
    "billiard adds is missing from every retry's info",
    "billiard/einfo.py: ExceptionInfo",
)  # fmt: skip
B2 = Contract(
    "B2", "billiard", "ExceptionWithTraceback(exc, tb) keeping exc and tb and pickling as rebuild_exc",
    RETRY_INFO, "_LazyExceptionWithTraceback, which skips that __init__, and RetryInfo.__getstate__ "
    "(a prefork child pickles a retry's info to its parent)",
    "billiard/einfo.py: ExceptionWithTraceback, rebuild_exc",
)  # fmt: skip
ALL_FIELDS = {"type", "exception", "tb", "traceback", "internal"}
# A new app takes in every shared task imported so far; with the bench's and the worker's no-op both
# imported (tests/unit in the same pytest run), Celery warns that "orders.noop" has two callables.
SHARED_NOOPS = pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")


def _raised(exc: BaseException) -> Any:
    try:
        try:
            raise ValueError("the cause")
        except ValueError as cause:
            raise exc from cause
    except BaseException:
        return sys.exc_info()


def _retry() -> Any:
    return _raised(Retry("Retry in 2s", ValueError("boom"), when=2))


@SHARED_NOOPS
def test_c1_the_tracer_builds_a_retrys_info_from_the_name_we_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    with C1.holds():
        from celery.app import trace

        from worker.retry_info import RetryInfo, exception_info

        app = Celery("contract-c1", set_as_current=False)

        @app.task(name="c1.retries", ignore_result=True, shared=False)
        def retries() -> None:
            raise Retry("Retry in 2s", ValueError("boom"), when=2)

        app.finalize()
        task = app.tasks["c1.retries"]
        monkeypatch.setattr(trace, "ExceptionInfo", exception_info)
        tracer = trace.build_tracer(task.name, task, app=app, eager=False, propagate=False)
        outcome = tracer("c1-id", (), {}, {"id": "c1-id", "delivery_info": {}})
        assert type(outcome[0]) is RetryInfo, f"the tracer built a {type(outcome[0]).__name__}"


class _Request:
    """What Celery's Request.on_retry and send_event use of a request: nothing else is there."""

    def __init__(self, eventer: Any, send_events: bool = True) -> None:
        self.task = SimpleNamespace(acks_late=True, send_events=send_events)
        self._eventer = eventer
        self.id = "c-id"
        self.calls: list[Any] = []

    def acknowledge(self) -> None:
        self.calls.append("acknowledge")

    def send_event(self, kind: str, **fields: Any) -> None:
        self.calls.append((kind, fields))


def test_c2_our_on_retry_does_what_celerys_does_when_the_event_goes_out() -> None:
    with C2.holds():
        from celery.worker.request import Request

        from worker.retry_info import RetryAwareRequest, exception_info

        eventer = SimpleNamespace(enabled=True, groups={"worker", "task"})
        celerys, ours = _Request(eventer), _Request(eventer)
        Request.on_retry(celerys, ExceptionInfo(_retry()))
        _Request._task_events_go_out = RetryAwareRequest._task_events_go_out  # type: ignore[attr-defined]
        RetryAwareRequest.on_retry(ours, exception_info(_retry()))
        assert len(celerys.calls) == 2, f"Celery's on_retry now does {celerys.calls}"
        assert ours.calls[0] == celerys.calls[0] == "acknowledge"
        (kind, fields), (our_kind, our_fields) = celerys.calls[1], ours.calls[1]
        assert (our_kind, set(our_fields)) == (kind, set(fields)), f"Celery sends {kind} with {set(fields)}"
        assert our_fields["exception"] == fields["exception"]
        assert our_fields["traceback"].splitlines()[-1] == fields["traceback"].splitlines()[-1]


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("groups", [set(), {"worker"}, {"worker", "task"}])
@pytest.mark.parametrize("send_events", [True, False])
def test_c3_we_expect_an_event_exactly_when_celery_sends_one(
    enabled: bool, groups: set[str], send_events: bool
) -> None:
    with C3.holds():
        from celery.events.dispatcher import EventDispatcher
        from celery.worker.request import Request
        from kombu import Connection

        from worker.retry_info import RetryAwareRequest

        assert hasattr(Request, "_eventer"), "Celery's Request keeps its dispatcher elsewhere"
        app = Celery("contract-c3", set_as_current=False)
        with Connection("memory://") as conn:
            eventer = EventDispatcher(conn, enabled=enabled, groups=groups, app=app)
            published: list[str] = []
            if enabled:  # what the dispatcher publishes with: record instead of sending
                eventer.producer = SimpleNamespace(publish=lambda event, **_: published.append(event["type"]))
            request = _Request(eventer, send_events)
            Request.send_event(request, "task-retried", exception="e", traceback="t")
            expected = RetryAwareRequest._task_events_go_out(request)  # type: ignore[arg-type]
            eventer.close()
        assert bool(published) == expected, f"Celery sent {published}, we expected {expected}"


def test_c4_a_request_class_set_at_worker_init_serves_the_tasks(redis_url: str) -> None:
    """A real worker, in a process of its own (tests/contract/request_probe.py)."""
    with C4.holds():
        probe = [sys.executable, "-m", "tests.contract.request_probe", redis_url]
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
        last = (done.stdout.strip() or done.stderr.strip()).splitlines()[-1:] or ["no output"]
        assert done.returncode == 0, last[0]


def test_b1_retry_info_has_every_field_billiards_init_sets() -> None:
    with B1.holds():
        from worker.retry_info import RetryInfo, exception_info

        exc_info = _retry()
        eager, lazy = ExceptionInfo(exc_info), exception_info(exc_info)
        assert isinstance(lazy, RetryInfo)
        assert set(vars(eager)) == ALL_FIELDS, f"billiard's ExceptionInfo now sets {sorted(vars(eager))}"
        assert (lazy.type, lazy.internal) == (eager.type, eager.internal)
        assert lazy.traceback == eager.traceback and str(lazy) == str(eager)
        assert lazy.tb.tb_lineno == eager.tb.tb_lineno and lazy.exc_info[0] is eager.exc_info[0]
        assert set(lazy.__getstate__()) == set(vars(eager)), "a pickled RetryInfo lacks a field"


def test_b2_the_lazy_exception_wrapper_is_billiards_once_read_or_pickled() -> None:
    with B2.holds():
        from worker.retry_info import exception_info

        exc_info = _retry()
        eager, lazy = ExceptionInfo(exc_info).exception, exception_info(exc_info).exception
        assert set(vars(ExceptionWithTraceback(exc_info[1], "text"))) == {"exc", "tb"}
        assert isinstance(lazy, ExceptionWithTraceback) and lazy.exc is eager.exc
        assert str(lazy) == str(eager) and lazy.tb == eager.tb
        ours, billiards = pickle.loads(pickle.dumps(lazy)), pickle.loads(pickle.dumps(eager))
        assert type(ours) is type(billiards) is Retry
        assert str(ours.__cause__) == str(billiards.__cause__), "billiard pickles it another way now"
