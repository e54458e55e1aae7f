"""What `orders up` shows: one summary of every endpoint, then a compact live status line."""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.text import Text

from orders.core.aggregate import Aggregate
from orders.core.queue_depth import QueueDepthUnavailable, depth_reader
from orders.core.redis_client import REDIS_ERRORS, connect
from orders.stack.supervisor import Service

if TYPE_CHECKING:
    from orders.stack.stack import Stack

console = Console()


def print_summary(stack: Stack) -> None:
    """Every endpoint on a line of its own, whole: never wrapped or cut at the terminal's or a log
    file's width (80 columns when not a terminal), so a URL and the secret it carries copy or click as
    one. A terminal narrower than a line folds it on screen only."""
    for note in stack.notes:
        console.print(Text(note, style="yellow"), soft_wrap=True)
    rows = [
        *stack.urls.items(),
        ("logs", str(stack.log_dir)),
        ("workers", f"{stack.options.workers} x celery solo, "
                    f"failure injection on (demo), rate {stack.options.failure_rate:g}"),
        ("producer", f"{stack.options.rate:g} orders/s" if stack.options.producer else "off"),
    ]  # fmt: skip
    width = max(len(name) for name, _value in rows)
    console.print(Text("orders up: the pipeline is running", style="bold"))
    for name, value in rows:
        console.print(Text.assemble((f"  {name:<{width}}  ", "bold"), value), soft_wrap=True)
    console.print(
        "Everything listens on 127.0.0.1; the passwords and tokens in these URLs were made for this run."
    )
    console.print('Other shells: eval "$(orders env)" then orders stats, orders produce, ... Ctrl-C stops.')


def print_death(service: Service) -> None:
    code = service.proc.returncode if service.proc else None
    console.print(f"[bold red]{service.name} exited with code {code}[/]; its last log lines:")
    console.print(service.tail(20), markup=False, highlight=False)
    console.print("stopping the rest")


class StatusLine:
    """A single refreshed line: orders counted, average, retries, DLQ, queue depth, rate."""

    def __init__(self, stack: Stack) -> None:
        self._aggregate = Aggregate(connect(stack.env["REDIS_URL"]))
        broker_url = stack.env.get("CELERY_BROKER_URL", stack.env["REDIS_URL"])  # the children's broker
        self._queue = depth_reader(broker_url, stack.settings.celery_queue)
        self._live = Live(Text("starting..."), console=console, refresh_per_second=2, transient=False)
        self._last = (time.monotonic(), 0)

    def __enter__(self) -> StatusLine:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._live.__exit__(None, None, None)
        self._queue.close()

    def refresh(self) -> None:
        try:
            snap = self._aggregate.snapshot()
        except REDIS_ERRORS as exc:
            self._live.update(Text(f"redis unavailable: {exc}", style="red"))
            return
        queued = self._queued()
        now, done = time.monotonic(), snap.count
        rate = (done - self._last[1]) / max(now - self._last[0], 1e-6)
        self._last = (now, done)
        c = snap.counters
        average = f"{snap.average:.2f}" if snap.average is not None else "-"
        self._live.update(
            Text(
                f"consumed {c['consumed']}  succeeded {done}  avg {average}  retries {c['retry_attempts']}  "
                f"dlq {c['dlq']}  queued {queued}  {rate:.1f}/s"
            )
        )

    def _queued(self) -> str:
        try:
            return str(self._queue.depth())
        except QueueDepthUnavailable:
            return "-"  # the broker did not answer (the aggregate did)
