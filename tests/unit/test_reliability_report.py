"""docs/reliability.md is written from a str.format template: a brace in its prose must be doubled, or
writing the report fails after a whole run (a KeyError at the end of `--reliability-report`)."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.accounting import Accounting
from tests.reliability.report import Collector, Row


def test_the_report_is_written_with_its_rows_and_notes(tmp_path: Path) -> None:
    collector = Collector()
    figures = Accounting(produced=10, succeeded=9, dlq=1, lost=0, counted_twice=0)
    collector.add(Row("18", "short", "cluster", figures, 1.5, 60.0, "seed 1"))
    path = tmp_path / "reliability.md"
    collector.write(path)
    text = path.read_text()
    assert "| 18. nemesis" in text and "seed 1" in text
    assert "{notalive, ...}" in text  # the Q2 note's Erlang term, braces and all
