"""The capacity plan's arithmetic and its generated block in docs/scaling.md (prose around it kept)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orders.bench.capacity import BEGIN, END, capacity_markdown, cores, saturation, write_capacity


def _results() -> dict:  # type: ignore[type-arg]
    def cost(**parts: float) -> dict:  # type: ignore[type-arg]
        return {"label": "x", "components": {k: {"median": v} for k, v in parts.items()}}

    return {
        "command": "orders bench --orders 20000",
        "started": "2026-01-01T00:00:00Z",
        "cost": {
            "drain": cost(bridge=100.0, workers=450.0, redis=125.0, redis_server=90.0),
            "e2e": cost(producer=80.0),
            "drain_apache": cost(broker=60.0),
            "drain_rabbitmq": cost(redis=50.0, celery_broker=200.0, workers=500.0, bridge=150.0),
        },
    }


def test_cores_and_saturation() -> None:
    assert cores(10_000, 450.0) == pytest.approx(4.5)
    assert cores(100_000, 100.0) == pytest.approx(10.0)
    assert saturation(125.0) == pytest.approx(8_000.0)


def test_the_block_lists_every_component_and_where_redis_saturates() -> None:
    text = capacity_markdown(_results())
    assert "| Celery workers (solo pool) | 450 (`drain`) | 4.5 (7) | 45.0 (65) |" in text
    assert "| bridges | 100 (`drain`) | 1.0 (2) | 10.0 (15) |" in text
    assert "| RabbitMQ: Celery broker | 200 (`drain_rabbitmq`) | 2.0 (3) | 20.0 (29) |" in text
    assert "aggregate + Celery broker: 125 µs of Redis CPU per order (90 µs of it executing" in text
    assert "saturated at ~8,000 orders/s, ~5,600 at 70% busy" in text
    assert "aggregate only: 50 µs" in text and "~20,000 orders/s" in text


def test_the_block_is_replaced_and_the_prose_kept(tmp_path: Path) -> None:
    doc = tmp_path / "scaling.md"
    doc.write_text(f"# Scaling\n\nBy hand, before.\n\n{BEGIN}\nold figures\n{END}\n\nBy hand, after.\n")
    write_capacity(_results(), doc)
    text = doc.read_text()
    assert "old figures" not in text
    assert text.startswith("# Scaling\n\nBy hand, before.\n\n" + BEGIN)
    assert text.endswith(END + "\n\nBy hand, after.\n")
    assert text.count(BEGIN) == 1


def test_a_document_without_the_block_gets_one(tmp_path: Path) -> None:
    doc = tmp_path / "scaling.md"
    write_capacity(_results(), doc)
    assert doc.read_text().startswith("# Scaling\n\n" + BEGIN)
