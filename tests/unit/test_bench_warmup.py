"""When the bench stops warming a new JVM broker up: once its JIT compiler threads have gone quiet."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orders.bench.warmup import MAX_ROUNDS, compiler_cpu_seconds, warmed


@pytest.mark.parametrize(
    ("shares", "done"),
    [
        ([], False),  # nothing measured yet
        ([0.36], False),  # compiling the request path (a new broker's first round here)
        ([0.36, 0.29, 0.12], False),
        ([0.36, 0.29, 0.12, 0.03], True),  # quiet: compiled
    ],
)
def test_warm_once_the_jit_compiler_goes_quiet(shares: list[float], done: bool) -> None:
    assert warmed(shares) is done


def test_warm_up_is_bounded_even_if_the_compiler_never_goes_quiet() -> None:
    assert not warmed([0.3] * (MAX_ROUNDS - 1))
    assert warmed([0.3] * MAX_ROUNDS)


def _thread(proc: Path, tid: int, name: str, utime: int, stime: int) -> None:
    task = proc / "42" / "task" / str(tid)
    task.mkdir(parents=True)
    (task / "comm").write_text(name + "\n")
    # The name in parentheses may hold spaces and ")": fields are counted after the last ")".
    fields = ["S", *["0"] * 10, str(utime), str(stime), *["0"] * 30]
    (task / "stat").write_text(f"{tid} ({name}) " + " ".join(fields) + "\n")


def test_compiler_cpu_counts_only_the_jit_threads(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    _thread(tmp_path, 1, "C2 CompilerThre", 3 * ticks, ticks)
    _thread(tmp_path, 2, "C1 CompilerThre", ticks, 0)
    _thread(tmp_path, 3, "data-plane-kafk", 50 * ticks, 9 * ticks)  # the broker's own work: not counted
    assert compiler_cpu_seconds(42, tmp_path) == pytest.approx(5.0)


def test_compiler_cpu_is_unknown_without_the_process(tmp_path: Path) -> None:
    assert compiler_cpu_seconds(42, tmp_path) is None
