"""How many messages wait in the Celery queue: one reader for every process and tool, on Redis or RabbitMQ.

The bridge (backpressure and its /metrics), the dashboard, `orders up`'s status line, the bench and the
tests all read the depth through :func:`depth_reader`, which picks the implementation from the broker
URL's scheme. A reader never uses a publisher's connection: it has its own.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import amqp
import redis
from kombu import Connection
from kombu.exceptions import KombuError

from orders.core.redis_client import DEFAULT_BOUNDS, Bounds, connect_server
from orders.core.settings import AMQP_SCHEMES

# kombu's Redis transport keeps the messages it handed to a worker, not yet acknowledged, in this hash
# (one for every queue of the database).
UNACKED_KEY: Final = "unacked"
# A reading that takes longer is an unavailable broker, not a figure worth waiting for.
DEFAULT_TIMEOUT: Final = 5.0


class QueueDepthUnavailable(Exception):
    """The broker did not answer a depth reading (down, timed out, refused); the next reading tries again."""


@dataclass(frozen=True)
class QueueFigures:
    """The queue at one instant: messages waiting, and delivered but not acknowledged (None: not known)."""

    waiting: int
    unacknowledged: int | None


class QueueDepthReader(Protocol):
    """Reads one Celery queue's depth. Safe to call from several threads at once.

    Every method but ``close`` raises :class:`QueueDepthUnavailable` when the broker does not answer.
    """

    def depth(self) -> int:
        """Messages waiting in the queue (on RabbitMQ: ready, not delivered); 0 if it does not exist yet."""
        ...

    def figures(self) -> QueueFigures:
        """The depth and the delivered, unacknowledged messages, read together where the broker can."""
        ...

    def close(self) -> None:
        """Release the connection; a later reading opens a new one."""
        ...


def depth_reader(broker_url: str, queue: str, timeout: float = DEFAULT_TIMEOUT) -> QueueDepthReader:
    """The reader for the Celery broker ``broker_url`` names (Redis, Sentinel-managed or not, or RabbitMQ);
    connects on first use."""
    if urlsplit(broker_url).scheme in AMQP_SCHEMES:
        return AmqpDepthReader(broker_url, queue, timeout)
    bounds = Bounds(socket_timeout=timeout, connect_timeout=min(timeout, DEFAULT_BOUNDS.connect_timeout))
    return RedisDepthReader(connect_server(broker_url, bounds), queue)


class RedisDepthReader:
    """LLEN of the list kombu keeps for the queue (one list: the Celery config's ``priority_steps`` is [0]).

    No lock: redis-py's client takes a connection from its pool for each call, so threads never share one.
    """

    def __init__(self, client: redis.Redis, queue: str) -> None:
        self._client = client
        self._queue = queue

    def depth(self) -> int:
        try:
            return int(self._client.llen(self._queue))  # type: ignore[arg-type]
        except (redis.RedisError, OSError) as exc:
            raise QueueDepthUnavailable(f"Redis queue {self._queue!r}: {exc}") from exc

    def figures(self) -> QueueFigures:
        # One transaction: a worker's fetch moves a message from the list to the hash atomically, so
        # it is counted once, never in both or neither.
        pipe = self._client.pipeline(transaction=True)
        pipe.llen(self._queue)
        pipe.hlen(UNACKED_KEY)
        try:
            waiting, unacknowledged = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise QueueDepthUnavailable(f"Redis queue {self._queue!r}: {exc}") from exc
        return QueueFigures(int(waiting), int(unacknowledged))

    def close(self) -> None:
        self._client.close()


# What kombu (connecting) and py-amqp (on an open connection) raise when RabbitMQ fails; socket errors
# and timeouts are OSErrors.
AMQP_ERRORS = (KombuError, amqp.exceptions.AMQPError, OSError)


class AmqpDepthReader:
    """Messages ready in a RabbitMQ queue: a passive ``queue.declare``'s ``message_count``.

    On a connection of its own, never the bridge's publisher's: py-amqp connections are not
    thread-safe, and a reading from the scrape thread during a batch's confirm wait read the other's
    frames (issue 21). A lock, not a reader per thread, keeps the threads that share this reader (the
    bridge's loop and its /metrics) off each other's frames: a reading is one round trip, so a caller
    waits at most that long for another, and one connection per reader is enough. A failed reading
    closes the connection; the next one opens a new one. RabbitMQ does not say how many messages are
    delivered and unacknowledged, so ``figures`` leaves that unknown.
    """

    def __init__(self, url: str, queue: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._url = url
        self._queue = queue
        self._timeout = timeout
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._channel: Any = None

    def depth(self) -> int:
        with self._lock:
            try:
                channel = self._channel or self._open_channel()
                return int(channel.queue_declare(queue=self._queue, passive=True).message_count)
            except amqp.exceptions.NotFound:
                self._channel = None  # RabbitMQ closed the channel with the error; the connection stays
                return 0
            except AMQP_ERRORS as exc:
                self._close()
                raise QueueDepthUnavailable(f"RabbitMQ queue {self._queue!r}: {exc!r}") from exc

    def figures(self) -> QueueFigures:
        return QueueFigures(self.depth(), None)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _open_channel(self) -> Any:
        if self._connection is None:
            name = f"orders depth reader ({self._queue})"  # RabbitMQ's connection list tells it apart
            options = {"read_timeout": self._timeout, "write_timeout": self._timeout,
                       "client_properties": {"connection_name": name}}  # fmt: skip
            connection = Connection(self._url, connect_timeout=self._timeout, transport_options=options)
            # One attempt per node of a ';'-separated URL (a cluster's), in order, no sleeps.
            self._connection = connection.ensure_connection(max_retries=max(len(connection.alt), 1) - 1)
        self._channel = self._connection.channel()
        return self._channel

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(*AMQP_ERRORS):  # already broken: that is why it is being closed
                connection.release()
