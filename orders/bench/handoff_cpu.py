"""The bridge's hand-off alone: CPU per order of building and sending task messages, old path against new.

Not part of CI (`orders bench` measures the whole bridge in its A/B phase). ``python -m
orders.bench.handoff_cpu`` starts a redis-server of its own (``--rabbitmq``: also a private RabbitMQ node),
then calls ``hand_off`` on batches of ``--batch`` orders, ``--orders`` per round, alternating the messages
Celery builds (``BRIDGE_HANDOFF=celery``) and the template (``template``) in one process, ``--rounds``
times each; a round's figure is its ``time.process_time()`` per order (this process only: the broker's
CPU is not in it). Prints each round, then the medians and their ratio, as JSON lines.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable
from contextlib import ExitStack, closing
from pathlib import Path
from time import process_time
from typing import Any

import click

from bridge.amqp_handoff import AmqpHandoff
from bridge.handoff import Handoff, create_sender
from orders.core.order import OrderPayload, RecordOrigin
from orders.core.queue_depth import depth_reader
from orders.core.settings import Settings
from orders.stack.rabbitmq import RabbitMQ
from orders.stack.services import start_redis

PATHS = ("celery", "template")
QUEUE = "handoff-cpu"


def sample_orders(n: int, batch: int) -> list[list[tuple[OrderPayload, RecordOrigin]]]:
    """``n`` orders shaped as the bench producer's (a base64 Avro value in the origin), in batches."""
    orders: list[tuple[OrderPayload, RecordOrigin]] = [
        ({"orderId": f"ord-{i:08d}", "product": f"product-{i % 50}", "price": f"{1 + i % 997}.{i % 100:02d}"},
         {"topic": "orders", "partition": i % 3, "offset": i, "timestamp": 1_700_000_000_000 + i,
          "key": "b3JkLTAwMDAwMDAx", "value": "AAAAAAEYb3JkLTAwMDAwMDAxEnByb2R1Y3QtMQBAr0Q=",
          "group": "orders-bridge"})
        for i in range(n)
    ]  # fmt: skip
    return [orders[start : start + batch] for start in range(0, n, batch)]


def cpu_per_order(handoff: Handoff, batches: list[list[Any]], empty: Callable[[], None]) -> float:
    """µs of this process's CPU per order to hand every batch off; the queue is emptied afterwards."""
    started = process_time()
    for batch in batches:
        handoff.hand_off(batch)
    spent = process_time() - started
    empty()
    return spent / sum(len(b) for b in batches) * 1e6


def compare(redis_url: str, broker_url: str, n: int, batch: int, rounds: int) -> dict[str, Any]:
    """Both paths alternately, ``rounds`` times each, on one broker; their rounds, medians and ratio."""
    settings = Settings.from_env({"REDIS_URL": redis_url, "CELERY_BROKER_URL": broker_url,
                                  "CELERY_QUEUE": QUEUE}, env_file=None)  # fmt: skip
    app = create_sender(settings)
    kind = AmqpHandoff if settings.broker_kind == "amqp" else Handoff
    handoffs = {path: kind(app, QUEUE, template=path == "template") for path in PATHS}
    batches = sample_orders(n, batch)
    with closing(depth_reader(broker_url, QUEUE)) as reader:
        empty = lambda: _purge(app, reader.depth())  # noqa: E731
        for handoff in handoffs.values():  # warm up: connections, queue declared, templates built
            handoff.hand_off(batches[0])
        empty()
        runs: dict[str, list[float]] = {path: [] for path in PATHS}
        for _ in range(rounds):
            for path in PATHS:
                runs[path].append(cpu_per_order(handoffs[path], batches, empty))
    for handoff in handoffs.values():
        handoff.close()
    medians = {path: round(statistics.median(values), 1) for path, values in runs.items()}
    return {"broker": settings.broker_kind, "orders": n, "batch": batch,
            "runs_us": {path: [round(v, 1) for v in values] for path, values in runs.items()},
            "median_us": medians,
            "template_over_celery": round(medians["template"] / medians["celery"], 3)}  # fmt: skip


def _purge(app: Any, depth: int) -> None:
    with app.connection_for_write() as connection:
        purged = connection.default_channel.queue_purge(QUEUE)
    if purged is not None and purged != depth:
        raise RuntimeError(f"purged {purged} messages, the queue held {depth}")


@click.command()
@click.option("--orders", "n", default=20_000, show_default=True, help="Orders per round.")
@click.option("--batch", default=500, show_default=True, help="Orders per hand_off call (BRIDGE_BATCH_SIZE).")
@click.option("--rounds", default=5, show_default=True, help="Rounds of each path, alternating.")
@click.option("--rabbitmq", is_flag=True, help="Also on a private RabbitMQ node (py-amqp's publish).")
def main(n: int, batch: int, rounds: int, rabbitmq: bool) -> None:
    """Hand-off CPU per order, Celery-built messages against the template, same process, medians."""
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="handoff-cpu-") as tmp:
        log_dir = Path(tmp)
        redis_server = start_redis(log_dir)
        stack.callback(redis_server.service.stop)
        brokers = [f"{redis_server.url}/0"]
        if rabbitmq:
            node = RabbitMQ(log_dir).start()
            stack.callback(node.stop)
            brokers.append(node.url)
        for url in brokers:
            click.echo(json.dumps(compare(brokers[0], url, n, batch, rounds)))


if __name__ == "__main__":
    main()
