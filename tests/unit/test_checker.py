"""The independent checker (tests/checker/) finds each kind of wrong end state, and shares no code with
the suite's audit or the product's codec and aggregate reads."""

from __future__ import annotations

import ast
import dataclasses
from collections import Counter
from decimal import Decimal
from pathlib import Path
from unittest import mock

import pytest

from tests.checker.reader import Record
from tests.checker.redis_state import RedisState
from tests.checker.verdict import Target, _Letters, _Topics, judge

CHECKER = Path(__file__).resolve().parents[1] / "checker"
TARGET = Target("kafka:9092", "orders", "orders-dlq", "http://registry", "redis://redis/0")


def topics(*orders: tuple[str, str]) -> _Topics:
    prices = {order_id: Decimal(price) for order_id, price in orders}
    first = {order_id: Record(0, i, None, None, (), 1_000_000) for i, (order_id, _) in enumerate(orders)}
    return _Topics(prices, first, 0, [])


def letters(*order_ids: str) -> _Letters:
    return _Letters(Counter(order_ids), dict.fromkeys(order_ids, 1001.0), set())


def state(count: int, total: str, counted: set[str]) -> RedisState:
    return RedisState(count, Decimal(total), frozenset(counted), frozenset())


def verdict_of(t: _Topics, dead: _Letters, redis_state: RedisState):  # type: ignore[no-untyped-def]
    with mock.patch("tests.checker.verdict.counted_at", return_value={}):  # no Redis here
        return judge(t, dead, redis_state, TARGET)


def test_a_clean_run_is_clean() -> None:
    verdict = verdict_of(topics(("a", "1.00"), ("b", "2.50"), ("c", "9.99")), letters("c"),
                         state(2, "3.50", {"a", "b"}))  # fmt: skip
    assert verdict.problems() == []
    assert (verdict.counted, verdict.dead_lettered, verdict.sum_exact, verdict.average_exact) == (
        2,
        1,
        True,
        True,
    )


@pytest.mark.parametrize(
    ("dead", "redis_state", "problem"),
    [
        (letters(), state(1, "1.00", {"a"}), "lost: 1"),  # b neither counted nor dead-lettered
        (letters(), state(3, "4.50", {"a", "b"}), "counted twice: 1"),
        (letters(), state(3, "8.50", {"a", "b", "z"}), "counted but never produced: 1"),
        (letters("b"), state(2, "3.50", {"a", "b"}), "dead-lettered and counted: 1"),
        (letters(), state(2, "3.51", {"a", "b"}), "aggregate not exact"),
    ],
)
def test_each_wrong_end_state_is_reported(dead: _Letters, redis_state: RedisState, problem: str) -> None:
    verdict = verdict_of(topics(("a", "1.00"), ("b", "2.50")), dead, redis_state)
    assert any(found.startswith(problem) for found in verdict.problems()), verdict.problems()


def test_an_acknowledged_order_missing_from_the_topic_is_reported() -> None:
    target = dataclasses.replace(TARGET, acknowledged=3)
    with mock.patch("tests.checker.verdict.counted_at", return_value={}):
        verdict = judge(topics(("a", "1.00"), ("b", "2.50")), letters(), state(2, "3.50", {"a", "b"}), target)
    assert "acknowledged but not on the topic: 1" in verdict.problems()


def test_the_checker_imports_nothing_of_the_audit_or_the_product() -> None:
    forbidden = ("tests.reliability", "orders", "bridge", "worker")
    for path in CHECKER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
