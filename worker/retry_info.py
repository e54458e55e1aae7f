"""A retry's exception info, formatted only if someone reads it.

Celery wraps every Retry in billiard's ExceptionInfo, which at once copies the traceback frame by frame
(on Python 3.11+ with every instruction position of each code object) and formats it (3.11's caret
anchors parse source lines with ``ast``): a large share of the workers' time at 10% transient failures
(docs/benchmarks.md), for a text our hooks never read and that only a ``task-retried`` event sends
(while Flower watches, or with TASK_EVENTS=true). Here the same fields are computed on first use, from
the same traceback, so whoever reads them gets what Celery would have given; nobody reading costs
nothing. Celery's Request.on_retry formats the text for that event even when no event is sent, so the
tasks' Request (``Task.Request``, Celery's extension point) asks for it only when the event goes out.

Part of the fast path: worker/fast_path.py installs it (unless ORDERS_STOCK_CELERY) and lists the Celery
and billiard internals it relies on (C1-C3, B1-B2) with their contract tests.

Failures keep billiard's eager ExceptionInfo: the dead letter's stack trace is read every time.
"""

from __future__ import annotations

import functools
import sys
from types import TracebackType
from typing import Any

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback, Traceback
from celery.app import trace
from celery.exceptions import Retry
from celery.worker.request import Request
from kombu.utils.encoding import safe_repr, safe_str

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]


class _LazyExceptionWithTraceback(ExceptionWithTraceback):
    """billiard's wrapper of the exception, whose traceback text is asked of ``info`` when read."""

    def __init__(self, exc: BaseException, info: RetryInfo) -> None:
        Exception.__init__(self)  # not billiard's __init__, which formats the text at once (B2)
        self.exc = exc
        self._info = info

    @property  # type: ignore[override]
    def tb(self) -> str:
        return f'\n"""\n{self._info.traceback}"""'  # as billiard's __init__ writes it


class RetryInfo(ExceptionInfo):  # type: ignore[misc]
    """ExceptionInfo whose ``tb``, ``traceback`` and ``exception`` are built when first read."""

    def __init__(self, exc_info: ExcInfo | None = None, internal: bool = False) -> None:
        info: Any = exc_info or sys.exc_info()
        self.type: type[BaseException] = info[0]
        self._exception: BaseException = info[1]
        self._raw_tb: TracebackType | None = info[2]
        self.internal = internal

    @functools.cached_property
    def traceback(self) -> str:  # type: ignore[override]
        import traceback as tb_module

        return "".join(tb_module.format_exception(self.type, self._exception, self._raw_tb))

    @functools.cached_property
    def tb(self) -> Traceback:  # type: ignore[override]
        return Traceback(self._raw_tb)

    @functools.cached_property
    def exception(self) -> ExceptionWithTraceback:  # type: ignore[override]
        return _LazyExceptionWithTraceback(self._exception, self)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a prefork child hands it to its parent) as billiard's: every field computed."""
        state = {"type": self.type, "internal": self.internal, "tb": self.tb, "traceback": self.traceback}
        state["exception"] = ExceptionWithTraceback(self._exception, self.traceback)
        return state


class RetryAwareRequest(Request):  # type: ignore[misc]
    """Celery's Request, except that a retry's traceback is formatted only for an event that is sent."""

    def _task_events_go_out(self) -> bool:
        """What send_event and the dispatcher check: with task events off the worker's dispatcher is
        still enabled (for heartbeats) but keeps only the "worker" group; enable_events (Flower) adds
        "task" to it while the worker runs."""
        eventer = self._eventer  # C3
        if not (eventer and eventer.enabled and self.task.send_events):
            return False
        return not eventer.groups or "task" in eventer.groups

    def on_retry(self, exc_info: ExceptionInfo) -> None:
        if self.task.acks_late:
            self.acknowledge()
        if self._task_events_go_out():
            self.send_event(
                "task-retried",
                exception=safe_repr(exc_info.exception.exc),
                traceback=safe_str(exc_info.traceback),
            )


def exception_info(exc_info: ExcInfo | None = None, internal: bool = False) -> ExceptionInfo:
    """What celery.app.trace builds for an exception: a lazy one for a Retry, billiard's otherwise."""
    exc_info = exc_info or sys.exc_info()  # type: ignore[assignment]
    if isinstance(exc_info[1], Retry):  # type: ignore[index]
        return RetryInfo(exc_info, internal)
    return ExceptionInfo(exc_info, internal)


def install() -> None:
    """Have Celery's tracer build :func:`exception_info` (it names ``ExceptionInfo`` only to call it: C1)."""
    trace.ExceptionInfo = exception_info  # type: ignore[attr-defined,assignment]
