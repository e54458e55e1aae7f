"""When the bridge reads the Celery queue's depth, and what it decides on in between."""

from __future__ import annotations

from bridge.backpressure import DepthEstimate
from orders.core.queue_depth import QueueFigures


class Broker:
    """A depth reader (orders.core.queue_depth): the queue's real length, and how often it was read."""

    def __init__(self, depth: int = 0) -> None:
        self.length = depth
        self.reads = 0

    def depth(self) -> int:
        self.reads += 1
        return self.length

    def figures(self) -> QueueFigures:
        return QueueFigures(self.depth(), None)

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_call_reads_then_the_estimate_adds_our_pushes() -> None:
    broker, clock = Broker(depth=10), Clock()
    queue = DepthEstimate(broker, bound=1000, max_age=0.1, clock=clock)

    assert queue.current() == 10
    queue.pushed(5)
    broker.length = 3  # workers drained it meanwhile: the estimate stays on the safe side
    assert queue.current() == 15
    assert broker.reads == 1


def test_read_again_once_the_reading_is_old() -> None:
    broker, clock = Broker(depth=10), Clock()
    queue = DepthEstimate(broker, bound=1000, max_age=0.1, clock=clock)
    queue.current()
    broker.length = 400  # another bridge pushed

    clock.now += 0.099
    assert queue.current() == 10
    clock.now += 0.001
    assert queue.current() == 400
    assert broker.reads == 2


def test_read_again_once_we_pushed_half_the_room() -> None:
    broker, clock = Broker(depth=200), Clock()
    queue = DepthEstimate(broker, bound=1000, max_age=60, clock=clock)
    queue.current()  # room 800

    queue.pushed(399)
    assert queue.current() == 599
    assert broker.reads == 1
    queue.pushed(1)  # 400 of the 800
    broker.length = 350
    assert queue.current() == 350
    assert broker.reads == 2


def test_a_lone_bridge_never_passes_the_bound_on_an_estimate() -> None:
    """Whatever the bridge pushes, the figure it decides on is at least the real depth."""
    broker, clock = Broker(depth=0), Clock()
    queue = DepthEstimate(broker, bound=100, max_age=60, clock=clock)
    for _ in range(50):
        room = 100 - queue.current()
        batch = min(room, 7)
        broker.length += batch
        queue.pushed(batch)
        assert queue.current() >= broker.length
        assert broker.length <= 100


def test_while_paused_every_call_reads() -> None:
    broker, clock = Broker(depth=1000), Clock()
    queue = DepthEstimate(broker, bound=1000, max_age=60, clock=clock)
    queue.current()
    broker.length = 100
    assert queue.current(paused=True) == 100
    assert queue.current(paused=True) == 100
    assert broker.reads == 3
