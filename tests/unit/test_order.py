"""Order validation and the exact float32 -> cents conversion."""

from __future__ import annotations

import struct
from decimal import Decimal

import pytest

from orders.core.errors import InvalidOrder
from orders.core.order import Order, order_from_payload, order_from_record, price_to_cents


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
