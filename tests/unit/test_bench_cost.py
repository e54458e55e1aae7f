"""The bench's cost window against real processes: a busy child is counted, other work is told apart."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from orders.bench.cost import CostWindow

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


class NoRedis:
    def info(self, section: str) -> dict[str, Any]:
        return {}


def _burner(seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", BURN.format(seconds=seconds)])


def test_a_components_cpu_and_other_work_on_the_machine_are_told_apart() -> None:
    ours = _burner(5.0)  # a run's process: alive until the window closes, as the bench's are
    window = CostWindow({"workers": [ours.pid]}, NoRedis())  # type: ignore[arg-type]
    window.start()
    theirs = _burner(0.4)  # other work on the machine, all of it inside the window
    assert theirs.wait(10) == 0
    time.sleep(0.3)
    cost = window.stop(orders=1000)
    ours.kill()
    ours.wait()
    assert cost.cpu["workers"] > 0.05
    assert cost.per_order_us()["workers"] == pytest.approx(cost.cpu["workers"] * 1000)
    # theirs burned 0.4 s of CPU: seen as other work, not ours, not the bench's (other tests running
    # beside this one only add to it)
    assert cost.other_cores * cost.seconds >= 0.35
