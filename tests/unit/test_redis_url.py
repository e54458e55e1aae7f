"""Redis URLs: the Sentinel and Cluster forms parsed and checked, secrets masked, replica waits by layout."""

from __future__ import annotations

import socket

import pytest

from bridge.settings import BridgeSettings
from orders.core.redis_client import (
    Bounds,
    connect_server,
    describe,
    is_unwritable,
    node_for,
    refresh_routes,
    sentinel_kwargs,
    where,
)
from orders.core.redis_url import ClusterUrl, SentinelUrl, ServerUrl, parse_redis_url, redact
from orders.core.settings import Settings, SettingsError, same_database, with_database
from orders.registry.settings import RegistrySettings
from worker.settings import WorkerSettings

CLUSTER = "redis+cluster://:node-pw@a:7000,b:7001"
THREE = "sentinel://:data-pw@s1:26379;sentinel://s2;sentinel://s3:26380/2?master_name=orders&sentinel_password=sent-pw"


def test_a_sentinel_url_in_kombus_form_with_our_options() -> None:
    parsed = parse_redis_url(THREE)
    assert parsed == SentinelUrl(
        sentinels=(("s1", 26379), ("s2", 26379), ("s3", 26380)), master_name="orders", db=2,
        password="data-pw", sentinel_password="sent-pw",
    )  # fmt: skip
    assert parse_redis_url(parsed.to_url()) == parsed  # type: ignore[union-attr]


def test_kombu_gets_every_element_complete_and_none_of_our_options() -> None:
    parsed = parse_redis_url(THREE + "&ssl_cert_reqs=required")
    assert isinstance(parsed, SentinelUrl)
    assert parsed.kombu_url() == (
        "sentinel://:data-pw@s1:26379/2?ssl_cert_reqs=required;"
        "sentinel://:data-pw@s2:26379/2?ssl_cert_reqs=required;"
        "sentinel://:data-pw@s3:26380/2?ssl_cert_reqs=required"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@h:6379/0", ServerUrl("redis://:pw@h:6379/0")),
        ("unix:///run/redis.sock?db=3", ServerUrl("unix:///run/redis.sock?db=3")),
        ("sentinel://h?master_name=m", SentinelUrl((("h", 26379),), "m")),
        ("sentinel://u:p%40ss@h:1/4?master_name=m", SentinelUrl((("h", 1),), "m", 4, "u", "p@ss")),
        ("redis+cluster://:pw@a:7000,b:7001", ClusterUrl((("a", 7000), ("b", 7001)), None, "pw")),
    ],
)
def test_good_urls(url: str, expected: object) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sentinel://h:26379", "master_name=NAME"),
        ("sentinel://h?master_name=m&mastername=x", "unknown option(s) mastername"),
        ("sentinel://h/1;sentinel://g/2?master_name=m", "different databases"),
        ("sentinel://:a@h;sentinel://:b@g?master_name=m", "different passwords"),
        ("sentinel://h;redis://g?master_name=m", "every ;-separated element"),
        ("sentinel://h/x?master_name=m", "must be a number"),
        ("sentinel://h:0x?master_name=m", "port must be a number"),
        ("sentinel://h?master_name=m&ssl_ca_certs=/ca.pem", "ssl_cert_reqs=required"),
        ("rediss://h:6380/0", "ssl_cert_reqs=required"),
        ("redis+cluster://a:7000/2", "only database 0"),
        ("redis+cluster://a", "needs its port"),
        ("http://h", "must be a redis://"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        parse_redis_url(url)


def test_passwords_are_masked_in_every_element_and_the_query() -> None:
    shown = redact(parse_redis_url(THREE).to_url())  # type: ignore[union-attr]
    assert "data-pw" not in shown and "sent-pw" not in shown
    assert "sentinel://:****@s3:26380/2?master_name=orders&sentinel_password=****" in shown
    assert redact("redis://:pw@h:6379/0") == "redis://:****@h:6379/0"
    settings = Settings.from_env({"REDIS_URL": THREE}, env_file=None)
    assert "data-pw" not in str(settings.redacted()) and "sent-pw" not in str(settings.redacted())


def test_a_cluster_url_is_for_the_aggregate_only_and_refused_for_celery_and_the_registry() -> None:
    apart = {"REDIS_URL": CLUSTER, "CELERY_BROKER_URL": "redis://broker:6379/0"}
    settings = Settings.from_env(apart, env_file=None)
    assert isinstance(settings.redis, ClusterUrl) and "node-pw" not in str(settings.redacted())
    with pytest.raises(
        SettingsError, match=r"REDIS_URL is a Redis Cluster, .*set CELERY_BROKER_URL"
    ) as caught:
        Settings.from_env({"REDIS_URL": CLUSTER}, env_file=None)  # the broker would default to it
    assert "node-pw" not in str(caught.value)
    with pytest.raises(SettingsError, match=r"CELERY_BROKER_URL: .*kombu has no Redis Cluster transport"):
        Settings.from_env({"CELERY_BROKER_URL": "redis+cluster://a:7000"}, env_file=None)
    with pytest.raises(SettingsError, match=r"REGISTRY_REDIS_URL to a Redis of the registry's own"):
        RegistrySettings.from_env(apart, env_file=None)  # no database 2 on a Cluster
    with pytest.raises(
        SettingsError, match=r"REGISTRY_REDIS_URL: .*Cluster cannot hold the registry's state"
    ):
        RegistrySettings.from_env({**apart, "REGISTRY_REDIS_URL": CLUSTER}, env_file=None)
    own = RegistrySettings.from_env({**apart, "REGISTRY_REDIS_URL": "redis://reg:6379/0"}, env_file=None)
    assert own.registry_redis_url == "redis://reg:6379/0"
    with pytest.raises(SettingsError, match=r"REDIS_URL: .*master_name") as caught:
        Settings.from_env({"REDIS_URL": "sentinel://:hunter2@h:26379"}, env_file=None)
    assert "hunter2" not in str(caught.value)


def test_clients_that_never_live_on_a_cluster_refuse_its_url() -> None:
    with pytest.raises(ValueError, match="a Redis Cluster URL here"):
        connect_server(CLUSTER)  # refused before any connection is tried
    one = connect_server("redis://127.0.0.1:1/0")
    assert node_for(one, "{orders}:totals") is one  # one server owns every key
    refresh_routes(one)  # nothing to forget
    assert where(one) == "127.0.0.1:1"
    assert describe(CLUSTER) == "Redis Cluster (2 seed nodes)"


def test_the_registry_database_and_same_database_on_sentinel_urls() -> None:
    other = with_database(THREE, 5)
    assert parse_redis_url(other).db == 5  # type: ignore[union-attr]
    assert not same_database(THREE, other)
    assert same_database(THREE, with_database(other, 2))
    assert not same_database(THREE, THREE.replace("master_name=orders", "master_name=broker"))


@pytest.mark.parametrize(
    ("redis_url", "broker_url", "aggregate_wait", "handoff_wait"),
    [
        ("redis://h:6379/0", None, 0, 0),  # no replica known
        (THREE, None, 0, 1),  # one shared primary: replication order covers the aggregate
        (THREE, THREE.replace("/2?", "/3?"), 0, 1),  # another database of the same primary
        (THREE, "redis://broker:6379/0", 1, 0),  # a separate, unreplicated broker
        (THREE, THREE.replace("master_name=orders", "master_name=broker"), 1, 1),  # two primaries
        (THREE, "amqp://guest:guest@rabbit:5672//", 1, 0),
        ("redis://h:6379/0", THREE, 0, 1),
        (CLUSTER, "redis://broker:6379/0", 1, 0),  # the broker is never on the Cluster: always apart
        (CLUSTER, THREE, 1, 1),
    ],
)
def test_replica_waits_by_layout(
    redis_url: str, broker_url: str | None, aggregate_wait: int, handoff_wait: int
) -> None:
    env = {"REDIS_URL": redis_url, **({"CELERY_BROKER_URL": broker_url} if broker_url else {})}
    assert WorkerSettings.from_env(env, env_file=None).aggregate_wait_replicas == aggregate_wait
    assert BridgeSettings.from_env(env, env_file=None).handoff_wait_replicas == handoff_wait
    forced = {**env, "REDIS_WAIT_REPLICAS": "2", "CELERY_BROKER_WAIT_REPLICAS": "0"}
    assert WorkerSettings.from_env(forced, env_file=None).aggregate_wait_replicas == 2
    assert BridgeSettings.from_env(forced, env_file=None).handoff_wait_replicas == 0


def test_bounds_and_the_sentinels_own_credentials() -> None:
    bounds = Bounds()
    kwargs = bounds.connection_kwargs()
    assert kwargs["socket_timeout"] == 3.0 and kwargs["socket_connect_timeout"] == 1.0
    assert kwargs["socket_keepalive_options"][socket.TCP_KEEPIDLE] == 2
    assert bounds.retry().get_retries() == 1
    to_sentinels = sentinel_kwargs(parse_redis_url(THREE + "&ssl_cert_reqs=required"))  # type: ignore[arg-type]
    assert to_sentinels["password"] == "sent-pw" and to_sentinels["ssl"] is True
    assert to_sentinels["socket_timeout"] == 1.0 and to_sentinels["retry"].get_retries() == 0
    assert describe(THREE) == "Sentinel primary 'orders' (3 Sentinels)"


@pytest.mark.parametrize(
    ("reply", "unwritable"),
    [
        ("NOREPLICAS Not enough good replicas to write.", True),
        ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", True),
        ("ERR wrong number of arguments", False),
    ],
)
def test_which_replies_mean_not_now(reply: str, unwritable: bool) -> None:
    import redis

    assert is_unwritable(redis.ResponseError(reply)) is unwritable
