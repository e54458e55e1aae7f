"""Avro schemas for the dev registry: parsing, identity (same schema -> same id) and compatibility.

Compatibility is decided by Apache Avro's own ``ReaderWriterCompatibilityChecker``, with Confluent's
meaning of the levels: BACKWARD means the new schema can read data written with the previous one,
FORWARD that the previous one can read data written with the new one, FULL both. Plain levels
compare with the latest version only; ``*_TRANSITIVE`` levels with every live version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, cast, get_args

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityResult

from orders.registry.differences import differences
from orders.registry.errors import (
    MAX_SCHEMA_BYTES,
    invalid_compatibility_level,
    invalid_schema,
    schema_too_large,
)

Level = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
]
LEVELS: tuple[Level, ...] = get_args(Level)
DEFAULT_LEVEL: Level = "BACKWARD"
AVRO = "AVRO"


@dataclass(frozen=True)
class ParsedSchema:
    """A schema as the registry stores it.

    ``canonical`` is Avro's own JSON rendering of the parsed schema (whitespace, ``"string"`` vs
    ``{"type": "string"}`` and namespace spelling no longer matter); ``fingerprint`` hashes it with
    sorted keys, so key order does not matter either. Docs, defaults and aliases are kept: they
    change what a schema means to a reader, so schemas differing in them get different ids.
    """

    canonical: str
    fingerprint: str
    avro: avro.schema.Schema


def parse_level(value: object) -> Level:
    """``"backward"`` -> ``"BACKWARD"``; raises the registry's 42203 error for anything else."""
    level = value.upper() if isinstance(value, str) else value
    if level not in LEVELS:
        raise invalid_compatibility_level(value)
    return cast(Level, level)


def parse_schema(text: object, schema_type: object = AVRO, references: object = None) -> ParsedSchema:
    """Parse a schema string from a request body; raises the registry's 42201 error if invalid."""
    if schema_type not in (None, AVRO):
        raise invalid_schema(f"schema type {schema_type!r} is not supported, only AVRO")
    if references:
        raise invalid_schema("schema references are not supported by this registry")
    if not isinstance(text, str) or not text.strip():
        raise invalid_schema("the schema must be a non-empty string")
    size = len(text.encode())
    if size > MAX_SCHEMA_BYTES:
        raise schema_too_large(size)
    return _parse(text)


@lru_cache(maxsize=512)
def _parse(text: str) -> ParsedSchema:
    # Cached: stored schemas are parsed again for every compatibility check against them.
    try:
        parsed = avro.schema.parse(text)
    except (avro.errors.AvroException, TypeError, ValueError) as exc:
        raise invalid_schema(str(exc)) from exc
    except RecursionError:  # nested deeper than Python's parsers go: refused, not a 500
        raise invalid_schema("nested too deeply") from None
    as_json: Any = parsed.to_json()
    canonical = json.dumps(as_json, separators=(",", ":"))
    identity = json.dumps(as_json, separators=(",", ":"), sort_keys=True)
    return ParsedSchema(canonical, hashlib.sha256(identity.encode()).hexdigest(), parsed)


def incompatibilities(
    level: Level, candidate: ParsedSchema, previous: Sequence[tuple[int, ParsedSchema]]
) -> list[str]:
    """Why ``candidate`` may not follow ``previous`` at ``level``, as Confluent's registry words it;
    empty means compatible.

    ``previous`` holds ``(version, schema)`` pairs, oldest first. Plain levels look at the newest one
    only, ``*_TRANSITIVE`` levels at each, newest first, and report the first one that clashes: its
    findings (``orders.registry.differences``), then ``{oldSchemaVersion: N}``, ``{oldSchema: '...'}``
    and ``{validateFields: 'false', compatibility: 'LEVEL'}``.
    """
    if level == "NONE" or not previous:
        return []
    compared = previous if level.endswith("_TRANSITIVE") else previous[-1:]
    base = level.removesuffix("_TRANSITIVE")
    for version, old in reversed(compared):
        # Confluent checks FULL as "old reads new" then "new reads old", and names the old schema
        # after the second part only.
        forward = differences(_check(old, candidate), "old", "new") if base in ("FORWARD", "FULL") else []
        backward = differences(_check(candidate, old), "new", "old") if base in ("BACKWARD", "FULL") else []
        if forward or backward:
            named = bool(backward) if base == "FULL" else True
            old_schema = [f"{{oldSchemaVersion: {version}}}", f"{{oldSchema: '{old.canonical}'}}"]
            return [*forward, *backward, *(old_schema if named else []),
                    f"{{validateFields: 'false', compatibility: '{level}'}}"]  # fmt: skip
    return []


def _check(reader: ParsedSchema, writer: ParsedSchema) -> SchemaCompatibilityResult:
    # A fresh checker each time: it memoizes on object ids, which must not outlive the schemas.
    return ReaderWriterCompatibilityChecker().get_compatibility(reader.avro, writer.avro)
