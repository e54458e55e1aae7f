"""What `orders up` shows: one summary of every endpoint, then a compact live status line."""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING

import redis
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from orders.core.aggregate import Aggregate
from orders.core.queue_depth import QueueDepthUnavailable, depth_reader
from orders.stack.supervisor import Service

if TYPE_CHECKING:
    from orders.stack.stack import Stack

console = Console()


def print_summary(stack: Stack) -> None:
    for note in stack.notes:
        console.print(f"[yellow]{note}[/]", markup=True, highlight=False)
    table = Table(title="orders up: the pipeline is running", show_header=False, title_justify="left")
    table.add_column()
    table.add_column(overflow="fold")  # URLs carry secrets: wrapped, never cut short with an ellipsis
    for name, url in stack.urls.items():
        table.add_row(name, url)
    table.add_row("logs", str(stack.log_dir))
    table.add_row(
        "workers",
        f"{stack.options.workers} x celery solo, "
        f"failure injection on (demo), rate {stack.options.failure_rate:g}",
    )
    table.add_row("producer", f"{stack.options.rate:g} orders/s" if stack.options.producer else "off")
    console.print(table)
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
        self._aggregate = Aggregate(redis.Redis.from_url(stack.env["REDIS_URL"]))
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
        except redis.RedisError as exc:
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
