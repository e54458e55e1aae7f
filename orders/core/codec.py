"""The only Avro / Confluent-wire-format code: Order records <-> framed bytes via the schema registry.

Wire format: magic byte 0, a 4-byte big-endian schema id, then the Avro binary body. Writer schemas
are fetched from the registry by id (and cached); the body is resolved against our reader schema,
so records written with a compatible newer or older version decode to the fields we know.
"""

from __future__ import annotations

import io
import json
import struct
from functools import cache
from importlib.resources import files
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro import parse_schema, schemaless_reader

from orders.core.errors import RegistryUnavailable, UndecodableRecord
from orders.core.kafka import REGISTRY_UNREACHABLE
from orders.core.order import Order
from orders.core.schema_guard import zero_byte_array

# Package data, so a wheel or `pip install .` carries it: orders/core/order.avsc is a symlink to the
# top-level schemas/order.avsc, the one file people read and edit (the wheel gets its content).
SCHEMA_RESOURCE = files("orders.core") / "order.avsc"
MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")


@cache
def order_schema_str() -> str:
    """schemas/order.avsc, the reader (and producer) schema."""
    return SCHEMA_RESOURCE.read_text()


class OrderCodec:
    """Encodes orders for one topic and decodes any registry-framed record into an Order dict."""

    def __init__(self, registry: SchemaRegistryClient, topic: str, writer_schema: str | None = None) -> None:
        """``writer_schema`` encodes with another version of the record (a field it adds takes its
        default); decoding always resolves to schemas/order.avsc."""
        self._registry = registry
        self._topic = topic
        self._reader = parse_schema(json.loads(order_schema_str()))
        self._writers: dict[int, Any] = {}
        # Registers the schema under "<topic>-value" on first use, as Confluent's clients do.
        writer = writer_schema or order_schema_str()
        self._serializer = AvroSerializer(registry, writer, lambda o, _: o.to_record())
        self._context = SerializationContext(topic, MessageField.VALUE)

    def encode(self, order: Order) -> bytes:
        data = self._serializer(order, self._context)
        assert data is not None
        return data

    def decode(self, value: bytes | None) -> dict[str, Any]:
        """The record as a dict in the reader schema's shape.

        Raises :class:`UndecodableRecord` for bad framing, an unknown schema id or an Avro body
        that does not resolve, and :class:`RegistryUnavailable` when the registry cannot answer.
        """
        if value is None or len(value) < HEADER.size:
            raise UndecodableRecord(f"record of {len(value or b'')} bytes is too short for Confluent framing")
        magic, schema_id = HEADER.unpack_from(value)
        if magic != MAGIC_BYTE:
            raise UndecodableRecord(f"unknown magic byte {magic}: not Confluent Schema Registry framing")
        writer = self._writer_schema(schema_id)
        try:
            record = schemaless_reader(io.BytesIO(value[HEADER.size :]), writer, self._reader)
        except Exception as exc:  # untrusted bytes: any failure to read them is a decode failure
            raise UndecodableRecord(f"Avro body does not decode with schema id {schema_id}: {exc!r}") from exc
        if not isinstance(record, dict):
            raise UndecodableRecord(f"schema id {schema_id} decoded to {type(record).__name__}, not a record")
        return record

    def _writer_schema(self, schema_id: int) -> Any:
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._writers[schema_id] = self._fetch_writer_schema(schema_id)
        return writer

    def _fetch_writer_schema(self, schema_id: int) -> Any:
        try:
            schema = self._registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise UndecodableRecord(f"unknown schema id {schema_id}") from exc
            raise RegistryUnavailable(f"schema registry answered {exc.http_status_code}: {exc}") from exc
        except REGISTRY_UNREACHABLE as exc:
            raise RegistryUnavailable(f"schema registry unreachable: {exc!r}") from exc
        if schema.schema_type not in (None, "AVRO"):
            raise UndecodableRecord(f"schema id {schema_id} is {schema.schema_type}, not Avro")
        try:
            parsed = parse_schema(json.loads(schema.schema_str or "null"))
        except Exception as exc:
            raise UndecodableRecord(f"schema id {schema_id} is not a usable Avro schema: {exc!r}") from exc
        bomb = zero_byte_array(parsed)
        if bomb is not None:
            raise UndecodableRecord(
                f"schema id {schema_id} is refused: its array at {bomb} has items of zero bytes, so a "
                "few bytes could claim endless items (a decode bomb)"
            )
        return parsed
