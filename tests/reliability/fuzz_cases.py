"""Hypothesis strategies for scenario 6: good orders and bad records, each with the outcome it must get.

Bad records are built so their outcome is certain: a decode failure (framing, schema id, Avro body)
or a validation failure (strings, prices), with the reason the dead letter must give.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from fastavro import parse_schema, schemaless_writer
from hypothesis import strategies as st

from orders.core.codec import order_schema_str

SCHEMA = parse_schema(json.loads(order_schema_str()))
MAX_CENTS = 100_000_000_000  # orders/core/order.py's bound, 1e9 in money


@dataclass(frozen=True)
class Case:
    kind: str  # "good" or the kind of bad record
    key: bytes | None
    value: bytes | None
    order_id: str = ""  # good orders: the id and exact price
    cents: int = 0
    stage: str = ""  # bad records: the DLQ stage and a word of the reason
    reason: str = ""

    @property
    def good(self) -> bool:
        return self.kind == "good"


def frame(schema_id: int, record: dict[str, Any]) -> bytes:
    body = io.BytesIO()
    schemaless_writer(body, SCHEMA, record)
    return struct.pack(">bI", 0, schema_id) + body.getvalue()


def float32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def price_reason(price: float) -> str:
    """What the bridge must say about a price that arrives (as a float32) invalid."""
    arrived = float32(price)
    if not math.isfinite(arrived):
        return "finite"
    cents = round(arrived * 100)
    assert cents <= 0 or cents > MAX_CENTS, price
    return "positive" if cents <= 0 else "exceeds"


def cases(schema_id: int, run: str) -> st.SearchStrategy[Case]:
    """Good orders and bad records in equal measure, each with a key that may not be UTF-8."""
    ids = itertools.count()
    keys = st.one_of(st.none(), st.binary(max_size=12), st.binary(max_size=12).map(lambda b: b"\xff\xfe" + b))
    text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30).filter(
        lambda t: bool(t.strip()) and t.isprintable()
    )
    cents = st.integers(1, 10_000_000)  # up to 100,000.00: float32 still recovers every cent

    def good(key: bytes | None, product: str, price: int) -> Case:
        order_id = f"{run}-{next(ids)}"
        record = {"orderId": order_id, "product": product, "price": price / 100}
        return Case("good", key, frame(schema_id, record), order_id, price)

    def record(product: str, price: int) -> bytes:
        return frame(schema_id, {"orderId": f"{run}-bad", "product": product, "price": price / 100})

    def truncated(key: bytes | None, product: str, price: int, cut: float) -> Case:
        value = record(product, price)
        return Case("truncated Avro", key, value[: int(len(value) * cut)], stage="decode",
                    reason="too short|does not decode")  # fmt: skip

    def wrong_magic(key: bytes | None, product: str, price: int, magic: int) -> Case:
        value = bytes([magic]) + record(product, price)[1:]
        return Case("wrong magic byte", key, value, stage="decode", reason="magic byte")

    def unknown_id(key: bytes | None, product: str, price: int, unknown: int) -> Case:
        value = struct.pack(">bI", 0, unknown) + record(product, price)[5:]
        return Case("unknown schema id", key, value, stage="decode", reason=f"unknown schema id {unknown}")

    def bad_price(key: bytes | None, product: str, price: float) -> Case:
        value = frame(schema_id, {"orderId": f"{run}-p", "product": product, "price": price})
        return Case(
            "NaN, inf or out-of-range price", key, value, stage="validate", reason=price_reason(price)
        )

    def not_utf8(key: bytes | None, raw: bytes) -> Case:
        # An Avro string is a zigzag length then the bytes; these are not UTF-8.
        value = struct.pack(">bI", 0, schema_id) + bytes([len(raw) * 2]) + raw + b"\x02a\x00\x00\x80?"
        return Case("non-UTF-8 Avro string", key, value, stage="decode", reason="does not decode")

    random_bytes = st.one_of(st.none(), st.binary(max_size=64).filter(lambda b: len(b) < 5 or b[0] != 0))
    prices = st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]),
        st.floats(-1e30, -0.01), st.floats(0, 0.004), st.floats(1.01e9, 1e30),
    )  # fmt: skip
    fields = st.sampled_from(["orderId", "product"])
    bad = st.one_of(
        st.builds(lambda k, v: Case("random bytes", k, v, stage="decode", reason="too short|magic byte"),
                  keys, random_bytes),
        st.builds(truncated, keys, text, cents, st.floats(0, 1, exclude_max=True)),
        st.builds(wrong_magic, keys, text, cents, st.integers(1, 255)),
        st.builds(unknown_id, keys, text, cents, st.integers(1_000_000_000, 2**31 - 1)),
        st.builds(lambda k, ch, n, field: huge(schema_id, run, k, ch * n, field),
                  keys, st.sampled_from("xé€😀"), st.integers(257, 200_000), fields),
        st.builds(bad_price, keys, text, prices),
        st.builds(lambda k, v, field: blank(schema_id, k, v, field),
                  keys, st.sampled_from(["", "   ", "a\x00b", "tab\there", "\u2028"]),
                  fields),
        st.builds(not_utf8, keys, st.binary(max_size=19).map(lambda b: b"\xff" + b)),
    )  # fmt: skip
    # Half good orders, half bad records (one_of alone would flatten to 1 good in 11).
    return st.booleans().flatmap(lambda is_good: st.builds(good, keys, text, cents) if is_good else bad)


def boundary_cases(schema_id: int, run: str) -> list[Case]:
    """Explicit examples: an orderId so long that a dead letter keyed by it would pass 1 MB."""
    return [huge(schema_id, run, b"huge-id", "\N{GRINNING FACE}" * 150_000, "orderId")]


def huge(schema_id: int, run: str, key: bytes | None, value: str, field: str) -> Case:
    record = {"orderId": f"{run}-huge", "product": "Camera", "price": 10.0, field: value}
    return Case(f"huge {field}", key, frame(schema_id, record), stage="validate", reason="characters long")


def blank(schema_id: int, key: bytes | None, value: str, field: str) -> Case:
    record = {"orderId": "blank-x", "product": "Camera", "price": 10.0, field: value}
    reason = "empty" if not value.strip() else "control characters"
    return Case(f"blank or control {field}", key, frame(schema_id, record), stage="validate", reason=reason)
