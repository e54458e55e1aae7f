"""The bench's producer, run as a process of its own so that its CPU is measured apart from the bench.

`python -m orders.bench.producer N RATE PREFIX WARM_UP_TOPIC` with the run's environment: it warms up
(schema registered, one record delivered to a side topic, so no start-up is timed), prints ``ready``
with its CPU seconds, waits for ``go`` on stdin, sends N orders ``<PREFIX>-<sequence>`` (paced to RATE
per second, 0 = flat out), waits for every delivery report and prints ``done`` with the wall-clock
time of its first send and its CPU seconds, as JSON lines.
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from orders.core.codec import OrderCodec
from orders.core.kafka import create_producer, create_registry_client
from orders.core.order import Order
from orders.core.settings import Settings
from orders.produce import OrderProducer, Pacer, random_orders

READY_TIMEOUT = 60.0


class ProducerFailed(Exception):
    """The producer process exited, or some orders were not delivered."""


@dataclass(frozen=True)
class Produced:
    started: float  # wall clock of the first send
    cpu_seconds: float  # from ready to done
    seconds: float


class ProducerProcess:
    """Drives one `python -m orders.bench.producer` child: start (warm), go, wait until delivered."""

    def __init__(self, env: dict[str, str], n: int, rate: float, prefix: str, warm_up_topic: str) -> None:
        argv = [sys.executable, "-m", "orders.bench.producer", str(n), str(rate), prefix, warm_up_topic]
        self._proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._ready_cpu = float(self._expect("ready")["cpu"])

    @property
    def pid(self) -> int:
        return self._proc.pid

    def go(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write("go\n")
        self._proc.stdin.flush()

    def wait(self) -> Produced:
        done = self._expect("done")
        self._proc.wait(30)
        return Produced(done["started"], done["cpu"] - self._ready_cpu, done["seconds"])

    def run(self) -> Produced:
        self.go()
        return self.wait()

    def _expect(self, what: str) -> dict[str, float]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait(10)
            stderr = self._proc.stderr.read() if self._proc.stderr else ""
            raise ProducerFailed(
                f"the bench producer exited ({self._proc.returncode}) before {what}: {stderr}"
            )
        message = json.loads(line)
        if message.get("event") != what:
            raise ProducerFailed(f"the bench producer said {message}, expected {what}")
        return dict(message)

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def warm_producer(settings: Settings, warm_up_topic: str) -> OrderProducer:
    """A producer warm before any timing starts: schema registered, one record delivered.

    A cold idempotent producer holds its first record ~0.5 s (connection, metadata, producer id);
    that start-up belongs to the demo producer, not the pipeline, so it is paid on a side topic.
    """
    codec = OrderCodec(create_registry_client(settings), settings.orders_topic)
    codec.encode(Order("bench-warm-up", "Laptop", 100))
    producer = create_producer(settings)
    producer.produce(warm_up_topic, b"warm-up")
    if producer.flush(30):
        raise ProducerFailed(f"the Kafka producer could not deliver to {warm_up_topic}")
    return OrderProducer(producer, codec, settings.orders_topic)


def send(sender: OrderProducer, n: int, rate: float, prefix: str) -> float:
    """Send ``n`` orders and wait for their delivery; returns the wall-clock time of the first send."""
    orders = itertools.islice(random_orders(random.Random(prefix), prefix), n)
    never = threading.Event()
    started = time.time()
    pacer = Pacer(rate)
    for order in orders:
        sender.send(order)
        pacer.wait(never)
    unreported = sender.finish()
    if unreported or sender.tally.failed:
        raise ProducerFailed(
            f"{sender.tally.failed + unreported} orders not delivered: {sender.tally.last_error}"
        )
    return started


def _say(event: str, **fields: float) -> None:
    print(json.dumps({"event": event, "cpu": time.process_time(), **fields}), flush=True)


def main(argv: list[str]) -> None:
    n, rate, prefix, warm_up_topic = int(argv[0]), float(argv[1]), argv[2], argv[3]
    settings = Settings.from_env(env_file=None)
    quiet = {"log.connection.close": "false", **settings.kafka_options}
    sender = warm_producer(settings.model_copy(update={"kafka_options": quiet}), warm_up_topic)
    _say("ready")
    if sys.stdin.readline().strip() != "go":
        return
    clock = time.monotonic()
    started = send(sender, n, rate, prefix)
    _say("done", started=started, seconds=time.monotonic() - clock)


if __name__ == "__main__":
    main(sys.argv[1:])
