"""Order validation and the exact float32 -> cents conversion."""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest

from orders.core.errors import InvalidOrder
from orders.core.order import Order, order_from_payload, order_from_record, origin_is_valid, price_to_cents


def float32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


@pytest.mark.parametrize("cents", [1000, 1999, 123456, 199999, 200000, 1, 99])
def test_every_cent_survives_a_float32_round_trip(cents: int) -> None:
    assert price_to_cents(float32(cents / 100)) == cents


def test_all_catalogue_prices_round_trip() -> None:
    assert all(price_to_cents(float32(c / 100)) == c for c in range(1000, 200001))


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"orderId": "", "product": "Mouse", "price": 1.0}, "orderId is empty"),
        ({"orderId": "  ", "product": "Mouse", "price": 1.0}, "orderId is empty"),
        ({"orderId": "a", "product": "", "price": 1.0}, "product is empty"),
        ({"orderId": "a", "product": "Mouse", "price": float("nan")}, "finite"),
        ({"orderId": "a", "product": "Mouse", "price": float("inf")}, "finite"),
        ({"orderId": "a", "product": "Mouse", "price": -5.0}, "positive"),
        ({"orderId": "a", "product": "Mouse", "price": 0.0}, "positive"),
        ({"orderId": "a", "product": "Mouse", "price": 0.001}, "positive"),
        ({"orderId": "a", "product": "Mouse", "price": 3e30}, "maximum"),
        ({"orderId": "a" * 300, "product": "Mouse", "price": 1.0}, "at most 256"),
        ({"orderId": "a\x00b", "product": "Mouse", "price": 1.0}, "control characters"),
        ({"orderId": 5, "product": "Mouse", "price": 1.0}, "must be a string"),
        ({"orderId": "a", "product": "Mouse", "price": "1.0"}, "must be a number"),
        ({"orderId": "a", "product": "Mouse"}, "must be a number"),
        ("not a record", "expected an Order record"),
    ],
)
def test_invalid_orders_say_why(record: object, reason: str) -> None:
    with pytest.raises(InvalidOrder, match=reason):
        order_from_record(record)


def test_payload_round_trip_is_exact() -> None:
    order = order_from_record({"orderId": "o-1", "product": "Laptop", "price": float32(1999.99)})
    assert order == Order("o-1", "Laptop", 199999)
    assert order.to_payload() == {"orderId": "o-1", "product": "Laptop", "price": "1999.99"}
    assert order_from_payload(order.to_payload()) == order
    assert order.price == Decimal("1999.99")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"orderId": "o", "product": "p", "price": "-5.00"}, "must be positive"),
        ({"orderId": "o", "product": "p", "price": "0"}, "must be positive"),
        ({"orderId": "o", "product": "p", "price": "NaN"}, "must be finite"),
        ({"orderId": "o", "product": "p", "price": "Infinity"}, "must be finite"),
        ({"orderId": "o", "product": "p", "price": "1e30"}, "exceeds the maximum"),
        ({"orderId": "o", "product": "p", "price": "92233720368547758.07"}, "exceeds the maximum"),
        ({"orderId": "o", "product": "p", "price": "0.001"}, "more than two decimals"),
        ({"orderId": "o", "product": "p", "price": "abc"}, "not a decimal number"),
        ({"orderId": "o", "product": "p", "price": 5}, "decimal string"),
        ({"orderId": "o", "product": "p", "price": "1" * 41}, "decimal string"),
        ({"orderId": "", "product": "p", "price": "1.00"}, "orderId is empty"),
        ({"orderId": "o" * 300, "product": "p", "price": "1.00"}, "orderId is 300 characters"),
        ({"orderId": "o", "product": "p\n", "price": "1.00"}, "control characters"),
        ({"product": "p", "price": "1.00"}, "orderId must be a string"),
        (["o", "p", "1.00"], "expected an order payload"),
    ],
)
def test_the_worker_checks_a_payload_by_the_bridges_rules(payload: object, reason: str) -> None:
    """Anything that can enqueue the task can send these; none may reach the aggregate."""
    with pytest.raises(InvalidOrder, match=reason):
        order_from_payload(payload)


def test_origin_shape() -> None:
    good = {"topic": "t", "partition": 0, "offset": 1, "timestamp": 0, "key": None, "value": "", "group": "g"}
    assert origin_is_valid(good)
    assert not origin_is_valid({**good, "partition": "0"})
    assert not origin_is_valid({**good, "extra": 1})
    assert not origin_is_valid({k: v for k, v in good.items() if k != "group"})
    assert not origin_is_valid("origin")
