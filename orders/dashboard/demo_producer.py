"""The dashboard's own demo producer: random orders at a rate, in a thread it starts and stops."""

from __future__ import annotations

import logging
import random
import threading
from typing import Any, Final

from confluent_kafka import KafkaException

from orders.core.codec import OrderCodec
from orders.core.kafka import REGISTRY_ERRORS, create_producer, create_registry_client
from orders.core.settings import Settings
from orders.produce import OrderProducer, Pacer, random_orders

log = logging.getLogger(__name__)

MAX_RATE: Final = 1000.0  # orders per second a browser may ask for
FLUSH_TIMEOUT: Final = 10.0
# Encoding asks the registry (the schema id); producing can fail locally (e.g. an unknown topic).
SEND_ERRORS: tuple[type[Exception], ...] = (*REGISTRY_ERRORS, KafkaException)


def check_rate(rate: float) -> float:
    """The rate if it is a usable demo rate; ValueError otherwise (0 would mean "flat out")."""
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be above 0 and at most {MAX_RATE:g} orders per second, got {rate:g}")
    return rate


class DemoProducer:
    """One sending thread at a time; the Kafka producer and codec are made on first start and kept."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sender: OrderProducer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.rate = 0.0
        self.last_error = ""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, rate: float) -> None:
        """Send at ``rate`` orders per second until :meth:`stop`; a running producer changes rate."""
        check_rate(rate)
        with self._lock:
            self._stop_thread()
            sender = self._sender or self._new_sender()
            self._sender, self.rate, self.last_error = sender, rate, ""
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._send_orders, args=(sender, rate, self._stop), name="demo-producer", daemon=True
            )
            self._thread.start()
        log.info("demo producer started at %g orders/s", rate)

    def stop(self) -> None:
        """Stop sending and wait for outstanding delivery reports (up to FLUSH_TIMEOUT)."""
        with self._lock:
            self._stop_thread()
        log.info("demo producer stopped")

    def status(self) -> dict[str, Any]:
        sender = self._sender
        return {
            "running": self.running,
            "rate": self.rate,
            "sent": sender.sent if sender else 0,
            "delivered": sender.tally.delivered if sender else 0,
            "failed": sender.tally.failed if sender else 0,
            "error": self.last_error,
        }

    def _new_sender(self) -> OrderProducer:
        codec = OrderCodec(create_registry_client(self._settings), self._settings.orders_topic)
        return OrderProducer(create_producer(self._settings), codec, self._settings.orders_topic)

    def _stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._sender is not None:
            self._sender.finish(FLUSH_TIMEOUT)

    def _send_orders(self, sender: OrderProducer, rate: float, stop: threading.Event) -> None:
        pacer = Pacer(rate)
        try:
            for order in random_orders(random.Random()):
                if stop.is_set():
                    break
                sender.send(order)
                pacer.wait(stop)
        except SEND_ERRORS as exc:
            # Shown on the page; the thread ends and the Start button may try again.
            log.exception("demo producer stopped by an error")
            self.last_error = f"{type(exc).__name__}: {exc}"
