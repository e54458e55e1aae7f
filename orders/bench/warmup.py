"""Warming a JVM broker up before it is measured.

A freshly started Apache Kafka broker spends its first minute or so compiling its request path: on
this 2-core machine its JIT compiler threads took 0.3-0.4 of a core for ~60 s, and paced runs
measured one after the other on the same new broker gave p99 578, 365, 156, 113 ms while the
broker's CPU per order fell from 993 to 290 µs. A broker in service has long been compiled, so the
bench runs unmeasured pipeline rounds on the lane (same requests: idempotent produce, group fetch,
offset commits) until the JVM's compiler threads have gone quiet, and only then measures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from orders.bench.lanes import Lane
from orders.bench.phases import measure_e2e
from orders.bench.rig import Rig

WARM_UP_ORDERS = 8000
WARM_UP_RATE = 1000.0  # orders/s when no half-load rate is known yet
MAX_ROUNDS = 8
# Warm once the JIT compiler threads used less than this share of a core over a round (steady state
# here: 0.01-0.03; while compiling the request path: 0.2-0.4).
QUIET_COMPILER = 0.05
COMPILER_THREADS = ("C1 CompilerThre", "C2 CompilerThre")  # HotSpot's names, cut to 15 characters


def compiler_cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float | None:
    """CPU seconds the JVM ``pid``'s JIT compiler threads used so far; None where /proc cannot say."""
    total = 0
    try:
        tasks = list((proc / str(pid) / "task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            if not (task / "comm").read_text().startswith(COMPILER_THREADS):
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def warmed(compiler_share: list[float]) -> bool:
    """Whether the JIT went quiet: the compiler threads' share of a core in each round so far."""
    return len(compiler_share) >= MAX_ROUNDS or bool(compiler_share and compiler_share[-1] < QUIET_COMPILER)


def warm_up_broker(
    rig: Rig, lane: Lane, workers: int, rate: float, report: Callable[[list[float]], None]
) -> list[float]:
    """Unmeasured paced pipeline rounds on ``lane`` until :func:`warmed`; the compiler's share in each
    (summed over the brokers of a cluster)."""
    pids = rig.kafka(lane).pids
    shares: list[float] = []
    while not warmed(shares):
        before, started = _compiler_seconds(pids), time.monotonic()
        measure_e2e(rig, WARM_UP_ORDERS, workers, lane, rate=rate)
        after = _compiler_seconds(pids)
        if before is None or after is None:
            break  # a broker given as an endpoint, or no /proc: nothing to watch
        shares.append((after - before) / (time.monotonic() - started))
        report(shares)
    return shares


def _compiler_seconds(pids: list[int]) -> float | None:
    each = [compiler_cpu_seconds(pid) for pid in pids]
    return None if not each or None in each else sum(e for e in each if e is not None)
