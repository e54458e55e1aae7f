"""The A/B phases of `orders bench`: one change measured off and on in the same run, alternating.

Each A/B phase drains the same pre-filled topic ``--repeat`` times with the change off, and as many with
it on, in turns (off, on, off, on, ...), so both sides see the same machine: the results give each
side's rate and CPU per order, and the on/off ratios per pair of turns (their median and range). The
change is an environment switch for the bridge or the workers.

To add one, add an :class:`ABTest` to :data:`AB_TESTS` (its key becomes the phase name, ``--only
ab_...``); results.py, report.py and the runner pick it up. A target on one of its ratios goes in
results.py's ``TARGETS`` (``<key>_rate``, ``<key>_cpu``, ``<key>_cpu_<component>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


def _env(**values: str) -> Mapping[str, str]:
    return MappingProxyType(values)


@dataclass(frozen=True)
class Switch:
    """The environment one side of an A/B gives the bridge and the workers (on top of the run's)."""

    bridge: Mapping[str, str] = field(default_factory=_env)
    workers: Mapping[str, str] = field(default_factory=_env)


@dataclass(frozen=True)
class ABTest:
    """A change measured off and on: ``component`` is the process whose CPU per order it is about."""

    label: str
    off: Switch
    on: Switch
    component: str
    worker_loglevel: str = "WARNING"  # the bench's workers log warnings only, unless the change is logging


AB_TESTS: dict[str, ABTest] = {
    # Issue 23 part 4: the bridge's task messages built by Celery and kombu per order, or from a template.
    "ab_handoff": ABTest(
        "hand-off: messages built by Celery (off) or from the template (on)",
        off=Switch(bridge=_env(BRIDGE_HANDOFF="celery")),
        on=Switch(bridge=_env(BRIDGE_HANDOFF="template")),
        component="bridge",
    ),
    # Issue 23 part 5: Celery's two INFO lines per task (received, succeeded), workers logging at INFO.
    "ab_task_log": ABTest(
        "per-task success lines: kept (off) or dropped (on, TASK_SUCCESS_LOG=false), workers at INFO",
        off=Switch(workers=_env(TASK_SUCCESS_LOG="true")),
        on=Switch(workers=_env(TASK_SUCCESS_LOG="false")),
        component="workers",
        worker_loglevel="INFO",
    ),
    # Issue 23 parts 1-3: each order's aggregate write a round trip of its own (off), or the writes of a
    # worker's tick in one pipeline (on: worker/group_commit.py; the bench's workers run the solo pool).
    "ab_group_commit": ABTest(
        "group commit: a round trip per order (off) or one flush per tick (on)",
        off=Switch(workers=_env(WORKER_GROUP_COMMIT="false")),
        on=Switch(workers=_env(WORKER_GROUP_COMMIT="true")),
        component="workers",
    ),
}
SIDES = ("off", "on")


def side_key(key: str, side: str) -> str:
    """The figure (and cost) key of one side of an A/B phase: ``ab_handoff_off``, ``ab_handoff_on``."""
    return f"{key}_{side}"
