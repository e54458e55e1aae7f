"""Which depth reader a broker URL gets, and what the bridge's /metrics shows when a reading fails."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bridge.metrics import QueueCollector
from orders.core.queue_depth import (
    AmqpDepthReader,
    QueueDepthUnavailable,
    QueueFigures,
    RedisDepthReader,
    depth_reader,
)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://localhost:6379/1", RedisDepthReader),
        ("rediss://localhost:6380/0?ssl_cert_reqs=required", RedisDepthReader),
        ("unix:///run/redis.sock?db=1", RedisDepthReader),
        ("amqp://user:secret@rabbit:5672/vhost", AmqpDepthReader),
        ("amqps://user:secret@rabbit:5671//", AmqpDepthReader),
        ("pyamqp://guest:guest@localhost//", AmqpDepthReader),
    ],
)
def test_the_broker_urls_scheme_picks_the_reader_without_connecting(url: str, kind: type) -> None:
    reader = depth_reader(url, "orders")
    assert isinstance(reader, kind)  # nothing listens on these: a connection made here would fail
    reader.close()


class Reader:
    """A reader whose broker answers ``depth``, or raises ``error``."""

    def __init__(self, depth: int = 0, error: Exception | None = None) -> None:
        self._depth = depth
        self._error = error

    def depth(self) -> int:
        if self._error is not None:
            raise self._error
        return self._depth

    def figures(self) -> QueueFigures:
        return QueueFigures(self.depth(), None)

    def close(self) -> None:
        pass


def _page(reader: Reader) -> str:
    registry = CollectorRegistry()
    registry.register(QueueCollector(reader, 10_000))
    return generate_latest(registry).decode()


def test_the_page_shows_the_depth_and_the_bound() -> None:
    page = _page(Reader(depth=7))
    assert "orders_bridge_queue_depth 7.0" in page
    assert "orders_bridge_max_queue_depth 10000.0" in page


def test_a_reading_that_fails_leaves_the_depth_out_and_the_page_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    page = _page(Reader(error=QueueDepthUnavailable("RabbitMQ queue 'orders': ConnectionForced(320)")))
    assert "orders_bridge_max_queue_depth 10000.0" in page
    assert "orders_bridge_queue_depth " not in page
    assert "queue depth not read for /metrics: RabbitMQ queue 'orders'" in caplog.text


def test_any_other_error_is_a_bug_and_fails_the_scrape() -> None:
    """Readers classify broker errors once (QueueDepthUnavailable); anything else must stay loud."""
    with pytest.raises(ZeroDivisionError):
        _page(Reader(error=ZeroDivisionError()))
