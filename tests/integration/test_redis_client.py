"""The Redis client factory against a real Sentinel set on the test network: failovers followed within a
bound, every wait bounded, durable writes refused while the replicas lag.

The bound a client follows a failover in (FOLLOW_BOUND, measured times in the "redis ha timings"
summary): Sentinel's promotion (~2.3 s after a SIGKILL, ~4 s after a silent isolation with
down-after 1 s) plus at most one command's socket timeout (3 s) and one discovery (1 s per Sentinel
that does not answer).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from orders.core.redis_client import (
    DEFAULT_BOUNDS,
    QuorumSentinel,
    ReplicasBehind,
    Unwritable,
    connect,
    where,
)
from orders.core.redis_url import parse_redis_url
from orders.stack.redis_sentinel import SentinelSet
from tests.harness.netns import TestNetwork
from worker.aggregate import AggregateWriter

Timing = Callable[[str, float], None]
FOLLOW_BOUND = 12.0
# One failed attempt: a command's reply (3 s), a reconnect's discovery (3 Sentinels x 1 s) and connect (1 s).
ONE_ATTEMPT = (
    DEFAULT_BOUNDS.socket_timeout + 3 * DEFAULT_BOUNDS.sentinel_timeout + DEFAULT_BOUNDS.connect_timeout
)


def follow(client: redis.Redis, since: float, bound: float = FOLLOW_BOUND) -> tuple[float, float]:
    """Write until a write succeeds: (seconds since ``since``, the longest one attempt took)."""
    longest = 0.0
    while time.monotonic() - since < bound:
        started = time.monotonic()
        try:
            client.incr("{orders}:follow")
            return time.monotonic() - since, max(longest, time.monotonic() - started)
        except redis.RedisError:
            longest = max(longest, time.monotonic() - started)
            time.sleep(0.05)
    pytest.fail(f"no write succeeded within {bound}s of the fault (longest attempt {longest:.1f}s)")


def discovered(sentinel: QuorumSentinel, service: str, timeout: float = 5.0) -> tuple[str, int]:
    """The primary it names, once it names one (not while the Sentinels finish a failover)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return sentinel.discover_master(service)
        except redis.sentinel.MasterNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_client_follows_a_sigkilled_primary(
    redis_sentinel_cluster: SentinelSet, record_ha_timing: Timing
) -> None:
    ha = redis_sentinel_cluster
    client = connect(ha.url())
    client.incr("{orders}:follow")
    old = ha.primary()
    assert where(client) == f"{old.host.address}:{old.port}"

    old.kill()
    seconds, longest = follow(client, time.monotonic())
    record_ha_timing("client follows a SIGKILLed primary", seconds)

    new = ha.primary()
    assert new is not old and where(client) == f"{new.host.address}:{new.port}"
    assert longest <= ONE_ATTEMPT


def test_a_client_follows_a_silently_isolated_primary(
    redis_sentinel_cluster: SentinelSet, test_network: TestNetwork, record_ha_timing: Timing
) -> None:
    """Packets vanish: without bounds the first command would wait for TCP's own timeout (~15 min)."""
    ha = redis_sentinel_cluster
    client = connect(ha.url())
    client.incr("{orders}:follow")
    old = ha.primary()

    test_network.isolate(test_network.node_at(old.host.address))
    seconds, longest = follow(client, time.monotonic())
    record_ha_timing("client follows a silently isolated primary", seconds)

    assert ha.primary() is not old
    assert longest <= ONE_ATTEMPT + 0.5, f"one attempt took {longest:.1f}s"


def test_a_sentinel_cut_off_with_the_old_primary_is_outvoted(
    redis_sentinel_cluster: SentinelSet, test_network: TestNetwork
) -> None:
    """The old primary's node loses its peers but not its clients: its Sentinel still names it.

    redis-py's Sentinel believes the first Sentinel that answers; ours the newest configuration epoch.
    """
    ha = redis_sentinel_cluster
    old = ha.primary()
    cut_off = test_network.node_at(old.host.address)
    for other in ha.replicas():
        test_network.cut(cut_off, test_network.node_at(other.host.address))
    new = ha.wait_for_failover(old, timeout=15)

    parsed = parse_redis_url(ha.url())
    left_behind = next(s for s in ha.sentinels if s.host.address == old.host.address)
    others = [s.address for s in ha.sentinels if s is not left_behind]
    options = {"sentinel_kwargs": {"password": ha.sentinel_password, "socket_timeout": 1.0}}
    assert (
        redis.sentinel.Sentinel([left_behind.address, *others], **options).discover_master(ha.service)
        == old.address
    ), "the Sentinel left behind names the old primary"
    ours = QuorumSentinel([left_behind.address, *others], **options)
    assert discovered(ours, ha.service) == new.address
    assert parsed.master_name == ha.service  # type: ignore[union-attr]


def test_an_aggregate_write_short_of_its_replicas_is_refused_and_its_redelivery_waits_again(
    redis_sentinel_cluster: SentinelSet,
) -> None:
    ha = redis_sentinel_cluster
    writer = AggregateWriter(connect(ha.url()), 3600, replicas=1, wait_timeout=0.3)
    assert writer.record_order("w-1", "widget", 100) is True

    for replica in ha.replicas():
        replica.pause()  # their links stay open: only their acknowledgements stop
    try:
        with pytest.raises(ReplicasBehind, match="0 of 1"):
            writer.record_order("w-2", "widget", 200)  # counted on the primary, not yet durable
        with pytest.raises(ReplicasBehind):
            writer.record_order("w-2", "widget", 200)  # the redelivered copy refreshes and waits again
        with pytest.raises(ReplicasBehind):
            writer.claim_dead_letter("w-3", "PermanentError", "injected")
    finally:
        for replica in ha.replicas():
            replica.resume()
    assert writer.record_order("w-2", "widget", 200) is False  # now on a replica: acknowledged as counted
    assert writer.claim_dead_letter("w-3", "PermanentError", "injected").state == "claimed"
    assert writer.snapshot().count == 2


def test_noreplicas_makes_a_sentinel_client_ask_again_and_a_plain_one_unwritable(
    redis_sentinel_cluster: SentinelSet,
) -> None:
    """A primary short of replicas may be one the Sentinels replaced: through a Sentinel URL the reply is
    a lost connection (asked again next time); through one server's URL it stays what it is."""
    ha = redis_sentinel_cluster
    primary = ha.primary()
    through_sentinels = AggregateWriter(connect(ha.url()), 3600)
    plain = AggregateWriter(connect(f"redis://:{ha.password}@{primary.host.address}:{primary.port}/0"), 3600)
    ha.set_min_replicas(3, 10)  # more replicas than there are: NOREPLICAS on every write
    with pytest.raises(redis.ConnectionError, match=r"refuses writes.*NOREPLICAS"):
        through_sentinels.record_order("n-1", "widget", 100)
    with pytest.raises(Unwritable, match="NOREPLICAS"):
        plain.record_order("n-1", "widget", 100)
    ha.set_min_replicas(0, 10)
    assert through_sentinels.record_order("n-1", "widget", 100) is True
