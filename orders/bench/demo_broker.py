"""The demo's Kafka broker under `orders up`: its CPU and memory at the demo's paced rate, over minutes.

Not part of CI (it takes as long as it measures). It answers "which broker should `orders up` run by
default" with figures: ``python -m orders.bench.demo_broker --broker tansu --minutes 10`` starts
``orders up --no-dashboard`` at 5 orders/s in a HOME of its own (so its state file is its own), samples
the broker process's CPU time and RSS with psutil every ``--every`` seconds, prints one JSON line per
sample, then a summary line (CPU seconds per minute, CPU µs per order, RSS and its growth per minute),
and stops the stack with Ctrl-C's signal. The CPU time is the broker process's own, so other load on the
machine does not inflate it (it may still slow it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import psutil

from orders.core.aggregate import Aggregate
from orders.core.redis_client import connect
from orders.stack.services import KAFKA_JARS_CACHE

BROKER_CHILD = {"tansu": "tansu", "kafka": "kafka"}


@dataclass(frozen=True)
class Sample:
    """One reading: seconds since the pipeline ran, the broker's CPU seconds and RSS, orders consumed."""

    at: float
    cpu_s: float
    rss_mb: float
    consumed: int


def wait_for_state(home: Path, proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """`orders up`'s state file, written once the summary is printed: the pipeline is running."""
    state_file = home / ".cache" / "orders-pipeline" / "up.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(f"orders up exited with {proc.returncode}")
        if state_file.exists():
            return dict(json.loads(state_file.read_text()))
        time.sleep(0.1)
    raise click.ClickException(f"orders up was not running after {timeout:.0f} s")


def read(broker: psutil.Process, aggregate: Aggregate, started: float) -> Sample:
    cpu, rss = broker.cpu_times(), broker.memory_info().rss
    consumed = aggregate.snapshot().counters.get("consumed", 0)
    return Sample(round(time.monotonic() - started, 1), cpu.user + cpu.system, rss / 2**20, consumed)


def summary(samples: list[Sample], ready_s: float) -> dict[str, Any]:
    """CPU per minute and per order over the whole run and its first and last fifth; RSS growth."""
    first, last = samples[0], samples[-1]
    minutes = (last.at - first.at) / 60
    fifth = max(1, len(samples) // 5)

    def cpu_per_min(a: Sample, b: Sample) -> float:
        return round((b.cpu_s - a.cpu_s) / max((b.at - a.at) / 60, 1e-9), 3)

    orders = last.consumed - first.consumed
    return {
        "ready_s": round(ready_s, 1),
        "minutes": round(minutes, 2),
        "orders": orders,
        "cpu_s_per_min": cpu_per_min(first, last),
        "cpu_s_per_min_first_fifth": cpu_per_min(first, samples[fifth]),
        "cpu_s_per_min_last_fifth": cpu_per_min(samples[-1 - fifth], last),
        "cpu_us_per_order": round((last.cpu_s - first.cpu_s) / max(orders, 1) * 1e6),
        "rss_mb_start": round(first.rss_mb, 1),
        "rss_mb_end": round(last.rss_mb, 1),
        "rss_mb_growth_per_min": round((last.rss_mb - first.rss_mb) / max(minutes, 1e-9), 3),
    }


@click.command()
@click.option("--broker", type=click.Choice(sorted(BROKER_CHILD)), required=True)
@click.option("--minutes", default=10.0, show_default=True, help="How long to sample once it runs.")
@click.option("--every", default=30.0, show_default=True, help="Seconds between samples.")
@click.option("--rate", default=5.0, show_default=True, help="The demo producer's orders per second.")
def main(broker: str, minutes: float, every: float, rate: float) -> None:
    """Run `orders up --broker BROKER` and sample its broker's CPU time and RSS."""
    home = Path(tempfile.mkdtemp(prefix=f"demo-broker-{broker}-"))
    env = {**os.environ, "HOME": str(home), "ORDERS_KAFKA_JARS": str(KAFKA_JARS_CACHE)}
    argv = [sys.executable, "-m", "orders.cli", "up", "--no-dashboard", "--broker", broker,
            "--rate", str(rate)]  # fmt: skip
    launched = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        state = wait_for_state(home, proc, timeout=180)
        ready_s = time.monotonic() - launched
        process = psutil.Process(int(state["children"][BROKER_CHILD[broker]]))
        aggregate = Aggregate(connect(state["env"]["REDIS_URL"]))
        samples = [read(process, aggregate, launched + ready_s)]
        while samples[-1].at < minutes * 60:
            time.sleep(every)
            samples.append(read(process, aggregate, launched + ready_s))
            click.echo(json.dumps({"broker": broker, **asdict(samples[-1])}), err=True)
        click.echo(json.dumps({"broker": broker, "rate": rate, **summary(samples, ready_s)}))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        shutil.rmtree(home, ignore_errors=True)  # its state file; the run's logs stay in orders up's run dir


if __name__ == "__main__":
    main()
