"""Per-batch publisher confirms (bridge/amqp_handoff.py) against a scripted channel: acks, nacks, returns."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from kombu.exceptions import OperationalError

from bridge.amqp_handoff import BatchConfirms


class Channel:
    """Records confirm_select; ``drain_events`` plays the broker's next scripted frames."""

    def __init__(self) -> None:
        self.events: dict[str, set[Callable[..., None]]] = defaultdict(set)
        self.selected = False
        self.frames: list[tuple[str, tuple[Any, ...]]] = []
        self.connection = self

    def confirm_select(self) -> None:
        self.selected = True

    def drain_events(self, timeout: float) -> None:
        if not self.frames:
            raise TimeoutError("no frame")  # socket.timeout is an alias of TimeoutError
        event, args = self.frames.pop(0)
        for callback in self.events[event]:
            callback(*args)


def _published(n: int) -> tuple[Channel, BatchConfirms]:
    channel = Channel()
    confirms = BatchConfirms(channel)
    for _ in range(n):
        confirms.published()
    return channel, confirms


def test_a_multiple_ack_confirms_every_message_up_to_its_tag() -> None:
    channel, confirms = _published(5)
    assert channel.selected
    channel.frames = [("basic_ack", (3, True)), ("basic_ack", (5, False)), ("basic_ack", (4, False))]
    confirms.wait(1)
    assert channel.frames == []


def test_the_wait_lasts_until_the_last_message_is_confirmed() -> None:
    channel, confirms = _published(3)
    channel.frames = [("basic_ack", (1, False)), ("basic_ack", (2, False))]
    with pytest.raises(TimeoutError):  # the third never came: the bridge retries the batch
        confirms.wait(1)


def test_a_nacked_message_fails_the_batch() -> None:
    channel, confirms = _published(2)
    channel.frames = [("basic_ack", (1, False)), ("basic_nack", (2, False))]
    with pytest.raises(OperationalError, match="nacked"):
        confirms.wait(1)


def test_a_returned_message_fails_the_batch_though_it_is_acked() -> None:
    channel, confirms = _published(1)
    channel.frames = [("basic_return", (Exception("NO_ROUTE"), "", "q", None)), ("basic_ack", (1, False))]
    with pytest.raises(OperationalError, match="unroutable"):
        confirms.wait(1)


def test_tags_continue_across_batches_on_one_channel() -> None:
    channel, confirms = _published(2)
    channel.frames = [("basic_ack", (2, True))]
    confirms.wait(1)
    confirms.published()  # tag 3
    channel.frames = [("basic_ack", (2, True))]  # a stale ack confirms nothing new
    with pytest.raises(TimeoutError):
        confirms.wait(1)
    channel.frames = [("basic_ack", (3, False))]
    confirms.wait(1)
