"""`orders registry` driven through confluent-kafka's registry client and Avro serdes, and raw HTTP.

Every test uses its own subjects on the session registry (Redis db 0), except the restart and
global-config scenario, which runs private registries on a Redis database of its own.
"""

from __future__ import annotations

import json
import signal
import struct
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
import redis
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.schema_registry import (
    ConfigCompatibilityLevel,
    Schema,
    SchemaRegistryClient,
    SchemaRegistryError,
    ServerConfig,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from orders.stack.supervisor import wait_for
from tests.conftest import Broker
from tests.harness import services

ORDER_SCHEMA = (services.REPO_ROOT / "schemas" / "order.avsc").read_text()
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
NONE = ConfigCompatibilityLevel.NONE
BACKWARD = ConfigCompatibilityLevel.BACKWARD


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def order_schema(*extra_fields: dict[str, Any]) -> str:
    """schemas/order.avsc with fields appended."""
    schema = json.loads(ORDER_SCHEMA)
    schema["fields"] += list(extra_fields)
    return json.dumps(schema)


def avro(text: str) -> Schema:
    return Schema(text, "AVRO")


def path(subject: str) -> str:
    return quote(subject, safe="")


def schema_id_of(value: bytes) -> int:
    """The id in a Confluent-framed record (magic byte 0, then a big-endian int)."""
    magic, schema_id = struct.unpack(">bI", value[:5])
    assert magic == 0
    return int(schema_id)


@pytest.fixture
def client(registry: services.Running) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": registry.url}) as sr:
        yield sr


@pytest.fixture
def subject(client: SchemaRegistryClient) -> str:
    """A subject holding schemas/order.avsc as version 1."""
    name = unique("orders") + "-value"
    client.register_schema(name, avro(ORDER_SCHEMA))
    return name


def consume(broker: Broker, topic: str, count: int, timeout: float = 60) -> list[Message]:
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": unique("registry-test"),
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,  # Tansu: a first group join otherwise waits ~23 s
    })  # fmt: skip
    consumer.subscribe([topic])
    records: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            record = consumer.poll(0.5)
            if record is None:
                continue
            assert record.error() is None, record.error()
            records.append(record)
    finally:
        consumer.close()
    assert len(records) == count, f"got {len(records)} of {count} records from {topic} on {broker.lane}"
    return records


def test_avro_round_trip_through_the_broker(kafka_broker: Broker, registry: services.Running) -> None:
    topic = unique("registry-orders")
    kafka_broker.create_topics(topic, partitions=1)
    context = SerializationContext(topic, MessageField.VALUE)
    orders = [
        {"orderId": "o-1", "product": "Keyboard", "price": 49.5},
        {"orderId": "o-2", "product": "Mouse", "price": 12.25},
    ]
    failures: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _record: Message) -> None:
        if err is not None:
            failures.append(err)

    with SchemaRegistryClient({"url": registry.url}) as producing:
        serializer = AvroSerializer(producing, ORDER_SCHEMA)  # registers "<topic>-value"
        producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
        for order in orders:
            value = serializer(order, context)
            producer.produce(topic, key=order["orderId"], value=value, on_delivery=on_delivery)
        assert producer.flush(30) == 0
    assert failures == []

    records = consume(kafka_broker, topic, len(orders))
    # A fresh client, so the writer schema can only have come from the registry, by id.
    with SchemaRegistryClient({"url": registry.url}) as consuming:
        deserializer = AvroDeserializer(consuming)
        decoded = [deserializer(record.value(), context) for record in records]
        latest = consuming.get_latest_version(f"{topic}-value")
    assert decoded == orders
    assert {schema_id_of(record.value()) for record in records} == {latest.schema_id}
    assert latest.version == 1


def test_serdes_look_up_and_resolve_against_the_latest_version(
    registry: services.Running, client: SchemaRegistryClient
) -> None:
    topic = unique("registry-serdes")
    context = SerializationContext(topic, MessageField.VALUE)
    v1 = client.register_schema(f"{topic}-value", avro(ORDER_SCHEMA))
    newer = order_schema({"name": "currency", "type": "string", "default": "EUR"})
    v2 = client.register_schema(f"{topic}-value", avro(newer))
    order = {"orderId": "o-9", "product": "Desk", "price": 120.0}

    # auto.register.schemas off: the serializer asks whether its schema is registered (lookup).
    looked_up = AvroSerializer(client, ORDER_SCHEMA, conf={"auto.register.schemas": False})
    written = looked_up(order, context)
    assert written is not None and schema_id_of(written) == v1

    with SchemaRegistryClient({"url": registry.url}) as fresh:
        reader = AvroDeserializer(fresh, conf={"use.latest.version": True})
        assert reader(written, context) == {**order, "currency": "EUR"}  # v1 data read as v2
        latest = AvroSerializer(fresh, conf={"auto.register.schemas": False, "use.latest.version": True})
        assert schema_id_of(latest({**order, "currency": "USD"}, context) or b"") == v2


def test_the_same_schema_gets_the_same_id(registry: services.Running, client: SchemaRegistryClient) -> None:
    subject = unique("orders") + "-value"
    registered = client.register_schema_full_response(subject, avro(ORDER_SCHEMA))
    reindented = json.dumps(json.loads(ORDER_SCHEMA), indent=8)
    assert client.register_schema(subject, avro(reindented)) == registered.schema_id
    elsewhere = unique("elsewhere") + "-value"
    assert client.register_schema(elsewhere, avro(reindented)) == registered.schema_id  # ids are global
    assert client.get_versions(subject) == [1]

    with SchemaRegistryClient({"url": registry.url}) as fresh:  # nothing cached
        found = fresh.lookup_schema(subject, avro(reindented))
        assert (found.schema_id, found.version, found.subject) == (registered.schema_id, 1, subject)
        assert fresh.get_version(subject, 1).schema_id == registered.schema_id
        assert fresh.get_latest_version(subject).schema_id == registered.schema_id
        stored = fresh.get_schema(registered.schema_id).schema_str
        assert stored is not None and json.loads(stored) == json.loads(
            fresh.get_schema_by_guid(str(registered.guid)).schema_str or ""
        )
        assert {subject, elsewhere} <= set(fresh.get_subjects())
    assert json.loads(stored)["name"] == "Order"
    assert [field["name"] for field in json.loads(stored)["fields"]] == [
        "orderId",
        "product",
        "price",
    ]


def test_a_breaking_change_is_refused_with_409(
    registry: services.Running, client: SchemaRegistryClient, subject: str
) -> None:
    first_id = client.get_latest_version(subject).schema_id
    breaking = order_schema({"name": "quantity", "type": "int"})  # no default: old data lacks it
    assert client.test_compatibility(subject, avro(breaking)) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, avro(breaking))
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)

    response = httpx2.post(f"{registry.url}/subjects/{path(subject)}/versions", json={"schema": breaking})
    assert response.status_code == 409
    assert response.headers["content-type"] == CONTENT_TYPE
    body = response.json()
    assert body["error_code"] == 409
    assert "incompatible" in body["message"] and "quantity" in body["message"]
    assert "BACKWARD" in body["message"]

    evolved = order_schema({"name": "quantity", "type": "int", "default": 1})
    assert client.test_compatibility(subject, avro(evolved)) is True
    assert client.register_schema(subject, avro(evolved)) > first_id
    assert client.get_versions(subject) == [1, 2]


def test_a_subject_level_overrides_the_global_one(client: SchemaRegistryClient, subject: str) -> None:
    breaking = order_schema({"name": "quantity", "type": "int"})
    with pytest.raises(SchemaRegistryError) as unset:
        client.get_config(subject)
    assert unset.value.error_code == 40408

    client.set_config(subject, ServerConfig(compatibility=NONE))
    assert client.get_config(subject).compatibility_level == NONE
    assert client.get_compatibility(subject) == "NONE"
    assert client.get_config().compatibility_level == BACKWARD  # the global level is untouched
    client.register_schema(subject, avro(breaking))
    assert client.get_versions(subject) == [1, 2]

    assert client.delete_config(subject).compatibility_level == NONE
    another = order_schema({"name": "quantity", "type": "int"}, {"name": "note", "type": "string"})
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, avro(another))  # BACKWARD again, from the global level
    assert refused.value.error_code == 409


def test_a_transitive_level_checks_every_version(client: SchemaRegistryClient, subject: str) -> None:
    client.register_schema(subject, avro(order_schema({"name": "qty", "type": "int", "default": 1})))
    drops_default = order_schema({"name": "qty", "type": "int"})  # reads v2 data, not v1 data
    assert client.test_compatibility(subject, avro(drops_default)) is True

    client.set_compatibility(subject, "BACKWARD_TRANSITIVE")
    # Against all versions (what registering checks) it fails; against one named version, as
    # Confluent does, only that version counts.
    assert client.test_compatibility_all_versions(subject, avro(drops_default)) is False
    assert client.test_compatibility(subject, avro(drops_default), version="latest") is True
    assert client.test_compatibility(subject, avro(drops_default), version=1) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, avro(drops_default))
    assert refused.value.error_code == 409
    assert client.get_versions(subject) == [1, 2]


def test_soft_then_permanent_delete(
    registry: services.Running, client: SchemaRegistryClient, subject: str
) -> None:
    schema_id = client.get_latest_version(subject).schema_id
    assert client.delete_subject(subject) == [1]
    with pytest.raises(SchemaRegistryError) as gone:
        client.get_versions(subject)
    assert gone.value.error_code == 40401
    assert subject not in client.get_subjects()
    assert subject in client.get_subjects(deleted=True)
    assert client.get_version(subject, 1, deleted=True).schema_id == schema_id

    assert client.delete_subject(subject, permanent=True) == [1]
    assert subject not in client.get_subjects(deleted=True)
    with SchemaRegistryClient({"url": registry.url}) as fresh:
        # Records already on a topic keep decoding: ids outlive their subjects.
        assert fresh.get_schema(schema_id).schema_str is not None
        assert fresh.register_schema(subject, avro(ORDER_SCHEMA)) == schema_id
        assert fresh.get_versions(subject) == [1]


ERRORS = [
    # (method, path with {subject} / {missing}, body, status, error code)
    ("GET", "/subjects/{missing}/versions", None, 404, 40401),
    ("GET", "/subjects/{subject}/versions/7", None, 404, 40402),
    ("GET", "/schemas/ids/2147483000", None, 404, 40403),
    ("POST", "/subjects/{subject}", {"schema": '"string"'}, 404, 40403),
    ("POST", "/subjects/{missing}", {"schema": '"string"'}, 404, 40401),
    ("DELETE", "/subjects/{subject}?permanent=true", None, 404, 40405),
    ("GET", "/config/{subject}", None, 404, 40408),
    ("POST", "/subjects/{subject}/versions", {"schema": "{not avro"}, 422, 42201),
    ("GET", "/subjects/{subject}/versions/0", None, 422, 42202),
    ("PUT", "/config/{subject}", {"compatibility": "SIDEWAYS"}, 422, 42203),
    ("POST", "/subjects/{subject}/versions", {"schema": order_schema({"name": "x", "type": "int"})},
     409, 409),
    ("GET", "/no/such/route", None, 404, 404),
    # The dev registry's limits: subject length, schema size, nesting.
    ("POST", "/subjects/" + "s" * 256 + "/versions", {"schema": ORDER_SCHEMA}, 422, 42208),
    ("PUT", "/config/" + "s" * 256, {"compatibility": "NONE"}, 422, 42208),
    ("POST", "/subjects/{subject}/versions", {"schema": '"' + "x" * 65536 + '"'}, 422, 42209),
    ("POST", "/subjects/{subject}/versions", {"schema": "[" * 100_000 + "]" * 100_000}, 422, 42209),
    ("POST", "/subjects/{subject}/versions", {"schema": "[" * 20_000 + "]" * 20_000}, 422, 42201),
    ("POST", "/subjects/{subject}/versions", [[[]]] , 400, 400),
]  # fmt: skip


@pytest.mark.parametrize(("method", "template", "body", "status", "code"), ERRORS)
def test_errors_have_confluent_bodies(
    registry: services.Running,
    subject: str,
    method: str,
    template: str,
    body: Any,
    status: int,
    code: int,
) -> None:
    url = registry.url + template.format(subject=path(subject), missing=unique("missing"))
    response = httpx2.request(method, url, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == CONTENT_TYPE
    answer = response.json()
    assert set(answer) == {"error_code", "message"}
    assert answer["error_code"] == code and answer["message"]


def test_a_body_nested_too_deeply_is_refused_not_crashed_on(registry: services.Running, subject: str) -> None:
    url = f"{registry.url}/subjects/{path(subject)}/versions"
    response = httpx2.post(url, content=b"[" * 200_000 + b"]" * 200_000)
    assert (response.status_code, response.json()["error_code"]) == (400, 400)
    assert "nested too deeply" in response.json()["message"]


def test_subject_not_found_message_matches_confluent(registry: services.Running) -> None:
    response = httpx2.get(f"{registry.url}/subjects/nobody-{uuid.uuid4().hex}/versions")
    missing = response.url.path.split("/")[2]
    assert response.json() == {"error_code": 40401, "message": f"Subject '{missing}' not found."}


def test_concurrent_registrations_from_two_registries_stay_consistent(
    registry: services.Running, redis_server: services.Running, service_logs: Path, subject: str
) -> None:
    """Two registry processes on one Redis race; WATCH keeps versions and ids consistent."""
    second = services.start_registry(service_logs, f"{redis_server.url}/0")
    try:
        urls = [registry.url, second.url]
        httpx2.put(f"{registry.url}/config/{path(subject)}", json={"compatibility": "NONE"})
        fresh = [order_schema({"name": f"extra{n}", "type": "int"}) for n in range(24)]
        same = [ORDER_SCHEMA] * 8
        jobs = [(urls[n % 2], schema) for n, schema in enumerate(fresh + same)]

        def register(job: tuple[str, str]) -> dict[str, Any]:
            url, schema = job
            response = httpx2.post(f"{url}/subjects/{path(subject)}/versions", json={"schema": schema})
            response.raise_for_status()
            return dict(response.json())

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(register, jobs))
    finally:
        second.service.stop()
    new, repeated = answers[: len(fresh)], answers[len(fresh) :]
    assert {a["version"] for a in repeated} == {1}  # the same schema: its existing version
    assert sorted(a["version"] for a in new) == list(range(2, 2 + len(fresh)))
    assert len({a["id"] for a in new}) == len(fresh)
    listed = httpx2.get(f"{registry.url}/subjects/{path(subject)}/versions").json()
    assert listed == list(range(1, 2 + len(fresh)))


def test_a_restarted_registry_keeps_ids_and_config(
    service_logs: Path, redis_server: services.Running
) -> None:
    state = f"{redis_server.url}/900"  # a database of this test's own, for its global config
    redis.Redis.from_url(state).flushdb()
    subjects = {
        unique("restart") + "-value": order_schema({"name": f"f{n}", "type": "int"}) for n in range(3)
    }

    first = services.start_registry(service_logs, state)
    try:
        with SchemaRegistryClient({"url": first.url}) as sr:
            ids = {name: sr.register_schema(name, avro(text)) for name, text in subjects.items()}
            sr.set_config(config=ServerConfig(compatibility=NONE))
    finally:
        assert first.service.stop() == 0  # SIGTERM is a clean stop
    assert f"listening on {first.url}" in first.service.log_path.read_text()

    second = services.start_registry(service_logs, state)
    try:
        with SchemaRegistryClient({"url": second.url}) as sr:
            for name, text in subjects.items():
                assert json.loads(sr.get_schema(ids[name]).schema_str or "") == json.loads(text)
                assert sr.register_schema(name, avro(text)) == ids[name]
                assert sr.get_versions(name) == [1]
            assert sr.get_config().compatibility_level == NONE
            assert sr.register_schema(unique("after") + "-value", avro(ORDER_SCHEMA)) > max(ids.values())
        second.service.signal(signal.SIGINT)
        wait_for(lambda: not second.service.running(), 15, "the registry to exit on SIGINT")
    finally:
        exit_code = second.service.stop()
    assert exit_code == 0
