"""The only place that turns settings into librdkafka and schema-registry client configs.

``KAFKA_*`` options go to the clients they apply to (``kafka_options``): a consumer-only option given
to a producer would only earn a CONFWARN line at the top of every log.
"""

from __future__ import annotations

from typing import Any

import httpx2
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from orders.core.kafka_options import options_for
from orders.core.settings import Settings, SettingsError, option_to_env_name

# How long a client waits for a broker's answer before it drops the connection and asks another
# broker who leads now. librdkafka's 60 s default kept a partition's orders waiting for as long as a
# silent network partition cut its old leader off (scenario 14: 31.6 s for a 25 s cut; 12.1 s with
# this). A fetch may wait fetch.wait.max.ms on top. KAFKA_SOCKET_TIMEOUT_MS overrides it.
SOCKET_TIMEOUT_MS = 10_000


def _base(settings: Settings) -> dict[str, Any]:
    return {"bootstrap.servers": settings.kafka_bootstrap_servers, "socket.timeout.ms": SOCKET_TIMEOUT_MS}


# Every producer of ours: acknowledged only once every in-sync replica has the record (with the
# topic's min.insync.replicas, no acknowledged record lives on one broker alone), and idempotent, so
# the retries that follow a leader change write no duplicate and keep each partition in order.
DURABLE: dict[str, Any] = {"acks": "all", "enable.idempotence": True}
# What librdkafka accepts as the same values, under either name of the acks option.
_SAME_AS_DURABLE = {
    "acks": {"all", "-1"}, "request.required.acks": {"all", "-1"}, "enable.idempotence": {"true"},
}  # fmt: skip


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """An idempotent producer: acks=all, no duplicates on internal retries, ordered per partition.

    Raises SettingsError for a ``KAFKA_*`` variable that would weaken either (KAFKA_ACKS=1, ...).
    """
    options = options_for(settings.kafka_options, "producer")
    for name, allowed in _SAME_AS_DURABLE.items():
        if name in options and str(options[name]).lower() not in allowed:
            raise SettingsError(
                f"Invalid configuration:\n  {option_to_env_name(name)}: every producer of the pipeline "
                f"writes with acks=all and idempotence, so that no acknowledged order is lost when a broker "
                f"fails; remove it (got {options[name]!r})"
            )
    return {**_base(settings), **DURABLE, "linger.ms": 5, **options, **overrides}


def consumer_config(settings: Settings, group_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A group consumer that commits only the offsets the application stored (at-least-once).

    Offsets are stored explicitly after a record is handed off, and librdkafka's auto-commit
    ships the stored ones in the background; nothing is committed past an unstored record.
    """
    return {
        **_base(settings),
        "group.id": group_id or settings.consumer_group,
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        **options_for(settings.kafka_options, "consumer"),
        **overrides,
    }


def admin_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    return {**_base(settings), **options_for(settings.kafka_options, "admin"), **overrides}


def registry_config(settings: Settings) -> dict[str, Any]:
    """The registry client's options: URL, basic auth and TLS (a private CA, a client certificate)."""
    conf: dict[str, Any] = {"url": settings.schema_registry_url}
    if settings.schema_registry_basic_auth is not None:
        conf["basic.auth.user.info"] = settings.schema_registry_basic_auth.get_secret_value()
    tls = {
        "ssl.ca.location": settings.schema_registry_ssl_ca_location,
        "ssl.certificate.location": settings.schema_registry_ssl_certificate_location,
        "ssl.key.location": settings.schema_registry_ssl_key_location,
    }
    conf.update({name: value for name, value in tls.items() if value})
    if settings.schema_registry_ssl_key_password is not None:
        conf["ssl.key.password"] = settings.schema_registry_ssl_key_password.get_secret_value()
    return conf


def _client_error(exc: KafkaException) -> SettingsError:
    """Name the KAFKA_* variable behind a configuration error librdkafka refused."""
    message = str(exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else exc)
    for word in message.replace('"', " ").split():
        if "." in word and word.islower():
            return SettingsError(f"Invalid configuration:\n  {option_to_env_name(word)}: {message}")
    return SettingsError(f"Invalid Kafka configuration: {message}")


def create_producer(settings: Settings, **overrides: Any) -> Producer:
    """A producer; a bad KAFKA_* option stops start-up with the variable's name."""
    try:
        return Producer(producer_config(settings, **overrides))
    except KafkaException as exc:
        raise _client_error(exc) from None


def create_consumer(settings: Settings, group_id: str | None = None, **overrides: Any) -> Consumer:
    try:
        return Consumer(consumer_config(settings, group_id, **overrides))
    except KafkaException as exc:
        raise _client_error(exc) from None


def create_admin(settings: Settings, **overrides: Any) -> AdminClient:
    try:
        return AdminClient(admin_config(settings, **overrides))
    except KafkaException as exc:
        raise _client_error(exc) from None


# confluent-kafka's registry client speaks HTTP through httpx2 (its own dependency on Python >= 3.10):
# these mean the registry could not be reached; SchemaRegistryError means it answered with an error.
REGISTRY_UNREACHABLE: tuple[type[Exception], ...] = (httpx2.HTTPError, OSError)
REGISTRY_ERRORS: tuple[type[Exception], ...] = (SchemaRegistryError, *REGISTRY_UNREACHABLE)


# Seconds a registry request may take, and how often the client tries again itself (its defaults:
# no timeout at all, 3 retries). A registry behind a link that silently drops packets held the bridge,
# its batch and its SIGTERM until TCP gave up (minutes); now a decode fails as RegistryUnavailable
# within ~11 s (two tries and the wait between them), and the bridge retries it, saying so.
REGISTRY_TIMEOUT = 5
REGISTRY_RETRIES = 1


def create_registry_client(settings: Settings, **overrides: Any) -> SchemaRegistryClient:
    """A registry client; ``overrides`` are client options such as ``timeout`` or ``max.retries``."""
    defaults = {"timeout": REGISTRY_TIMEOUT, "max.retries": REGISTRY_RETRIES}
    return SchemaRegistryClient({**registry_config(settings), **defaults, **overrides})
