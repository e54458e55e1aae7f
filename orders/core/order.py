"""The Order model: validation of decoded records and the JSON payload handed to the Celery task."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypedDict

from orders.core.errors import InvalidOrder

MAX_ID_LENGTH = 256
MAX_PRODUCT_LENGTH = 256
# Cents are summed as 64-bit integers in Redis; a billion per order leaves room for 9e7 orders.
MAX_PRICE_CENTS = 100_000_000_000


class OrderPayload(TypedDict):
    """The task's first argument: JSON-safe, the price as an exact decimal string."""

    orderId: str
    product: str
    price: str


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    product: str
    price_cents: int

    @property
    def price(self) -> Decimal:
        return Decimal(self.price_cents).scaleb(-2)

    def to_record(self) -> dict[str, Any]:
        """The Avro record (schemas/order.avsc); the price goes out as a float, as the schema says."""
        return {"orderId": self.order_id, "product": self.product, "price": float(self.price)}

    def to_payload(self) -> OrderPayload:
        return {"orderId": self.order_id, "product": self.product, "price": str(self.price)}


def order_from_record(record: Any) -> Order:
    """Validate a decoded Avro record; raise :class:`InvalidOrder` saying what is wrong."""
    if not isinstance(record, dict):
        raise InvalidOrder(f"expected an Order record, got {type(record).__name__}")
    order_id = _text(record.get("orderId"), "orderId", MAX_ID_LENGTH)
    product = _text(record.get("product"), "product", MAX_PRODUCT_LENGTH)
    return Order(order_id, product, price_to_cents(record.get("price")))


def order_from_payload(payload: OrderPayload) -> Order:
    """Rebuild the order inside the task (the payload was validated by the bridge)."""
    cents = Decimal(payload["price"]).scaleb(2)
    return Order(payload["orderId"], payload["product"], int(cents))


def price_to_cents(price: Any) -> int:
    """Avro ``float`` is 32-bit: 19.99 arrives as 19.9899997...; rounding to cents recovers it exactly."""
    if isinstance(price, bool) or not isinstance(price, int | float):
        raise InvalidOrder(f"price must be a number, got {type(price).__name__}")
    if not math.isfinite(price):
        raise InvalidOrder(f"price must be finite, got {price}")
    cents = round(price * 100)
    if cents <= 0:
        raise InvalidOrder(f"price must be positive, got {price}")
    if cents > MAX_PRICE_CENTS:
        raise InvalidOrder(f"price {price} exceeds the maximum of {MAX_PRICE_CENTS // 100}")
    return cents


def _text(value: Any, name: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise InvalidOrder(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidOrder(f"{name} is empty")
    if len(value) > max_length:
        raise InvalidOrder(f"{name} is {len(value)} characters long; at most {max_length} allowed")
    if not value.isprintable():
        raise InvalidOrder(f"{name} contains control characters")
    return value


# The Celery task the bridge hands orders to, by name: the bridge never imports the worker's code.
PROCESS_ORDER_TASK = "orders.process_order"
# A task that does nothing, for measuring what Celery itself can drain (`orders bench`).
NOOP_TASK = "orders.noop"


class RecordOrigin(TypedDict):
    """Where an order came from, carried to the task so a dead letter can point back at it."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms since the epoch (the producer's create time, as Kafka reports it)
    key: str | None  # base64 of the original key bytes
    value: str  # base64 of the original value bytes: a dead letter carries them unchanged
    group: str
