"""The dev registry's schema identity and compatibility levels: tables of schemas -> verdicts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orders.registry.compat import (
    LEVELS,
    incompatibilities,
    parse_level,
    parse_schema,
)
from orders.registry.differences import java_message
from orders.registry.errors import RegistryError


def record(*fields: dict[str, Any], name: str = "Order", **extra: Any) -> str:
    schema = {"type": "record", "name": name, "namespace": "com.kafka.orders", **extra}
    return json.dumps({**schema, "fields": list(fields)})


ORDER_ID = {"name": "orderId", "type": "string"}
PRICE = {"name": "price", "type": "float"}
BASE = record(ORDER_ID, PRICE)
ENUM_AB = json.dumps({"type": "enum", "name": "Kind", "symbols": ["A", "B"]})
ENUM_ABC = json.dumps({"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]})
ENUM_AB_DEFAULT = json.dumps({"type": "enum", "name": "Kind", "symbols": ["A", "B"], "default": "A"})

# (old schema, new schema, {level: compatible?}) — BACKWARD: new reads old data; FORWARD: old reads
# new data; FULL: both.
PAIRS = {
    "identical": (BASE, BASE, dict(BACKWARD=True, FORWARD=True, FULL=True)),
    "add field without default": (
        BASE,
        record(ORDER_ID, PRICE, {"name": "qty", "type": "int"}),
        dict(BACKWARD=False, FORWARD=True, FULL=False, NONE=True),
    ),
    "add field with default": (
        BASE,
        record(ORDER_ID, PRICE, {"name": "qty", "type": "int", "default": 1}),
        dict(BACKWARD=True, FORWARD=True, FULL=True),
    ),
    "remove field without default": (
        BASE,
        record(ORDER_ID),
        dict(BACKWARD=True, FORWARD=False, FULL=False, NONE=True),
    ),
    "remove field that had a default": (
        record(ORDER_ID, {**PRICE, "default": 0.0}),
        record(ORDER_ID),
        dict(BACKWARD=True, FORWARD=True, FULL=True),
    ),
    "float promoted to double": (
        BASE,
        record(ORDER_ID, {"name": "price", "type": "double"}),
        dict(BACKWARD=True, FORWARD=False, FULL=False),
    ),
    "int promoted to long": ('"int"', '"long"', dict(BACKWARD=True, FORWARD=False)),
    "string and bytes interchange": ('"string"', '"bytes"', dict(BACKWARD=True, FORWARD=True)),
    "field type changed": (
        BASE,
        record(ORDER_ID, {"name": "price", "type": "string"}),
        dict(BACKWARD=False, FORWARD=False, FULL=False, NONE=True),
    ),
    "field made nullable": (
        BASE,
        record(ORDER_ID, {"name": "price", "type": ["null", "float"], "default": None}),
        dict(BACKWARD=True, FORWARD=False),
    ),
    "record renamed": (BASE, record(ORDER_ID, PRICE, name="Sale"), dict(BACKWARD=False, NONE=True)),
    "record renamed with alias": (
        BASE,
        record(ORDER_ID, PRICE, name="Sale", aliases=["com.kafka.orders.Order"]),
        dict(BACKWARD=True),
    ),
    "enum symbol added": (ENUM_AB, ENUM_ABC, dict(BACKWARD=True, FORWARD=False)),
    "enum symbol added, old reader has a default": (ENUM_AB_DEFAULT, ENUM_ABC, dict(FORWARD=True)),
}
PAIR_CASES = [
    pytest.param(old, new, level, expected, id=f"{name}-{level}")
    for name, (old, new, verdicts) in PAIRS.items()
    for level, expected in verdicts.items()
]


@pytest.mark.parametrize(("old", "new", "level", "expected"), PAIR_CASES)
def test_level_decides_a_pair(old: str, new: str, level: str, expected: bool) -> None:
    previous = [(1, parse_schema(old))]
    problems = incompatibilities(parse_level(level), parse_schema(new), previous)
    assert (not problems) is expected, problems


@pytest.mark.parametrize("level", LEVELS)
def test_transitive_levels_behave_like_plain_ones_with_a_single_version(level: str) -> None:
    old, new, _ = PAIRS["add field without default"]
    previous = [(1, parse_schema(old))]
    plain = parse_level(level.removesuffix("_TRANSITIVE"))
    assert bool(incompatibilities(plain, parse_schema(new), previous)) == bool(
        incompatibilities(parse_level(level), parse_schema(new), previous)
    )


QTY = {"name": "qty", "type": "int"}
# Each history is compatible step by step; the candidate only clashes with the oldest version.
HISTORIES = {
    # v2 gave qty a default, the candidate drops it again: it reads v2 data but not v1 data.
    "BACKWARD": [record(ORDER_ID), record(ORDER_ID, {**QTY, "default": 1}), record(ORDER_ID, QTY)],
    # v1's reader needs qty, v2 still writes it, the candidate stops writing it.
    "FORWARD": [record(ORDER_ID, QTY), record(ORDER_ID, {**QTY, "default": 1}), record(ORDER_ID)],
}


@pytest.mark.parametrize(
    ("history", "level", "expected"),
    [
        ("BACKWARD", "BACKWARD", True),
        ("BACKWARD", "BACKWARD_TRANSITIVE", False),
        ("BACKWARD", "FULL_TRANSITIVE", False),
        ("FORWARD", "FORWARD", True),
        ("FORWARD", "FORWARD_TRANSITIVE", False),
        ("FORWARD", "FULL_TRANSITIVE", False),
        ("FORWARD", "NONE", True),
    ],
)
def test_transitive_levels_check_every_earlier_version(history: str, level: str, expected: bool) -> None:
    *earlier, candidate = HISTORIES[history]
    previous = [(n, parse_schema(text)) for n, text in enumerate(earlier, start=1)]
    problems = incompatibilities(parse_level(level), parse_schema(candidate), previous)
    assert (not problems) is expected, problems
    if not expected:
        # Like Confluent's, FULL names the old schema after a "new reads old" finding only.
        named = not (history == "FORWARD" and level == "FULL_TRANSITIVE")
        assert ("{oldSchemaVersion: 1}" in problems) is named, problems


def test_no_previous_version_is_always_compatible() -> None:
    assert incompatibilities("FULL_TRANSITIVE", parse_schema(BASE), []) == []


def test_incompatibility_names_the_version_the_direction_and_the_field() -> None:
    old, new, _ = PAIRS["add field without default"]
    problems = incompatibilities("BACKWARD", parse_schema(new), [(3, parse_schema(old))])
    finding, version, schema, level = problems
    assert finding.startswith("{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'qty'")
    assert "in the new schema has no default value and is missing in the old schema" in finding
    assert (version, level) == (
        "{oldSchemaVersion: 3}",
        "{validateFields: 'false', compatibility: 'BACKWARD'}",
    )
    assert json.loads(schema.removeprefix("{oldSchema: '").removesuffix("'}")) == json.loads(old)


@pytest.mark.parametrize(
    ("python", "java"),
    [
        ("reader type: string not compatible with writer type: float",
         "reader type: STRING not compatible with writer type: FLOAT"),
        ("reader union lacking writer type: STRING", "reader union lacking writer type: STRING"),
        ("reader union lacking writer type long", "reader union lacking writer type: LONG"),
        ("qty", "qty"),
    ],
)  # fmt: skip
def test_findings_read_as_javas_checker_words_them(python: str, java: str) -> None:
    assert java_message(python) == java


def test_forward_findings_name_the_old_schema_as_reader() -> None:
    old, new, _ = PAIRS["add field without default"]
    # FORWARD: the old schema reads data of the new one; dropping nothing, adding a field is fine,
    # but the reverse (old has qty without default, new drops it) is not.
    problems = incompatibilities("FORWARD", parse_schema(old), [(1, parse_schema(new))])
    assert "in the old schema has no default value and is missing in the new schema" in problems[0]


SAME_AS_BASE = {
    "reindented": json.dumps(json.loads(BASE), indent=4),
    "keys reordered": json.dumps(
        {
            "fields": [ORDER_ID, PRICE],
            "namespace": "com.kafka.orders",
            "name": "Order",
            "type": "record",
        }
    ),
    "full name instead of namespace": json.dumps(
        {"type": "record", "name": "com.kafka.orders.Order", "fields": [ORDER_ID, PRICE]}
    ),
    "primitive spelled as an object": record(ORDER_ID, {"name": "price", "type": {"type": "float"}}),
}


@pytest.mark.parametrize("text", SAME_AS_BASE.values(), ids=SAME_AS_BASE.keys())
def test_same_schema_written_differently_has_one_identity(text: str) -> None:
    assert parse_schema(text).fingerprint == parse_schema(BASE).fingerprint
    assert parse_schema(text).canonical == parse_schema(BASE).canonical


DIFFERENT_FROM_BASE = {
    "doc added": record(ORDER_ID, PRICE, doc="an order"),
    "default added": record(ORDER_ID, {**PRICE, "default": 0.0}),
    "fields reordered": record(PRICE, ORDER_ID),
}


@pytest.mark.parametrize("text", DIFFERENT_FROM_BASE.values(), ids=DIFFERENT_FROM_BASE.keys())
def test_schemas_that_mean_something_else_have_another_identity(text: str) -> None:
    assert parse_schema(text).fingerprint != parse_schema(BASE).fingerprint


@pytest.mark.parametrize(
    ("text", "schema_type", "references"),
    [
        pytest.param("not json", "AVRO", None, id="not JSON"),
        pytest.param('{"type": "strung"}', "AVRO", None, id="unknown type"),
        pytest.param('{"type": "record", "name": "X"}', "AVRO", None, id="record without fields"),
        pytest.param("", "AVRO", None, id="empty"),
        pytest.param(None, "AVRO", None, id="missing"),
        pytest.param(BASE, "JSON", None, id="JSON schema type"),
        pytest.param(BASE, "AVRO", [{"name": "x", "subject": "s", "version": 1}], id="references"),
    ],
)
def test_invalid_schemas_are_refused_with_42201(text: object, schema_type: str, references: object) -> None:
    with pytest.raises(RegistryError) as refused:
        parse_schema(text, schema_type, references)
    assert (refused.value.status, refused.value.error_code) == (422, 42201)


@pytest.mark.parametrize(
    ("given", "level"),
    [("backward", "BACKWARD"), ("NONE", "NONE"), ("Full_Transitive", "FULL_TRANSITIVE")],
)
def test_levels_are_case_insensitive(given: str, level: str) -> None:
    assert parse_level(given) == level


@pytest.mark.parametrize("given", ["BACKWARDS", "", None, 1])
def test_unknown_levels_are_refused_with_42203(given: object) -> None:
    with pytest.raises(RegistryError) as refused:
        parse_level(given)
    assert (refused.value.status, refused.value.error_code) == (422, 42203)
