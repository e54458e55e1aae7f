"""Writer schemas the decoder refuses: those that let a few bytes claim endless work.

Avro reads an array block by block: a count, then that many items. An item type that takes no bytes
(``null``, a record of such fields, a fixed of size 0) makes a count free to claim: a 20-byte body
can announce 2^62 items, and fastavro reads them one at a time (~0.18 s per million), so decoding
never returns and the bridge stalls. Any other item takes at least one byte, so its count is bounded
by the bytes left: reading stops at the end of the body. Maps are safe too: each entry has a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def zero_byte_array(parsed: Any) -> str | None:
    """Where ``parsed`` (fastavro's parse_schema output) has an array of zero-byte items, or None."""
    named: Mapping[str, Any] = parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}
    return _find(parsed, named, "$")


def _find(schema: Any, named: Mapping[str, Any], path: str) -> str | None:
    if isinstance(schema, list):
        return next(
            (hit for i, branch in enumerate(schema) if (hit := _find(branch, named, f"{path}|{i}"))), None
        )
    if not isinstance(schema, dict):
        return None  # a primitive, or a named type found where it is defined
    kind = schema.get("type")
    if kind == "array":
        if _zero_bytes(schema.get("items"), named, set()):
            return f"{path}[]"
        return _find(schema.get("items"), named, f"{path}[]")
    if kind == "map":
        return _find(schema.get("values"), named, f"{path}{{}}")
    if kind in ("record", "error"):
        fields = schema.get("fields", [])
        return next(
            (hit for f in fields if (hit := _find(f.get("type"), named, f"{path}.{f.get('name')}"))), None
        )
    return _find(kind, named, path) if isinstance(kind, dict | list) else None


def _zero_bytes(schema: Any, named: Mapping[str, Any], seen: set[str]) -> bool:
    """True if a value of this type can be encoded in no bytes at all."""
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema == "null"
        if schema in seen or schema not in named:
            return False  # a type that contains itself cannot be empty
        return _zero_bytes(named[schema], named, seen | {schema})
    if isinstance(schema, list) or not isinstance(schema, dict):
        return False  # a union writes its branch index: at least one byte
    kind = schema.get("type")
    if kind in ("record", "error"):
        return all(_zero_bytes(f.get("type"), named, seen) for f in schema.get("fields", []))
    if kind == "fixed":
        return schema.get("size") == 0
    if isinstance(kind, str | dict | list) and kind not in ("array", "map", "enum"):
        return _zero_bytes(kind, named, seen)
    return False
