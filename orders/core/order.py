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
MAX_PRICE_TEXT = 40  # a decimal string of a valid price is far shorter; Decimal parses long input slowly


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


def order_from_payload(payload: Any) -> Order:
    """Rebuild and check the order inside the task, by the bridge's rules.

    Anything that can reach the Celery queue can enqueue the task (Flower's API, a Redis client), so
    the worker trusts no payload: raises :class:`InvalidOrder` saying what is wrong.
    """
    if not isinstance(payload, dict):
        raise InvalidOrder(f"expected an order payload, got {type(payload).__name__}")
    order_id = _text(payload.get("orderId"), "orderId", MAX_ID_LENGTH)
    product = _text(payload.get("product"), "product", MAX_PRODUCT_LENGTH)
    return Order(order_id, product, price_text_to_cents(payload.get("price")))


def price_to_cents(price: Any) -> int:
    """Avro ``float`` is 32-bit: 19.99 arrives as 19.9899997...; rounding to cents recovers it exactly."""
    if isinstance(price, bool) or not isinstance(price, int | float):
        raise InvalidOrder(f"price must be a number, got {type(price).__name__}")
    if not math.isfinite(price):
        raise InvalidOrder(f"price must be finite, got {price}")
    return _checked_cents(round(price * 100), price)


def price_text_to_cents(text: Any) -> int:
    """The payload's exact decimal price (``"19.99"``) in cents; at most two decimals."""
    if not isinstance(text, str) or len(text) > MAX_PRICE_TEXT:
        raise InvalidOrder(f"price must be a decimal string, got {type(text).__name__}")
    try:
        price = Decimal(text)
    except ArithmeticError as exc:
        raise InvalidOrder(f"price {text!r} is not a decimal number") from exc
    if not price.is_finite():
        raise InvalidOrder(f"price must be finite, got {text!r}")
    cents = price.scaleb(2)
    if cents > MAX_PRICE_CENTS:  # checked before the int(): "1e99999" would be a huge integer
        raise InvalidOrder(f"price {text} exceeds the maximum of {MAX_PRICE_CENTS // 100}")
    if cents != cents.to_integral_value():
        raise InvalidOrder(f"price {text} has more than two decimals")
    return _checked_cents(int(cents), text)


def _checked_cents(cents: int, shown: Any) -> int:
    if cents <= 0:
        raise InvalidOrder(f"price must be positive, got {shown}")
    if cents > MAX_PRICE_CENTS:
        raise InvalidOrder(f"price {shown} exceeds the maximum of {MAX_PRICE_CENTS // 100}")
    return cents


def origin_is_valid(origin: Any) -> bool:
    """True if ``origin`` has the shape of a :class:`RecordOrigin` (a dead letter can point back with it)."""
    if not isinstance(origin, dict) or set(origin) != set(RecordOrigin.__annotations__):
        return False
    texts = [origin["topic"], origin["value"], origin["group"]]
    numbers = [origin["partition"], origin["offset"], origin["timestamp"]]
    return (
        all(isinstance(t, str) for t in texts)
        and all(isinstance(n, int) and not isinstance(n, bool) for n in numbers)
        and (origin["key"] is None or isinstance(origin["key"], str))
    )


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
