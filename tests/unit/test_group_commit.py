"""worker/group_commit.py: which writes join a tick, and what a flush releases or hands back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import redis

from orders.core.redis_client import ReplicasBehind, Unwritable
from worker import fast_path, group_commit
from worker.aggregate import ClaimedForDeadLetter
from worker.settings import WorkerSettings


class Writer:
    """Answers each batch with ``answer`` (per order) or raises it (the whole batch)."""

    def __init__(self, answer: object = True) -> None:
        self.answer = answer
        self.batches: list[list[str]] = []

    def record_orders(self, orders: Sequence[group_commit.OrderWrite]) -> list[bool | Exception]:
        self.batches.append([order[0] for order in orders])
        if isinstance(self.answer, Exception):
            raise self.answer
        if callable(self.answer):
            return [self.answer(order[0]) for order in orders]
        return [bool(self.answer)] * len(orders)


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(group_commit, "HAND_BACK_PAUSE", 0)
    yield
    group_commit.disable()
    group_commit._OPEN.clear()


def message(tag: str, redelivered: bool = False) -> dict[str, object]:
    info = {"exchange": "", "routing_key": "q", **({"redelivered": True} if redelivered else {})}
    return {"properties": {"delivery_tag": tag, "delivery_info": info}}


def run_tick(
    writer: Writer, deliveries: list[tuple[str, bool, bool]]
) -> tuple[group_commit.Settled, list[bool]]:
    """Deliver (tag, redelivered, acked) messages whose tasks try to join; commit the tick."""
    group_commit.enable(group_commit.Setup(lambda: writer))
    tick = group_commit.open_tick()
    assert tick is not None
    outcomes: list[bool] = []
    for tag, redelivered, acked in deliveries:
        tick.deliver(message(tag, redelivered))
        group_commit.join((f"order-{tag}", "p", 100), outcomes.append)
        if acked:
            tick.acks.append(tag)
    group_commit.close_tick(tick)
    return tick.commit(), outcomes


def test_a_ticks_writes_go_in_one_batch_and_its_acks_are_released_after_it() -> None:
    writer = Writer()
    settled, outcomes = run_tick(writer, [("a", False, True), ("b", False, True), ("c", False, True)])
    assert writer.batches == [["order-a", "order-b", "order-c"]]
    assert settled == group_commit.Settled(["a", "b", "c"], [])
    assert outcomes == [True, True, True]


def test_a_redelivered_message_writes_on_its_own() -> None:
    writer = Writer()
    settled, _ = run_tick(writer, [("a", False, True), ("b", True, True)])
    assert writer.batches == [["order-a"]]
    assert sorted(settled.release) == ["a", "b"] and settled.hand_back == []


@pytest.mark.parametrize(
    "refusal",
    [
        Unwritable("NOREPLICAS Not enough good replicas to write."),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        ReplicasBehind("0 of 1 replicas acknowledged the write in time"),
        redis.ConnectionError("Connection refused"),
    ],
)
def test_a_refused_flush_hands_the_batch_back_and_releases_the_rest(refusal: Exception) -> None:
    settled, outcomes = run_tick(Writer(refusal), [("a", False, True), ("b", True, True), ("c", False, True)])
    assert settled == group_commit.Settled(["b"], ["a", "c"])
    assert outcomes == []


def test_an_order_claimed_for_the_dlq_is_handed_back_alone() -> None:
    def answer(order_id: str) -> bool | Exception:
        return ClaimedForDeadLetter(order_id) if order_id == "order-b" else False

    settled, outcomes = run_tick(Writer(answer), [("a", False, True), ("b", False, True)])
    assert settled == group_commit.Settled(["a"], ["b"])
    assert outcomes == [False]  # a: a duplicate


def test_a_write_whose_message_was_not_acked_is_not_released() -> None:
    settled, _ = run_tick(Writer(), [("a", False, True), ("b", False, False)])
    assert settled == group_commit.Settled(["a"], [])


def test_without_a_tick_or_with_group_commit_off_a_task_writes_on_its_own() -> None:
    assert not group_commit.join(("o", "p", 1), print)
    assert group_commit.open_tick() is None  # not enabled


@pytest.mark.parametrize(
    ("pool", "env", "on"),
    [
        ("solo", {}, True),
        ("prefork", {}, False),
        ("threads", {}, False),
        ("solo", {"WORKER_GROUP_COMMIT": "false"}, False),
        ("solo", {"ORDERS_STOCK_CELERY": "true"}, False),
    ],
)
def test_group_commit_is_on_for_the_solo_pool_only(pool: str, env: dict[str, str], on: bool) -> None:
    settings = WorkerSettings.from_env(env, env_file=None)
    assert fast_path.install_group_commit(settings, pool, Writer) is on
    assert (group_commit.open_tick() is not None) is on
