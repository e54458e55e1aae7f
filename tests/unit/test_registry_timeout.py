"""A schema registry that stops answering (a silent network partition, a frozen process) is given up on in
bounded time, so the bridge says so and retries instead of hanging with its batch.

The peer here accepts connections (the kernel completes the handshake) and never answers a byte: what
a client sees of a server behind a link that drops packets once a connection is up.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from orders.core.codec import OrderCodec
from orders.core.errors import RegistryUnavailable
from orders.core.kafka import REGISTRY_TIMEOUT, create_registry_client
from orders.core.settings import Settings

# A record framed with schema id 7, which the codec must fetch before it can read the body.
FRAMED = b"\x00\x00\x00\x00\x07\x02a\x02b\x00\x00\x80\x3f"


@pytest.fixture
def silent_registry() -> Iterator[str]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_a_registry_that_never_answers_is_given_up_on_in_bounded_time(silent_registry: str) -> None:
    settings = Settings.from_env({"SCHEMA_REGISTRY_URL": silent_registry}, env_file=None)
    codec = OrderCodec(create_registry_client(settings), "orders")
    outcome: list[BaseException | None] = []

    def decode() -> None:
        try:
            codec.decode(FRAMED)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=decode, daemon=True)  # before: it hung here for good
    thread.start()
    thread.join(REGISTRY_TIMEOUT * 6)
    waited = time.monotonic() - started
    assert not thread.is_alive(), f"the decode still waits for the registry after {waited:.0f}s"
    assert isinstance(outcome[0], RegistryUnavailable), outcome
    print(f"given up after {time.monotonic() - started:.1f}s: {outcome[0]}")
