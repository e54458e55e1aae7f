"""The writer's routing errors without a Cluster: a MOVED (or a lost node) forgets the routes and hands the
order back; a stale layout is handed back too. Stubs stand in for the node (unit test only)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from orders.core import aggregate as core_aggregate
from orders.core.shards import Layout, StaleLayout, as_stale_layout
from worker import aggregate as writer_module
from worker.aggregate import AggregateWriter

MOVED = redis.exceptions.MovedError("3999 127.0.0.1:6381")


class Node:
    """A node that answers every script with ``error``, as redis-py delivers it: raised for one command;
    in a pipeline, an error reply among the replies, a lost connection raised."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def evalsha(self, *args: Any) -> Any:
        raise self.error

    def pipeline(self, transaction: bool = False) -> Pipe:
        return Pipe(self.error)


class Pipe:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.queued = 0

    def evalsha(self, *args: Any) -> None:
        self.queued += 1

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        if isinstance(self.error, redis.ConnectionError):
            raise self.error
        return [self.error] * self.queued


@pytest.fixture
def refreshed(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []
    monkeypatch.setattr(core_aggregate, "refresh_routes", calls.append)  # the readers' and writer's rule
    return calls


@pytest.mark.parametrize(
    "error",
    [MOVED, redis.exceptions.AskError("1 127.0.0.1:1"), redis.exceptions.ClusterDownError("CLUSTERDOWN"),
     redis.ConnectionError("gone")],
)  # fmt: skip
def test_a_routing_error_forgets_the_routes_and_is_raised(
    monkeypatch: pytest.MonkeyPatch, refreshed: list[object], error: Exception
) -> None:
    client = redis.Redis()  # never connects: every command goes to the stub node
    monkeypatch.setattr(writer_module, "node_for", lambda _client, _key: Node(error))
    writer = AggregateWriter(client, 60, layout=Layout(3))
    with pytest.raises(type(error)):
        writer.record_order("o-1", "p", 100)
    with pytest.raises(type(error)):
        writer.record_orders([("o-1", "p", 100), ("o-2", "p", 100)])
    assert refreshed == [client, client]


def test_the_task_hands_back_routing_errors_and_stale_layouts() -> None:
    from worker.hooks import REDIS_UNAVAILABLE

    stale = as_stale_layout(redis.ResponseError("STALELAYOUT shard {orders}:layout is laid out for 2 shards"))
    for error in [MOVED, redis.exceptions.AskError("1 h:1"), stale]:
        assert isinstance(error, REDIS_UNAVAILABLE)
    assert isinstance(stale, StaleLayout)
    piped = redis.ResponseError("Command # 3 (EVALSHA x) of pipeline caused error: STALELAYOUT shard ...")
    assert isinstance(as_stale_layout(piped), StaleLayout)
    overflow = redis.ResponseError("sum would overflow; order {orders}:seen:STALELAYOUT not counted")
    assert as_stale_layout(overflow) is overflow  # an orderId cannot make an error look stale
