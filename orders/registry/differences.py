"""An incompatibility in Confluent's words, so the dev registry refuses a schema as Confluent's does.

Confluent's registry (its ``Difference`` and ``SchemaValidatorBuilder`` classes) reports each finding
of Apache Avro's checker as ``{errorType:'...', description:'...', additionalInfo:'...'}``, the
description naming the ``new`` and ``old`` schema as reader or writer; then the version and the schema
it clashed with and the level. Clients and people read these (``error_code`` 409 and this message);
tests/integration/test_schema_evolution.py compares ours with Confluent's documented answer.

Apache Avro's Python checker keeps a finding's own location and message only while there is one
finding: with several it merges them into sets. Then each entry names every location and message
found, where Confluent's would name its own.
"""

from __future__ import annotations

import re
from typing import Literal

from avro.compatibility import SchemaCompatibilityResult

Role = Literal["new", "old"]

DESCRIPTIONS = {
    "FIXED_SIZE_MISMATCH": "The size of FIXED type field at path '{path}' in the {reader} schema does not "
    "match with the {writer} schema",
    "TYPE_MISMATCH": "The type (path '{path}') of a field in the {reader} schema does not match with the "
    "{writer} schema",
    "NAME_MISMATCH": "The name of the schema has changed (path '{path}')",
    "MISSING_ENUM_SYMBOLS": "The {reader} schema is missing enum symbols '{info}' at path '{path}' in the "
    "{writer} schema",
    "MISSING_UNION_BRANCH": "The {reader} schema is missing a type inside a union field at path '{path}' in "
    "the {writer} schema",
    "READER_FIELD_MISSING_DEFAULT_VALUE": "The field '{info}' at path '{path}' in the {reader} schema has no "
    "default value and is missing in the {writer} schema",
}
# Java's checker names Avro types by their enum constants ("STRING"); Python's by their names ("string").
_TYPE_WORDS = re.compile(r"(reader|writer) type:? (\w+)")


def java_message(message: str) -> str:
    """Python's finding text as Java's: ``reader type: string ...`` -> ``reader type: STRING ...``."""
    return _TYPE_WORDS.sub(lambda m: f"{m[1]} type: {m[2].upper()}", message)


def differences(result: SchemaCompatibilityResult, reader: Role, writer: Role) -> list[str]:
    """One Confluent-style entry per finding of ``result`` (empty when compatible)."""
    kinds = [kind.value.upper() for kind in result.incompatibilities]
    if not kinds:
        return []
    locations = sorted(result.locations - {"/"}) or ["/"]
    messages = sorted(java_message(text) for text in result.messages)
    path, info = ", ".join(locations), ", ".join(messages)
    return [
        f"{{errorType:'{kind}', description:'"
        + DESCRIPTIONS.get(kind, "").format(path=path, info=info, reader=reader, writer=writer)
        + f"', additionalInfo:'{info}'}}"
        for kind in kinds
    ]
