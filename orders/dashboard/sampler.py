"""The dashboard's sampling threads: figures from Kafka and Redis each second, health every few seconds."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import redis
from confluent_kafka import KafkaException
from kombu.exceptions import KombuError

from bridge.handoff import create_sender
from orders.core.aggregate import Aggregate
from orders.core.control import get_failure_rate
from orders.core.kafka import REGISTRY_ERRORS, create_admin, create_registry_client
from orders.core.lag import LagReader
from orders.core.queue_depth import QueueDepthUnavailable, depth_reader
from orders.core.redis_client import REDIS_ERRORS, Bounds, connect
from orders.core.settings import Settings
from orders.dashboard.state import (
    RECENT_ROWS,
    UNKNOWN_HEALTH,
    Figures,
    Health,
    History,
    compose_state,
)

log = logging.getLogger(__name__)

HEALTH_TIMEOUT: Final = 2.0
HEALTH_BOUNDS: Final = Bounds(socket_timeout=HEALTH_TIMEOUT)


class RedisFigures:
    """The aggregate, recent activity, queue depth and the failure-rate override."""

    def __init__(self, settings: Settings) -> None:
        client = connect(settings.redis, HEALTH_BOUNDS)
        self._aggregate = Aggregate(client)
        self._client = client
        self._queue = depth_reader(settings.broker_url, settings.celery_queue, timeout=HEALTH_TIMEOUT)

    def read(self) -> Figures:
        """Raises redis.RedisError when Redis does not answer."""
        queued, in_flight = self._queue_figures()
        return Figures(
            snapshot=self._aggregate.snapshot(),
            recent=self._aggregate.recent(RECENT_ROWS),
            queued=queued,
            in_flight=in_flight,
            failure_rate=get_failure_rate(self._client),
        )

    def close(self) -> None:
        self._queue.close()

    def _queue_figures(self) -> tuple[int | None, int | None]:
        """Messages waiting, and handed to workers but not acknowledged (None where not known: RabbitMQ
        does not say what is unacknowledged, and neither is known while the broker does not answer)."""
        try:
            figures = self._queue.figures()
        except QueueDepthUnavailable as exc:
            log.warning("Celery queue depth: %s", exc)
            return None, None
        return figures.waiting, figures.unacknowledged


class HealthProbe:
    """One cheap check per dependency, each with a short timeout."""

    def __init__(self, settings: Settings) -> None:
        self._admin = create_admin(settings)
        self._redis = connect(settings.redis, HEALTH_BOUNDS)
        self._registry = create_registry_client(settings, timeout=HEALTH_TIMEOUT, **{"max.retries": 0})
        self._celery = create_sender(settings)

    def checks(self) -> dict[str, Callable[[], Health]]:
        return {"kafka": self.kafka, "redis": self.redis, "registry": self.registry, "workers": self.workers}

    def kafka(self) -> Health:
        try:
            brokers = self._admin.list_topics(timeout=HEALTH_TIMEOUT).brokers
        except KafkaException as exc:
            return Health("down", str(exc))
        return Health("ok", f"{len(brokers)} broker(s)")

    def redis(self) -> Health:
        try:
            self._redis.ping()
        except REDIS_ERRORS as exc:
            return Health("down", str(exc))
        return Health("ok", "ping answered")

    def registry(self) -> Health:
        try:
            subjects = self._registry.get_subjects()
        except REGISTRY_ERRORS as exc:
            return Health("down", str(exc))
        return Health("ok", f"{len(subjects)} subject(s)")

    def workers(self) -> Health:
        try:
            replies = self._celery.control.ping(timeout=HEALTH_TIMEOUT / 2)
        except (KombuError, redis.RedisError, OSError) as exc:
            return Health("down", str(exc))
        if not replies:
            return Health("down", "no worker answered a ping")
        return Health("ok", f"{len(replies)} worker(s)")


class Sampler:
    """Samples once per ``interval`` in one thread and hands the JSON state to ``publish``.

    Health runs in a second thread every ``health_interval`` seconds, so a slow check never
    delays the figures; its latest result is merged into each state.
    """

    def __init__(
        self,
        settings: Settings,
        controls: Callable[[], Mapping[str, Any]],
        publish: Callable[[str], None],
        interval: float = 1.0,
        health_interval: float = 5.0,
    ) -> None:
        self._kafka = LagReader(settings)
        self._redis = RedisFigures(settings)
        self._probe = HealthProbe(settings)
        self._controls = controls
        self._publish = publish
        self._interval = interval
        self._health_interval = health_interval
        self._history = History()
        self._health: dict[str, Health] = dict(UNKNOWN_HEALTH)
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._sample_figures, name="dashboard-figures", daemon=True),
            threading.Thread(target=self._sample_health, name="dashboard-health", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._kafka.close()
        self._redis.close()

    def state(self) -> dict[str, Any]:
        """Read every figure once, add it to the history and compose the state."""
        figures = self._read_figures()
        self._history.add(figures.sample(time.time(), time.monotonic()))
        uptime = time.monotonic() - self._started
        return compose_state(figures, self._history, dict(self._health), self._controls(), uptime)

    def _read_figures(self) -> Figures:
        errors: list[str] = []
        try:
            figures = self._redis.read()
        except REDIS_ERRORS as exc:
            figures = Figures()
            errors.append(f"redis: {exc}")
        lags = None
        try:
            lags = self._kafka.read()
        except KafkaException as exc:
            errors.append(f"kafka: {exc}")
        return dataclasses.replace(figures, lags=lags, errors=tuple(errors))

    def _sample_figures(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._publish(json.dumps(self.state()))
            next_at += self._interval
            now = time.monotonic()
            if next_at < now:  # a slow pass: start counting again rather than rushing to catch up
                next_at = now
            self._stop.wait(next_at - now)

    def _sample_health(self) -> None:
        while not self._stop.is_set():
            for name, check in self._probe.checks().items():
                # A new dict each time: the figures thread reads it without a lock.
                self._health = {**self._health, name: check()}
            self._stop.wait(self._health_interval)
