"""`orders produce`: random catalogue orders, Avro-framed via the registry, through an idempotent producer."""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from opentelemetry.trace import SpanKind
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from orders.core.codec import OrderCodec
from orders.core.order import Order
from orders.core.settings import Settings
from orders.core.trace_context import as_kafka_headers, headers_for
from orders.core.tracing import OFF, Tracing
from orders.core.tracing_settings import TracingSettings

log = logging.getLogger(__name__)

CATALOG = (
    "Laptop", "Smartphone", "Headphones", "Keyboard", "Mouse", "Monitor",
    "Tablet", "Smartwatch", "Camera", "Printer", "Speaker", "Router",
)  # fmt: skip
MIN_CENTS, MAX_CENTS = 10_00, 2000_00


def run_prefix() -> str:
    """Unique per run (ms clock + 16 random bits), so order ids never repeat across runs."""
    return f"{time.time_ns() // 1_000_000:x}{os.urandom(2).hex()}"


def random_orders(rng: random.Random, prefix: str | None = None) -> Iterator[Order]:
    prefix = prefix or run_prefix()
    sequence = 0
    while True:
        sequence += 1
        yield Order(f"{prefix}-{sequence:06d}", rng.choice(CATALOG), rng.randint(MIN_CENTS, MAX_CENTS))


@dataclass
class DeliveryTally:
    """Delivery reports, counted as librdkafka calls back."""

    delivered: int = 0
    failed: int = 0
    last_error: KafkaError | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        with self._lock:
            if err is None:
                self.delivered += 1
            else:
                self.failed += 1
                self.last_error = err


class ProducerSettings(Settings, TracingSettings):
    """`orders produce`'s settings: the shared ones and OpenTelemetry's (it starts each order's trace)."""

    default_service_name = "orders-producer"  # OTEL_SERVICE_NAME overrides it


class OrderProducer:
    """Sends orders keyed by orderId; :meth:`send` paces to a rate, :meth:`finish` waits for reports.

    Traced, each order starts a trace: a PRODUCER span whose context goes into the record's headers.
    """

    def __init__(self, producer: Producer, codec: OrderCodec, topic: str, tracing: Tracing = OFF) -> None:
        self._producer = producer
        self._codec = codec
        self._topic = topic
        self._tracing = tracing
        self.tally = DeliveryTally()
        self.sent = 0

    def send(self, order: Order) -> None:
        if not self._tracing.enabled:
            self._produce(order, None)
            return
        with self._tracing.tracer.start_as_current_span(
            f"send {self._topic}", kind=SpanKind.PRODUCER, attributes=send_attributes(self._topic, order)
        ) as span:
            self._produce(order, as_kafka_headers(headers_for(span)))

    def _produce(self, order: Order, headers: list[tuple[str, str | bytes | None]] | None) -> None:
        value = self._codec.encode(order)
        while True:
            try:
                self._producer.produce(
                    self._topic, value, order.order_id.encode(), on_delivery=self.tally, headers=headers
                )
                break
            except BufferError:  # local queue full: let deliveries drain, then try again
                self._producer.poll(0.1)
        self._producer.poll(0)
        self.sent += 1

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for outstanding delivery reports; returns how many are still unreported."""
        return int(self._producer.flush(timeout))


def send_attributes(topic: str, order: Order) -> dict[str, str]:
    """OpenTelemetry's messaging attributes for a Kafka send, and the orderId `orders trace` looks for."""
    return {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": topic,
        "messaging.kafka.message.key": order.order_id,
        "orderId": order.order_id,
    }


class Pacer:
    """Spaces sends to ``rate`` per second (0 = as fast as possible) without drifting."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()

    def wait(self, stop: threading.Event) -> None:
        if not self._interval:
            return
        self._next += self._interval
        delay = self._next - time.monotonic()
        if delay > 0:
            stop.wait(delay)


@click.command()
@click.option("--rate", default=10.0, show_default=True, help="Orders per second (0 = as fast as possible).")
@click.option("--count", default=0, show_default=True, help="Orders to send (0 = until stopped).")
@click.option("--seed", type=int, default=None, help="Seed for reproducible products and prices.")
@click.option("--quiet", is_flag=True, help="No progress display.")
@click.option(
    "--schema", "schema_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    help="Write with this version of the Order schema (registered under <topic>-value first; fields it "
    "adds take their defaults). Default: schemas/order.avsc.",
)  # fmt: skip
def produce(rate: float, count: int, seed: int | None, quiet: bool, schema_path: Path | None) -> None:
    """Send random orders to ORDERS_TOPIC; exits non-zero if any delivery failed."""
    from orders.core.kafka import create_producer, create_registry_client
    from orders.core.process import start_process, stop_on_signals
    from orders.core.tracing import start_tracing

    settings = start_process(ProducerSettings)
    tracing = start_tracing(settings, "orders.produce")
    stop = threading.Event()
    stop_on_signals(stop.set)
    writer_schema = schema_path.read_text() if schema_path else None
    sender = OrderProducer(
        create_producer(settings),
        OrderCodec(create_registry_client(settings), settings.orders_topic, writer_schema),
        settings.orders_topic,
        tracing,
    )
    try:
        with _progress(quiet) as progress:
            task = progress.add_task("producing", total=count or None, status="")
            orders = random_orders(random.Random(seed))
            _send_until_done(sender, Pacer(rate), orders, count, stop, progress, task)
    except SchemaRegistryError as exc:  # the registry refused the schema (409: incompatible)
        raise click.ClickException(
            f"the schema registry refused {schema_path or 'the schema'} "
            f"(HTTP {exc.http_status_code}, error code {exc.error_code}): {exc.error_message}"
        ) from None
    except ValueError as exc:  # the schema asks for a field an order does not have
        raise click.ClickException(f"orders cannot be written with {schema_path}: {exc}") from None
    unreported = sender.finish()
    tracing.shutdown()
    tally = sender.tally
    click.echo(f"sent {sender.sent}, delivered {tally.delivered}, failed {tally.failed + unreported}")
    if tally.failed or unreported:
        click.echo(f"delivery failed: {tally.last_error or 'no report before the timeout'}", err=True)
        sys.exit(1)


def _progress(quiet: bool) -> Progress:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn())  # fmt: skip
    return Progress(*columns, disable=quiet)


def _send_until_done(
    sender: OrderProducer, pacer: Pacer, orders: Iterator[Order], count: int, stop: threading.Event,
    progress: Progress, task: TaskID,
) -> None:  # fmt: skip
    for order in orders:
        if stop.is_set() or (count and sender.sent >= count):
            return
        sender.send(order)
        tally = sender.tally
        status = f"sent {sender.sent}  delivered {tally.delivered}  failed {tally.failed}"
        progress.update(task, advance=1, status=status)
        pacer.wait(stop)
