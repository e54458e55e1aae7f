"""Schema evolution as Avro users expect it, through the dev registry and the real pipeline.

v1 and v2 producers (`orders produce`, `--schema schemas/order-v2.avsc`) write at the same time under
BACKWARD; the bridge decodes each record with its writer schema and the aggregate counts every order
exactly. An incompatible v3 is refused with Confluent's error: HTTP 409, error code 409 and the message
its registry builds (Confluent's `Difference` and `SchemaValidatorBuilder` classes; CP 7.x/8.x print
`details: [{errorType:..., description:..., additionalInfo:...}, {oldSchemaVersion: N}, {oldSchema:
'...'}, {validateFields: 'false', compatibility: 'BACKWARD'}]`).
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from orders.stack.supervisor import wait_for
from tests.conftest import Pipeline
from tests.harness.kafka_io import read_topic
from tests.harness.services import REPO_ROOT
from tests.integration.test_pipeline import produced_orders, snapshot

pytestmark = [pytest.mark.kafka, pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)]

SCHEMAS = REPO_ROOT / "schemas"
V1, V2, V3 = SCHEMAS / "order.avsc", SCHEMAS / "order-v2.avsc", SCHEMAS / "order-v3-incompatible.avsc"
EACH = 150

# Confluent's answer to registering v3 after v2 under BACKWARD, field by field as its registry words it.
CONFLUENT_REFUSAL = re.compile(
    r'Schema being registered is incompatible with an earlier schema for subject "(?P<subject>[^"]+)", '
    r"details: \[\{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'currency' at "
    r"path '/fields/4' in the new schema has no default value and is missing in the old schema', "
    r"additionalInfo:'currency'\}, \{oldSchemaVersion: 2\}, \{oldSchema: '(?P<old>.+)'\}, "
    r"\{validateFields: 'false', compatibility: 'BACKWARD'\}\]$"
)


def produce(pipeline: Pipeline, count: int, seed: int, *schema: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "orders.cli", "produce", "--count", str(count), "--rate", "0",
            "--seed", str(seed), "--quiet", *schema]  # fmt: skip
    env = {**os.environ, **pipeline.env}
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out + err


def test_v1_and_v2_producers_at_once_and_an_incompatible_v3_refused(pipeline: Pipeline) -> None:
    subject = f"{pipeline.orders_topic}-value"
    registry = SchemaRegistryClient({"url": pipeline.settings().schema_registry_url})
    registry.set_compatibility(subject, "BACKWARD")
    pipeline.start_worker()
    pipeline.start_bridge()

    # v1 first (version 1 of the subject), then both at once: v2 registers as version 2 meanwhile.
    code, output = finished(produce(pipeline, 10, 1))
    assert code == 0 and "sent 10, delivered 10, failed 0" in output, output
    v1, v2 = produce(pipeline, EACH, 2), produce(pipeline, EACH, 3, "--schema", str(V2))
    assert [finished(p)[0] for p in (v1, v2)] == [0, 0]
    total = 10 + 2 * EACH

    assert registry.get_versions(subject) == [1, 2]
    assert registry.get_compatibility(subject) == "BACKWARD"
    ids = {version: registry.get_version(subject, version).schema_id for version in (1, 2)}
    written = [m.value() for m in read_topic(pipeline.broker.bootstrap, pipeline.orders_topic, total)]
    by_schema = {schema_id: 0 for schema_id in ids.values()}
    for value in written:
        by_schema[struct.unpack_from(">bI", value)[1]] += 1
    assert by_schema == {ids[1]: 10 + EACH, ids[2]: EACH}

    # Every record decoded with its own writer schema: all counted, exactly, none dead-lettered.
    wait_for(lambda: snapshot(pipeline).count >= total, 90, f"{total} orders counted")
    prices = produced_orders(pipeline, total)
    snap = snapshot(pipeline)
    assert (snap.count, snap.sum, snap.counters["dlq"]) == (total, sum(prices.values()), 0)

    # v3 through the producer: refused, nothing sent, the subject unchanged.
    code, output = finished(produce(pipeline, 1, 4, "--schema", str(V3)))
    assert code == 1 and "HTTP 409, error code 409" in output and "'currency'" in output, output
    assert registry.get_versions(subject) == [1, 2]

    # ... and as any Confluent client sees it: the same status, code and message as Confluent's registry.
    with pytest.raises(SchemaRegistryError) as refused:
        registry.register_schema(subject, Schema(V3.read_text(), "AVRO"))
    error = refused.value
    assert (error.http_status_code, error.error_code) == (409, 409)
    match = CONFLUENT_REFUSAL.match(error.error_message)
    assert match, error.error_message
    assert match["subject"] == subject
    # Confluent prints Avro's canonical JSON of version 2 (its key order may differ from ours).
    assert json.loads(match["old"]) == json.loads(V2.read_text())
    assert registry.get_versions(subject) == [1, 2]
