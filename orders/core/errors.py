"""One hierarchy for every way an order can fail; each class maps to one reaction.

- :class:`UndecodableRecord`: dead letter at stage ``decode``, commit, move on; never retried.
- :class:`InvalidOrder`: dead letter at stage ``validate``; never retried.
- :class:`TransientError`: Celery's autoretry with backoff, then a dead letter at stage ``process``.
- :class:`PermanentError`: dead letter at stage ``process`` at once.
- :class:`RegistryUnavailable` (not an order's fault): the same record is retried, nothing is skipped.
"""

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
