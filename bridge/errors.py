"""One hierarchy for every way an order can fail; each class maps to one reaction (see STYLE.md)."""

from __future__ import annotations

from typing import Literal

Stage = Literal["decode", "validate", "process"]


class OrderError(Exception):
    """Base of the order pipeline's expected errors."""

    stage: Stage = "process"


class UndecodableRecord(OrderError):
    """The record's bytes are not a Confluent-framed Avro Order (framing, schema id, Avro).

    Dead-lettered at stage ``decode``, committed, never retried.
    """

    stage: Stage = "decode"


class InvalidOrder(OrderError):
    """The record decoded but the order fails validation (empty id, bad price, ...).

    Dead-lettered at stage ``validate``, never retried.
    """

    stage: Stage = "validate"


class TransientError(OrderError):
    """A processing failure that may succeed later: Celery autoretries it with backoff."""


class PermanentError(OrderError):
    """A processing failure that can never succeed: dead-lettered at once."""


class RegistryUnavailable(Exception):
    """The schema registry could not be reached; the record is retried, not dead-lettered."""
