"""Writer schemas the codec refuses (decode bombs) and the ones it takes, as a table."""

from __future__ import annotations

from typing import Any

import pytest
from fastavro import parse_schema

from orders.core.schema_guard import zero_byte_array


def record(*fields: tuple[str, Any], name: str = "O") -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]}


EMPTY = record(name="Empty")
BOMBS = [
    (record(("a", {"type": "array", "items": "null"})), "$.a[]"),
    (record(("e", EMPTY), ("a", {"type": "array", "items": "Empty"})), "$.a[]"),
    (record(("a", {"type": "array", "items": {"type": "fixed", "name": "F", "size": 0}})), "$.a[]"),
    (record(("a", ["null", {"type": "array", "items": {"type": "null"}}])), "$.a|1[]"),
    (record(("m", {"type": "map", "values": {"type": "array", "items": "null"}})), "$.m{}[]"),
    (record(("a", {"type": "array", "items": {"type": "array", "items": "null"}})), "$.a[][]"),
]
SAFE = [
    record(("orderId", "string"), ("product", "string"), ("price", "float")),
    record(("a", {"type": "array", "items": "int"})),
    record(("a", {"type": "array", "items": ["null", "int"]})),  # a union writes its index: 1 byte
    record(("m", {"type": "map", "values": "null"})),  # each entry has a key: at least 1 byte
    record(("a", {"type": "array", "items": {"type": "enum", "name": "E", "symbols": ["only"]}})),
    record(
        ("next", ["null", "O"]), ("a", {"type": "array", "items": {"type": "fixed", "name": "F", "size": 1}})
    ),
]


@pytest.mark.parametrize(("schema", "where"), BOMBS)
def test_arrays_of_zero_byte_items_are_found(schema: dict[str, Any], where: str) -> None:
    assert zero_byte_array(parse_schema(schema)) == where


@pytest.mark.parametrize("schema", SAFE)
def test_schemas_whose_counts_are_bounded_by_the_bytes_pass(schema: dict[str, Any]) -> None:
    assert zero_byte_array(parse_schema(schema)) is None
