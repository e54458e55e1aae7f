"""A Redis Cluster that does not answer is "Redis unavailable" to a task (its order handed back), never an
error of the order's (dead-lettered): the errors a Cluster client raises outside redis.RedisError are
classified where the client is built."""

from __future__ import annotations

import pytest
import redis

from bridge.counters import CounterBuffer
from orders.core.redis_client import connect
from orders.core.redis_url import ClusterUrl
from orders.stack.supervisor import free_port
from worker.hooks import REDIS_UNAVAILABLE


def test_a_cluster_whose_seeds_do_not_answer_is_redis_unavailable() -> None:
    nobody = ClusterUrl(((("127.0.0.1", free_port())), ("127.0.0.1", free_port())))  # refused at once
    with pytest.raises(Exception) as raised:
        connect(nobody)
    assert isinstance(raised.value, REDIS_UNAVAILABLE), f"{type(raised.value).__mro__}: {raised.value}"
    assert isinstance(raised.value, redis.ConnectionError)  # the bridge's and the tools' start say so


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.RedisClusterUnreachableError(
            "Redis Cluster cannot be connected"
        ),  # a refresh mid-outage
        redis.exceptions.SlotNotCoveredError('Slot "105" is not covered by the cluster.'),
    ],
)
def test_a_cluster_away_mid_run_hands_orders_back_and_the_bridge_keeps_going(error: Exception) -> None:
    assert isinstance(error, REDIS_UNAVAILABLE)  # a task hands its order back
    assert not isinstance(error, redis.RedisError)  # why it needs naming: `except RedisError` misses it

    def write(counts: object) -> None:
        raise error

    buffer = CounterBuffer(write, interval=0.0)
    buffer.add("consumed", 3)
    buffer.flush()  # logged and dropped, as for a Redis that does not answer; the bridge's loop goes on
