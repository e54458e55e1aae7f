"""worker/group_commit.py: which writes join a tick, and what a flush hands back."""

from __future__ import annotations

import contextlib
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


def run_tick(writer: Writer, deliveries: list[tuple[str, bool]]) -> tuple[list[str], list[bool]]:
    """Deliver (tag, redelivered) messages whose tasks try to join; commit the tick: what it hands back,
    and the outcomes it reported."""
    group_commit.enable(group_commit.Setup(lambda: writer))
    tick = group_commit.open_tick()
    assert tick is not None
    outcomes: list[bool] = []
    for tag, redelivered in deliveries:
        tick.deliver(message(tag, redelivered))
        group_commit.join((f"order-{tag}", "p", 100), outcomes.append)
    group_commit.close_tick(tick)
    return tick.commit(), outcomes


def test_a_ticks_writes_go_in_one_batch() -> None:
    writer = Writer()
    assert run_tick(writer, [("a", False), ("b", False), ("c", False)]) == ([], [True, True, True])
    assert writer.batches == [["order-a", "order-b", "order-c"]]


def test_a_redelivered_message_writes_on_its_own() -> None:
    writer = Writer()
    assert run_tick(writer, [("a", False), ("b", True)]) == ([], [True])
    assert writer.batches == [["order-a"]]


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
def test_a_refused_flush_hands_the_whole_batch_back(refusal: Exception) -> None:
    assert run_tick(Writer(refusal), [("a", False), ("b", True), ("c", False)]) == (["a", "c"], [])


def test_an_order_claimed_for_the_dlq_is_handed_back_alone() -> None:
    def answer(order_id: str) -> bool | Exception:
        return ClaimedForDeadLetter(order_id) if order_id == "order-b" else False

    assert run_tick(Writer(answer), [("a", False), ("b", False)]) == (["b"], [False])  # a: a duplicate


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


def test_a_traced_attempt_is_ended_by_the_flush_with_its_outcome() -> None:
    ended: list[tuple[str, str, str]] = []
    flushed: list[list[str]] = []

    @contextlib.contextmanager
    def flush_spans(attempts: list[str]) -> Iterator[None]:
        flushed.append(attempts)
        yield

    def end_attempt(attempt: str, outcome: str, error: BaseException | None) -> None:
        ended.append((attempt, outcome, type(error).__name__))

    traced = group_commit.Tracing(flush_spans, end_attempt)
    for answer, outcome in [
        (True, "succeeded"),
        (False, "duplicate"),
        (Unwritable("NOREPLICAS"), "handed_back"),
    ]:
        group_commit.enable(group_commit.Setup(lambda a=answer: Writer(a), tracing=traced))  # type: ignore[misc]
        tick = group_commit.open_tick()
        assert tick is not None
        tick.deliver(message("a"))
        assert group_commit.join(("order-a", "p", 1), lambda _: None, lambda: "span-a")
        group_commit.close_tick(tick)
        tick.commit()
        assert ended[-1][:2] == ("span-a", outcome)
    assert flushed == [["span-a"], ["span-a"], ["span-a"]]
    assert ended[-1][2] == "Unwritable"
