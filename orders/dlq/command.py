"""`orders dlq list` and `orders dlq replay`: the DLQ topic as a table, and re-publishing dead letters."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from orders.core.process import start_process
from orders.core.redis_client import connect
from orders.core.tracing_settings import trace_link
from orders.dlq.settings import DlqSettings

if TYPE_CHECKING:
    from rich.table import Table

    from orders.dlq.reader import DeadLetterFilter, DeadLetterView
    from orders.dlq.replay import ReplayTally

COLUMNS = ("orderId", "product", "price", "stage", "error", "attempts", "failed-at", "trace")
STAGES = ("decode", "validate", "process")
# Commits are explicit (replay only); an idle partition's fetch answers fast, so a run ends fast.
READER_OPTIONS: dict[str, Any] = {"enable.auto.commit": False, "fetch.wait.max.ms": 100}


REPLAY_HELP = """Re-publish dead letters, value and key unchanged, to ORDERS_TOPIC.

\b
Position: a consumer group (--group) remembers how far replays got, so running it again
re-publishes only dead letters that arrived since. The position is saved after the orders
topic acknowledged the records below it; a crash re-publishes at most the unacknowledged
tail (the aggregate's dedupe counts an order once).
\b
Filters: without one, every replayable dead letter is re-published. A record a filter
excludes is left for a later replay: the position of its partition stops at the first
excluded record, so matching records after it are re-published again by the next
replay (counted once thanks to the dedupe).
\b
Never re-published: records the bridge would reject again (bytes that do not decode with
today's registry, orders failing validation): they would only come back as new dead
letters. They are counted as unreplayable and passed over; pass a new --group to look
at the whole topic again, e.g. after registering a missing schema.

Exits 1 if any record was not acknowledged (the position stays at the first of them).
"""


def _read_errors() -> tuple[type[Exception], ...]:
    import redis
    from confluent_kafka import KafkaException

    from orders.core.errors import RegistryUnavailable
    from orders.dlq.reader import DlqError

    return (DlqError, KafkaException, RegistryUnavailable, redis.RedisError)


def _time(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    from orders.dlq.reader import parse_time

    if value is None:
        return None
    parsed = parse_time(value)
    if parsed is None:
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}")
    return parsed


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--stage, --error, --order-id, --since, --until: shared by list and replay."""
    options = [
        click.option(
            "--stage", "stages", multiple=True, type=click.Choice(STAGES), help="Only this stage; repeatable."
        ),
        click.option("--error", default="", help="Only errors whose class or message contains this text."),
        click.option("--order-id", "order_ids", multiple=True, help="Only this orderId; repeatable."),
        click.option("--since", callback=_time, help="Only dead letters failed at or after (ISO 8601, UTC)."),
        click.option("--until", callback=_time, help="Only dead letters failed before (ISO 8601, UTC)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def build_filter(options: dict[str, Any]) -> DeadLetterFilter:
    from orders.dlq.reader import DeadLetterFilter

    return DeadLetterFilter(
        stages=frozenset(options["stages"]),
        error=options["error"],
        order_ids=frozenset(options["order_ids"]),
        since=options["since"],
        until=options["until"],
    )


def table_row(view: DeadLetterView, traces_ui: str | None = None) -> tuple[str, ...]:
    """One table row, in :data:`COLUMNS` order; the trace id links to the backend's page when known."""
    error_class = view.error_class.rsplit(".", 1)[-1]
    failed_at = view.failed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if view.failed_at else ""
    attempts = "" if view.attempts is None else str(view.attempts)
    error = f"{error_class}: {view.error_message}" if error_class else view.error_message
    link = trace_link(traces_ui, view.trace_id)
    trace = f"[link={link}]{view.trace_id}[/link]" if link else view.trace_id or ""
    return (view.order_id, view.product, view.price, view.stage, error, attempts, failed_at, trace)


def render_table(views: Sequence[DeadLetterView], title: str, traces_ui: str | None = None) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("price", "attempts") else "left")
    for view in views:
        table.add_row(*table_row(view, traces_ui))
    return table


@click.group()
def dlq() -> None:
    """Inspect and replay dead letters on DLQ_TOPIC."""


@dlq.command("list")
@filter_options
@click.option("--limit", default=0, show_default=True, help="Show only the N most recent (0 = all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of dead letters.")
def list_command(limit: int, as_json: bool, **filters: Any) -> None:
    """Show the dead letters on DLQ_TOPIC by failed-at, oldest first; reads to the end, commits nothing."""
    from rich.console import Console

    from orders.core.codec import OrderCodec
    from orders.core.kafka import create_consumer, create_registry_client
    from orders.dlq.reader import plan_spans, read_batches, view_of

    settings = start_process(DlqSettings)
    flt = build_filter(filters)
    codec = OrderCodec(create_registry_client(settings), settings.orders_topic)
    # The group id is never used: a listing is assigned its partitions and commits nothing.
    consumer = create_consumer(settings, f"{settings.consumer_group}-dlq-list", **READER_OPTIONS)
    try:
        spans = plan_spans(consumer, settings.dlq_topic, from_committed=False)
        batches = read_batches(consumer, settings.dlq_topic, spans)
        views = [v for batch in batches for v in (view_of(m, codec) for m in batch) if flt.matches(v)]
    except _read_errors() as exc:
        raise click.ClickException(f"could not read {settings.dlq_topic}: {exc}") from exc
    finally:
        consumer.close()
    epoch = datetime.min.replace(tzinfo=UTC)
    views.sort(key=lambda v: (v.failed_at or epoch, v.dlq_partition, v.dlq_offset))
    views = views[-limit:] if limit > 0 else views
    if as_json:
        shown = [{**v.to_json(), "trace_url": trace_link(settings.traces_ui, v.trace_id)} for v in views]
        click.echo(json.dumps(shown, indent=2))
    else:
        title = f"{settings.dlq_topic}: {len(views)} dead letter(s)"
        Console().print(render_table(views, title, settings.traces_ui))


@dlq.command(help=REPLAY_HELP)
@filter_options
@click.option("--group", help="Consumer group keeping the position [default: CONSUMER_GROUP-dlq-replay].")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; produce and commit nothing.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def replay(group: str | None, dry_run: bool, quiet: bool, **filters: Any) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from orders.core.aggregate import Aggregate
    from orders.core.codec import OrderCodec
    from orders.core.kafka import create_consumer, create_producer, create_registry_client
    from orders.core.tracing import start_tracing
    from orders.dlq.reader import plan_spans, read_batches
    from orders.dlq.replay import Replay

    settings = start_process(DlqSettings)
    tracing = start_tracing(settings, "orders.dlq.replay")
    group = group or f"{settings.consumer_group}-dlq-replay"
    timeout_ms = int(settings.dlq_delivery_timeout * 1000)
    producer = None if dry_run else create_producer(settings, **{"message.timeout.ms": timeout_ms})
    consumer = create_consumer(settings, group, **READER_OPTIONS)
    runner = Replay(
        consumer,
        producer,
        OrderCodec(create_registry_client(settings), settings.orders_topic),
        (settings.dlq_topic, settings.orders_topic),
        build_filter(filters),
        settings.dlq_delivery_timeout + 5,
        Aggregate(connect(settings.redis)).release_dead_letter_claims,
        tracing,
    )
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    error = ""
    try:
        spans = plan_spans(consumer, settings.dlq_topic, from_committed=True)
        with Progress(*columns, console=Console(stderr=True), disable=quiet) as progress:
            task = progress.add_task("replay", total=sum(max(s.end - s.start, 0) for s in spans))
            runner.run(read_batches(consumer, settings.dlq_topic, spans), lambda n: progress.advance(task, n))
    except _read_errors() as exc:  # what was committed before stays committed; the summary says how far
        error = str(exc)
    finally:
        consumer.close()
        tracing.shutdown()
    _report(runner.tally, group, dry_run, error)


def _report(tally: ReplayTally, group: str, dry_run: bool, error: str) -> None:
    """The count summary; exits 1 if a record was not acknowledged or the replay stopped on an error."""
    from rich.console import Console

    if dry_run and tally.would_replay:
        Console().print(render_table(tally.would_replay, "would replay"))
    verb = "would replay" if dry_run else "replayed"
    click.echo(
        f"matched {tally.matched}, {verb} {tally.replayed}, skipped {tally.skipped}, "
        f"unreplayable {tally.unreplayable}, failed {tally.failed}"
    )
    held = "would be held" if dry_run else "held"
    for partition, offset in sorted(tally.held.items()):
        click.echo(f"position of group {group} {held} at partition {partition} offset {offset}")
    if tally.failed or error:
        click.echo(f"replay failed: {error or tally.last_error}", err=True)
        raise SystemExit(1)
