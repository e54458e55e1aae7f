"""DLQ tools, pure parts: header parsing, filters, replay decisions and positions, table rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orders.core import dead_letter as dl
from orders.dlq.command import COLUMNS, table_row
from orders.dlq.reader import DeadLetterFilter, DeadLetterView, header_map, parse_time, view_from_headers
from orders.dlq.replay import decide, next_positions

FAILED_AT = "2024-05-01T12:30:00.123+00:00"


def headers(**overrides: str) -> dict[str, str]:
    fields = {
        dl.HEADER_TOPIC: "orders",
        dl.HEADER_PARTITION: "2",
        dl.HEADER_OFFSET: "41",
        dl.HEADER_STAGE: "process",
        dl.HEADER_EXC_CLASS: "orders.core.errors.PermanentError",
        dl.HEADER_EXC_MESSAGE: "injected permanent failure",
        dl.HEADER_ATTEMPTS: "4",
        dl.HEADER_FAILED_AT: FAILED_AT,
    }
    return {**fields, **overrides}


RECORD = {"orderId": "o-1", "product": "Laptop", "price": 19.989999771118164}  # 19.99 as a float32


def view(offset: int = 0, partition: int = 0, rejection: str | None = None, **header_overrides: str):  # type: ignore[no-untyped-def]
    return view_from_headers(headers(**header_overrides), b"o-1", RECORD, partition, offset, rejection)


def test_header_map_decodes_utf8_and_tolerates_empty_values() -> None:
    raw = [(dl.HEADER_STAGE, b"decode"), (dl.HEADER_TASK_ID, None), ("x", "caf\xe9".encode("latin-1"))]
    assert header_map(raw) == {dl.HEADER_STAGE: "decode", dl.HEADER_TASK_ID: "", "x": "caf\ufffd"}
    assert header_map(None) == {}


def test_view_from_headers_of_a_process_failure() -> None:
    v = view(offset=7, partition=1)
    assert (v.order_id, v.product, v.price) == ("o-1", "Laptop", "19.99")
    assert (v.stage, v.error_class, v.attempts) == ("process", "orders.core.errors.PermanentError", 4)
    assert v.failed_at == datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=UTC)
    assert (v.original_topic, v.original_partition, v.original_offset) == ("orders", 2, 41)
    assert (v.dlq_partition, v.dlq_offset, v.rejection) == (1, 7, None)
    assert v.to_json()["replayable"] is True
    assert v.to_json()["failed_at"] == "2024-05-01T12:30:00.123000+00:00"


def test_undecodable_record_shows_its_key_and_blanks() -> None:
    v = view_from_headers(
        headers(**{dl.HEADER_STAGE: "decode", dl.HEADER_ATTEMPTS: "x"}), b"garbage", None, 0, 3, "decode: bad"
    )
    assert (v.order_id, v.product, v.price, v.attempts) == ("garbage", "", "", None)
    assert v.to_json()["replayable"] is False


def test_invalid_price_is_shown_as_it_is() -> None:
    v = view_from_headers(headers(), None, {**RECORD, "price": float("nan")}, 0, 0, "validate: finite")
    assert v.price == "nan"


def test_missing_headers_leave_blanks() -> None:
    v = view_from_headers({}, None, None, 0, 0)
    assert (v.order_id, v.stage, v.error_class, v.attempts, v.failed_at) == ("", "", "", None, None)
    assert table_row(v) == ("", "", "", "", "", "", "", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (FAILED_AT, datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=UTC)),
        ("2024-05-01T12:30:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),  # naive: taken as UTC
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(text: str | None, expected: datetime | None) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("flt", "matches"),
    [
        (DeadLetterFilter(), True),
        (DeadLetterFilter(stages=frozenset({"process"})), True),
        (DeadLetterFilter(stages=frozenset({"decode", "validate"})), False),
        (DeadLetterFilter(error="PERMANENT"), True),  # case-insensitive, class name
        (DeadLetterFilter(error="permanent failure"), True),  # message
        (DeadLetterFilter(error="Error: injected"), True),  # across "<class>: <message>"
        (DeadLetterFilter(error="transient"), False),
        (DeadLetterFilter(order_ids=frozenset({"o-1", "o-2"})), True),
        (DeadLetterFilter(order_ids=frozenset({"o-2"})), False),
        (DeadLetterFilter(since=datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=UTC)), True),  # inclusive
        (DeadLetterFilter(since=datetime(2024, 5, 1, 12, 31, tzinfo=UTC)), False),
        (DeadLetterFilter(until=datetime(2024, 5, 1, 12, 30, 0, 123000, tzinfo=UTC)), False),  # exclusive
        (DeadLetterFilter(until=datetime(2024, 5, 2, tzinfo=UTC)), True),
        (DeadLetterFilter(stages=frozenset({"process"}), order_ids=frozenset({"o-2"})), False),  # all hold
    ],
)
def test_filter(flt: DeadLetterFilter, matches: bool) -> None:
    assert flt.matches(view()) is matches


def test_time_filters_exclude_records_without_a_failure_time() -> None:
    undated = view(**{dl.HEADER_FAILED_AT: "garbled"})
    assert DeadLetterFilter().matches(undated)
    assert not DeadLetterFilter(since=datetime(2000, 1, 1, tzinfo=UTC)).matches(undated)
    assert not DeadLetterFilter(until=datetime(2100, 1, 1, tzinfo=UTC)).matches(undated)


@pytest.mark.parametrize(
    ("v", "flt", "outcome"),
    [
        (view(), DeadLetterFilter(), "replayed"),
        (view(rejection="decode: unknown schema id 9"), DeadLetterFilter(), "unreplayable"),
        (view(rejection="decode: bad"), DeadLetterFilter(stages=frozenset({"decode"})), "skipped"),  # stage
        (view(), DeadLetterFilter(order_ids=frozenset({"other"})), "skipped"),
    ],
)
def test_decide(v: DeadLetterView, flt: DeadLetterFilter, outcome: str) -> None:
    assert decide(v, flt) == outcome


def test_positions_advance_over_replayed_and_unreplayable_records() -> None:
    views = [view(offset=o) for o in (5, 6, 7)]
    held: dict[int, int] = {}
    assert next_positions(views, ["replayed", "unreplayable", "replayed"], held) == {0: 8}
    assert held == {}


def test_positions_stop_at_the_first_skipped_or_failed_record_per_partition() -> None:
    views = [view(offset=0, partition=0), view(offset=1, partition=0), view(offset=2, partition=0)]
    views += [view(offset=10, partition=1), view(offset=11, partition=1)]
    held: dict[int, int] = {}
    outcomes = ["replayed", "skipped", "replayed", "replayed", "failed"]
    assert next_positions(views, outcomes, held) == {0: 1, 1: 11}  # type: ignore[arg-type]
    assert held == {0: 1, 1: 11}
    # A held partition stays held for the rest of the run, whatever comes later.
    assert next_positions([view(offset=3, partition=0)], ["replayed"], held) == {}


def test_table_row() -> None:
    assert len(COLUMNS) == 8
    assert table_row(view()) == (
        "o-1",
        "Laptop",
        "19.99",
        "process",
        "PermanentError: injected permanent failure",
        "4",
        "2024-05-01 12:30:00",
        "",
    )


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_letter_carrying_a_trace_shows_its_id_and_a_link_when_the_backend_is_known() -> None:
    v = view(traceparent=TRACEPARENT)
    assert v.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert v.to_json()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert table_row(v)[-1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert table_row(v, "http://127.0.0.1:9411")[-1] == (
        "[link=http://127.0.0.1:9411/zipkin/traces/4bf92f3577b34da6a3ce929d0e0e4736]"
        "4bf92f3577b34da6a3ce929d0e0e4736[/link]"
    )


@pytest.mark.parametrize("traceparent", ["", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01"])
def test_a_missing_or_invalid_traceparent_shows_no_trace(traceparent: str) -> None:
    assert view(traceparent=traceparent).trace_id is None
