"""The brokers a bench run may use (its lane), and the settings the bench's own Kafka clients get."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

from orders.core.kafka import create_admin
from orders.core.settings import Settings, kafka_options_from_env

log = logging.getLogger(__name__)
S = TypeVar("S", bound=Settings)


KAFKA_NAMES = {
    "tansu": "Tansu",
    "apache": "Apache Kafka",
    "kafka1": "Apache Kafka, 1 broker (the cluster's launcher)",
    "kafka3": "Apache Kafka, 3 brokers (replication 3, min.insync.replicas 2)",
}


@dataclass(frozen=True)
class Lane:
    """Which Kafka broker and which Celery broker a run uses."""

    # "tansu" (embedded), "apache" (Apache Kafka from the cached jars), "kafka1" / "kafka3" (one or
    # three nodes of orders/stack/kafka_cluster.py: same JVM flags and heap, replication the only change)
    kafka: str = "tansu"
    celery: str = "redis"  # "redis", "rabbitmq" (one node, a classic queue) or "rabbitmq_cluster"

    @property
    def suffix(self) -> str:
        """ "" for the default lane, else e.g. "_apache" or "_rabbitmq" (figure keys)."""
        return "" if self == Lane() else "_" + (self.celery if self.celery != "redis" else self.kafka)

    def describe(self) -> str:
        return f"{KAFKA_NAMES[self.kafka]}, Celery on {CELERY_BROKERS[self.celery]}"

    @property
    def on_rabbitmq(self) -> bool:
        return self.celery.startswith("rabbitmq")

    @property
    def jvm(self) -> bool:
        """Its Kafka is a JVM broker (warmed up before it is measured: orders/bench/warmup.py)."""
        return self.kafka != "tansu"


CELERY_BROKERS = {
    "redis": "Redis",
    "rabbitmq": "RabbitMQ",
    "rabbitmq_cluster": "a three-node RabbitMQ cluster, quorum queue",
}
TANSU, APACHE, RABBITMQ = Lane(), Lane("apache"), Lane("apache", "rabbitmq")
RABBITMQ_CLUSTER = Lane("apache", "rabbitmq_cluster")
KAFKA1, KAFKA3 = Lane("kafka1"), Lane("kafka3")


class KafkaLane:
    """One Kafka's admin client and warm-up topic (every bench producer delivers one record there
    first, so its start-up is never timed); ``pids``: its broker processes, ``replication``: the
    replication factor and min.insync.replicas of the topics a run gets."""

    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        pids: list[int] | None = None,
        replication: tuple[int, int] = (1, 1),
    ) -> None:
        self.bootstrap = bootstrap
        self.pids = pids or []
        self.replication = replication
        self.admin: AdminClient = create_admin(
            settings.model_copy(update={"kafka_bootstrap_servers": bootstrap})
        )
        self.warm_up_topic = f"bench-warm-up-{uuid.uuid4().hex[:6]}"
        self.create_topics([NewTopic(self.warm_up_topic, num_partitions=1, replication_factor=1)])

    def create_run_topics(self, name: str, partitions: int) -> None:
        """A run's orders topic and its DLQ (``name``-dlq), replicated as this Kafka's topics are."""
        factor, min_isr = self.replication
        config = {"min.insync.replicas": str(min_isr)} if factor > 1 else {}
        self.create_topics([NewTopic(name, partitions, factor, config=config),
                            NewTopic(f"{name}-dlq", 1, factor, config=config)])  # fmt: skip

    def create_topics(self, topics: list[NewTopic]) -> None:
        for future in self.admin.create_topics(topics).values():
            future.result(timeout=30)

    def delete_topics(self, topics: list[str]) -> None:
        for future in self.admin.delete_topics(topics, operation_timeout=10).values():
            try:
                future.result(timeout=15)
            except Exception as exc:  # a broker that keeps topics only costs disk; the bench is done
                log.info("could not delete bench topics %s: %s", topics, exc)

    def close(self) -> None:
        self.delete_topics([self.warm_up_topic])
        del self.admin


def plain_workers_answer(broker_url: str, count: int) -> bool:
    from celery import Celery

    app = Celery("bench-ping", broker=broker_url, set_as_current=False)
    try:
        return len(app.control.ping(timeout=0.5)) >= count
    finally:
        app.close()


def delete_queue(broker_url: str, queue: str) -> None:
    from kombu import Connection

    with Connection(broker_url, connect_timeout=5) as connection:
        connection.default_channel.queue_delete(queue)


def with_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def with_env(settings: S, env: dict[str, str]) -> S:
    """``settings`` with the endpoint and naming variables of ``env`` applied (the children's view)."""
    fields = {"KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers", "REDIS_URL": "redis_url",
              "CELERY_BROKER_URL": "celery_broker_url", "SCHEMA_REGISTRY_URL": "schema_registry_url",
              "ORDERS_TOPIC": "orders_topic", "DLQ_TOPIC": "dlq_topic", "CONSUMER_GROUP": "consumer_group",
              "CELERY_QUEUE": "celery_queue", "CELERY_QUEUE_TYPE": "celery_queue_type"}  # fmt: skip
    update: dict[str, object] = {fields[k]: v for k, v in env.items() if k in fields}
    if "REDIS_URL" in env and "CELERY_BROKER_URL" not in env:
        update["celery_broker_url"] = env["REDIS_URL"]
    if "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO" in env:  # the stack's registry asks for its own credentials
        update["schema_registry_basic_auth"] = SecretStr(env["SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"])
    return settings.model_copy(update=update)


def in_process(settings: S, env: dict[str, str]) -> S:
    """Settings for this process's own clients: the children's KAFKA_* options from ``env`` too.

    orders.core.kafka gives each client only the options it takes (Tansu's short session timeout goes to
    consumers alone). Idle connections the broker closes between runs need no log line.
    """
    options = {
        "log.connection.close": "false",
        **settings.kafka_options,
        **kafka_options_from_env(env, {"KAFKA_BOOTSTRAP_SERVERS"}),
    }
    return settings.model_copy(update={"kafka_options": options})
