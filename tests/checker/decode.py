"""The Confluent wire format by hand: magic byte 0, a big-endian 4-byte schema id, an Avro body.

The writer schema comes from the registry over plain HTTP (``GET /schemas/ids/{id}``), with the basic
auth a URL's userinfo carries; fastavro reads the body with it (no reader schema: the fields as written).
"""

from __future__ import annotations

import base64
import io
import json
import math
import struct
import urllib.request
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastavro import parse_schema, schemaless_reader

FRAME = struct.Struct(">bI")


class Undecodable(Exception):
    """The bytes are not an order in the wire format (what the bridge must dead-letter)."""


class SchemaFetcher:
    """Writer schemas by id, fetched once each."""

    def __init__(self, registry_url: str) -> None:
        parts = urlsplit(registry_url)
        netloc = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        self._base = urlunsplit(parts._replace(netloc=netloc)).rstrip("/")
        self._auth: str | None = None
        if parts.username is not None:
            pair = f"{parts.username}:{parts.password or ''}".encode()
            self._auth = "Basic " + base64.b64encode(pair).decode()
        self._schemas: dict[int, Any] = {}

    def schema(self, schema_id: int) -> Any:
        if schema_id not in self._schemas:
            request = urllib.request.Request(f"{self._base}/schemas/ids/{schema_id}")
            if self._auth:
                request.add_header("Authorization", self._auth)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    text = json.loads(response.read())["schema"]
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise Undecodable(f"unknown schema id {schema_id}") from exc
                raise
            self._schemas[schema_id] = parse_schema(json.loads(text))
        return self._schemas[schema_id]


def decode_order(value: bytes | None, schemas: SchemaFetcher) -> tuple[str, Decimal]:
    """(orderId, price in cents as an exact Decimal of money) of one record; Undecodable if it is none."""
    if value is None or len(value) < FRAME.size:
        raise Undecodable("too short")
    magic, schema_id = FRAME.unpack_from(value)
    if magic != 0:
        raise Undecodable(f"magic byte {magic}")
    try:
        record = schemaless_reader(io.BytesIO(value[FRAME.size :]), schemas.schema(schema_id), None)
    except Undecodable:
        raise
    except Exception as exc:  # any failure to read foreign bytes
        raise Undecodable(repr(exc)) from exc
    if not isinstance(record, dict) or not isinstance(record.get("orderId"), str):
        raise Undecodable("no orderId")
    price = record.get("price")
    if not isinstance(price, float | int) or not math.isfinite(price):
        raise Undecodable("no finite price")
    # A float32 price, as the order's producer wrote it from cents: the nearest cent is the order's.
    return record["orderId"], Decimal(round(price * 100)).scaleb(-2)
