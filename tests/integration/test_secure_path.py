"""The secure path end to end: Kafka on SASL_SSL (SCRAM-SHA-512), Redis on TLS with a password, the
registry on HTTPS with basic auth, all from a CA the test makes.

`orders produce`, `orders bridge` and a real `celery -A worker worker` get nothing but environment
variables (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``, ``KAFKA_SSL_CA_LOCATION``, a ``rediss://``
``REDIS_URL``, an ``https://`` ``SCHEMA_REGISTRY_URL`` with its basic auth and CA). Orders are counted,
retried and dead-lettered through all three services; each service refuses a plaintext client, a
wrong password and a client that does not trust the CA.

One secured Kafka (a JVM of its own) serves the module; Redis and the registry start while it boots.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError
from redis.backoff import NoBackoff
from redis.retry import Retry

from orders.core.aggregate import Aggregate
from orders.core.codec import OrderCodec
from orders.core.dead_letter import HEADER_STAGE
from orders.core.kafka import (
    REGISTRY_UNREACHABLE,
    create_admin,
    create_consumer,
    create_producer,
    registry_config,
)
from orders.core.settings import Settings
from orders.stack.processes import bridge_argv, healthz_ready, pipeline_service, worker_argv
from orders.stack.services import Running, Unavailable, start_registry
from orders.stack.supervisor import Service, wait_for
from tests.conftest import record_startup, unavailable
from tests.harness.kafka_io import headers_of
from tests.harness.secure import (
    Certs,
    SecureKafka,
    make_certs,
    password,
    start_tls_redis,
    tls_redis_url,
)
from tests.harness.services import REPO_ROOT
from tests.reliability.accounting import predicted_dead_letters
from worker.faults import FailureInjector

ORDERS, SEED, FAILURE_RATE, PERMANENT_RATE, MAX_RETRIES = 60, 5, 0.3, 0.1, 1


@dataclass
class SecureStack:
    certs: Certs
    kafka: SecureKafka
    redis: Running
    redis_password: str
    registry: Running
    registry_auth: str
    log_dir: Path
    processes: list[Service] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """What a pipeline process needs to reach all three services, and nothing else."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.kafka.port}",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "orders",
            "KAFKA_SASL_PASSWORD": self.kafka.users["orders"],
            "KAFKA_SSL_CA_LOCATION": str(self.certs.ca),
            "REDIS_URL": tls_redis_url(self.redis.port, self.redis_password, self.certs, db=1),
            "SCHEMA_REGISTRY_URL": self.registry.url,
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": self.registry_auth,
            "SCHEMA_REGISTRY_SSL_CA_LOCATION": str(self.certs.ca),
        }


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    log_dir = tmp_path_factory.mktemp("secure")
    certs = make_certs(log_dir / "certs")
    try:
        kafka = SecureKafka(log_dir, certs, {"orders": password()})
    except Unavailable as exc:
        unavailable(f"secure path: {exc}")
    kafka.format()
    record_startup("secure kafka (format)", kafka.format_seconds)
    started = time.monotonic()
    kafka.start(wait=False)  # the JVM boots while Redis and the registry start
    redis_password, registry_auth = password(), f"registry:{password()}"
    started_services: list[Service] = []  # stopped in reverse at the end, the test's processes included
    try:
        redis_server = start_tls_redis(log_dir, certs, redis_password)
        started_services.append(redis_server.service)
        registry_state = tls_redis_url(redis_server.port, redis_password, certs, db=0)
        tls = (certs.server_cert, certs.server_key)
        registry = start_registry(log_dir, registry_state, basic_auth=registry_auth, tls=tls)
        started_services.append(registry.service)
        kafka.wait_ready()
        record_startup("secure kafka", time.monotonic() - started)
        yield SecureStack(
            certs, kafka, redis_server, redis_password, registry, registry_auth, log_dir, started_services
        )
    finally:
        for service in reversed(started_services):
            service.stop()
        if kafka.service is not None:
            kafka.service.kill()  # its data is thrown away: no need to wait for a clean shutdown


# --- refusals ---------------------------------------------------------------------------------------


def first_kafka_error(conf: dict[str, Any], timeout: float = 15) -> KafkaError:
    """The first error librdkafka reports for a client with ``conf`` (it retries forever otherwise)."""
    errors: list[KafkaError] = []
    producer = Producer({**conf, "error_cb": errors.append, "log_level": 0})
    deadline = time.monotonic() + timeout
    while not errors and time.monotonic() < deadline:
        producer.poll(0.1)
    assert errors, f"no error within {timeout}s for {sorted(conf)}"
    with pytest.raises(KafkaException):  # and no metadata: the broker answered nothing
        producer.list_topics(timeout=1)
    return errors[0]


def test_kafka_refuses_plaintext_a_wrong_password_and_an_untrusted_certificate(secure: SecureStack) -> None:
    kafka = secure.kafka
    plaintext = first_kafka_error({"bootstrap.servers": f"127.0.0.1:{kafka.port}"})
    assert plaintext.code() in {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}, plaintext
    wrong = first_kafka_error(kafka.client_config("orders", **{"sasl.password": "wrong"}))
    assert wrong.code() == KafkaError._AUTHENTICATION, wrong
    other_ca = make_certs(secure.log_dir / "other-ca").ca
    untrusted = first_kafka_error(kafka.client_config("orders", **{"ssl.ca.location": str(other_ca)}))
    assert untrusted.code() in {KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}
    assert kafka.ready()  # and the right credentials work


def test_redis_refuses_plaintext_a_wrong_password_and_an_unchecked_server(secure: SecureStack) -> None:
    port = secure.redis.port
    once = Retry(NoBackoff(), 0)  # redis-py retries a reset connection with backoff by default
    with pytest.raises(redis.ConnectionError, match="reset by peer"):
        redis.Redis(port=port, password=secure.redis_password, socket_timeout=5, retry=once).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(tls_redis_url(port, "wrong", secure.certs)).ping()
    other_ca = make_certs(secure.log_dir / "other-ca-redis").ca
    untrusted = tls_redis_url(port, secure.redis_password, secure.certs).replace(
        str(secure.certs.ca), str(other_ca)
    )
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(untrusted).ping()
    assert redis.Redis.from_url(secure.env["REDIS_URL"]).ping()


def subjects(url: str, **conf: str) -> list[str]:
    """The registry's subjects, asked once (no retries) by confluent-kafka's client with ``conf``."""
    with SchemaRegistryClient({"url": url, "max.retries": 0, "timeout": 5, **conf}) as client:
        return list(client.get_subjects())


def test_the_registry_refuses_plaintext_a_wrong_password_and_no_credentials(secure: SecureStack) -> None:
    https, ca, auth = secure.registry.url, str(secure.certs.ca), secure.registry_auth
    with pytest.raises(REGISTRY_UNREACHABLE):
        subjects(https.replace("https://", "http://"), **{"basic.auth.user.info": auth})
    for user_info in ("registry:wrong", None):
        conf = {"ssl.ca.location": ca, **({"basic.auth.user.info": user_info} if user_info else {})}
        with pytest.raises(SchemaRegistryError) as refused:
            subjects(https, **conf)
        assert refused.value.http_status_code == 401
    answer = httpx2.get(f"{https}/subjects", verify=ssl.create_default_context(cafile=ca))
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")
    with pytest.raises(REGISTRY_UNREACHABLE):  # without the CA the server's certificate is not trusted
        subjects(https, **{"basic.auth.user.info": auth})
    assert isinstance(subjects(https, **{"basic.auth.user.info": auth, "ssl.ca.location": ca}), list)


# --- the pipeline -----------------------------------------------------------------------------------


def start(secure: SecureStack, name: str, argv: list[str], env: dict[str, str]) -> Service:
    """A worker or bridge, ready when its /healthz answers (it joined the group / consumes)."""
    service, port = pipeline_service(name, argv, secure.log_dir, env, REPO_ROOT)
    secure.processes.append(service)
    service.start(lambda: healthz_ready(port), timeout=60)
    record_startup(f"secure {name}", service.startup_seconds)
    return service


def read_all(settings: Settings, topic: str, expected: int, timeout: float = 60) -> list[Message]:
    consumer = create_consumer(settings, f"reader-{uuid.uuid4().hex[:8]}", **{"enable.auto.commit": False})
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(500, timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    return messages


def test_orders_are_counted_retried_and_dead_lettered_through_tls_and_sasl(secure: SecureStack) -> None:
    suffix = uuid.uuid4().hex[:8]
    env = {
        **secure.env,
        "ORDERS_TOPIC": f"orders-{suffix}",
        "DLQ_TOPIC": f"orders-dlq-{suffix}",
        "CONSUMER_GROUP": f"bridge-{suffix}",
        "CELERY_QUEUE": f"orders-{suffix}",
    }
    settings = Settings.from_env(env, env_file=None)
    admin = create_admin(settings)  # kept alive until the futures resolve
    created = admin.create_topics([NewTopic(settings.orders_topic, 3, 1), NewTopic(settings.dlq_topic, 1, 1)])
    for future in created.values():
        future.result(timeout=30)

    faults = {"FAILURE_INJECTION": "true", "FAILURE_RATE": str(FAILURE_RATE), "FAILURE_SEED": str(SEED),
              "PERMANENT_FAILURE_RATE": str(PERMANENT_RATE), "MAX_RETRIES": str(MAX_RETRIES),
              "RETRY_BACKOFF_BASE": "0"}  # fmt: skip
    start(secure, "worker", worker_argv(f"secure-{suffix}", "--without-mingle"), {**env, **faults})
    start(secure, "bridge", bridge_argv(), env)
    produced = subprocess.run(
        [sys.executable, "-m", "orders.cli", "produce", "--count", str(ORDERS), "--rate", "0", "--seed", "9",
         "--quiet"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    # Bytes no registry knows: the bridge dead-letters them itself (stage decode), over SASL_SSL too.
    garbage = create_producer(settings)
    garbage.produce(settings.orders_topic, b"not avro", b"garbage")
    assert garbage.flush(30) == 0

    codec = OrderCodec(SchemaRegistryClient(registry_config(settings)), settings.orders_topic)
    records = read_all(settings, settings.orders_topic, ORDERS + 1)
    order_ids = {codec.decode(m.value())["orderId"] for m in records if m.key() != b"garbage"}
    assert len(order_ids) == ORDERS
    expected_dead = predicted_dead_letters(
        order_ids, FailureInjector(FAILURE_RATE, PERMANENT_RATE, SEED), MAX_RETRIES
    )
    assert 0 < len(expected_dead) < ORDERS

    aggregate = Aggregate(redis.Redis.from_url(env["REDIS_URL"]))

    def settled() -> bool:
        snap = aggregate.snapshot()
        return snap.count + snap.counters["dlq"] >= ORDERS + 1

    wait_for(settled, 90, "every order counted or dead-lettered")
    snap = aggregate.snapshot()
    assert snap.count == ORDERS - len(expected_dead)
    assert snap.counters["retry_attempts"] > 0
    letters = read_all(settings, settings.dlq_topic, len(expected_dead) + 1)
    stages = {m.key().decode(): headers_of(m)[HEADER_STAGE] for m in letters}
    assert stages == {**dict.fromkeys(expected_dead, "process"), "garbage": "decode"}
