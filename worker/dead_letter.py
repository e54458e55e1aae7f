"""The failure hook's dead-lettering: claim the order, publish its letter in bounded time, remember it.

- The order is claimed in Redis first (worker/claim.lua): from then on the aggregate never counts
  it, and an order already counted is never dead-lettered. Each order ends counted or dead-lettered.
- The letter waits at most WORKER_DLQ_WAIT for the DLQ's acknowledgement, inside the task's time
  limit, so a prefork child is never killed in the middle of it.
- After a delivery failed, the DLQ counts as down for ``COOL_DOWN`` seconds: the next letters fail at
  once (their orders are requeued) instead of each holding the worker for the full wait; the first
  letter after the cool-down tries again.
- Once acknowledged, the claim says so, and a later copy of the message (a redelivery) sends none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from orders.core.dead_letter import DeadLetter
from orders.core.dead_letter_publisher import DeadLetterNotDelivered, DeadLetterPublisher
from worker.aggregate import AggregateWriter

COOL_DOWN = 10.0
Outcome = Literal["published", "already_published", "counted"]


class DlqCircuit:
    """Remembers a failed delivery for a while, so the next letters do not each wait for it."""

    def __init__(self, cool_down: float = COOL_DOWN, clock: Callable[[], float] = time.monotonic) -> None:
        self._cool_down = cool_down
        self._clock = clock
        self._open_until = float("-inf")

    def check(self) -> None:
        """Raise DeadLetterNotDelivered at once while a recent delivery failure is remembered."""
        left = self._open_until - self._clock()
        if left > 0:
            raise DeadLetterNotDelivered(
                f"the DLQ did not acknowledge a letter recently; trying again in {left:.0f}s"
            )

    def failed(self) -> None:
        self._open_until = self._clock() + self._cool_down

    def succeeded(self) -> None:
        self._open_until = float("-inf")


CIRCUIT = DlqCircuit()  # one per process: prefork children each keep their own


def dead_letter_order(
    writer: AggregateWriter, publisher: DeadLetterPublisher, letter: DeadLetter, order_id: str | None
) -> Outcome:
    """Dead-letter one order unless it was counted or its letter already went out.

    ``order_id`` is None for a payload too malformed to name an order: its letter is sent unclaimed.
    Raises DeadLetterNotDelivered (the caller requeues the order) and redis errors.
    """
    if order_id is not None:
        claim = writer.claim_dead_letter(order_id, letter.error_class, letter.error_message)
        if claim.state == "counted":
            return "counted"
        if claim.state == "published":
            return "already_published"
        # A later copy sends the letter the first claim described, not its own "claimed" error.
        letter = replace(letter, error_class=claim.error_class, error_message=claim.error_message)
    CIRCUIT.check()
    try:
        publisher.deliver([letter])
    except DeadLetterNotDelivered:
        CIRCUIT.failed()
        raise
    CIRCUIT.succeeded()
    if order_id is not None:
        writer.mark_dead_lettered(order_id)
    return "published"
