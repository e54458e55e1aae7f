"""A seeded schedule of faults: what to break, when, and when to heal it; pure, so a seed replays it.

Safety rules, so the cluster keeps a majority and the pipeline keeps a way forward (Jepsen's nemeses
do the same): at most two faults are active at once, and never two on the same group. A group is the
Kafka brokers, the Redis data nodes (the Sentinel set), the RabbitMQ nodes, the workers or the bridges:
so at most one of three nodes of each cluster is ever down or cut off (2 of 3 remain, a majority), and one
of the two workers and one of the two bridges is always left alone. A cut (a client from one server)
takes both its groups. Every fault is healed before the run ends.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

# kill: SIGKILL, restarted at the heal; pause: SIGSTOP, SIGCONT at the heal; isolate: the node's link
# down (silent); cut: packets between one client (a worker or a bridge) and one server dropped.
KINDS = ("kill", "pause", "isolate", "cut")
MAX_ACTIVE = 2
CLIENT_GROUPS = ("worker", "bridge")
SERVER_GROUPS = ("kafka", "redis", "rabbit")


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the run's start
    kind: str
    target: str  # a process or node name: worker-solo, bridge1, kafka2, redis0, ...
    heal_at: float
    server: str | None = None  # a cut's other end

    def groups(self) -> frozenset[str]:
        return frozenset(group_of(t) for t in (self.target, self.server) if t is not None)

    def active_at(self, t: float) -> bool:
        return self.at <= t < self.heal_at

    def label(self) -> str:
        return f"{self.kind} {self.target}" + (f" from {self.server}" if self.server else "")


@dataclass(frozen=True)
class Timing:
    """The schedule's pace: a gap between two fault starts, and how long a fault lasts (seconds)."""

    seconds: float  # faults start and heal within [0, seconds]
    gap: tuple[float, float] = (3.0, 8.0)
    duration: tuple[float, float] = (4.0, 25.0)  # long enough, at the top, to outlast session timeouts


def group_of(target: str) -> str:
    """``worker-solo`` -> worker, ``kafka2`` -> kafka."""
    return target.split("-")[0].rstrip("0123456789")


def make_schedule(seed: int, targets: Sequence[str], timing: Timing) -> list[Fault]:
    """The faults of one run, in start order; the same seed and targets give the same list."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    t = rng.uniform(*timing.gap)
    while t + timing.duration[0] <= timing.seconds:
        busy = [f for f in faults if f.active_at(t)]
        fault = _pick(rng, t, targets, busy, timing) if len(busy) < MAX_ACTIVE else None
        if fault is not None:
            faults.append(fault)
        t += rng.uniform(*timing.gap)
    return faults


def _pick(
    rng: random.Random, t: float, targets: Sequence[str], busy: list[Fault], timing: Timing
) -> Fault | None:
    taken = frozenset().union(*(f.groups() for f in busy))
    kind = rng.choice(KINDS)
    heal_at = min(t + rng.uniform(*timing.duration), timing.seconds)
    free = [name for name in targets if group_of(name) not in taken]
    if kind == "cut":
        clients = [n for n in free if group_of(n) in CLIENT_GROUPS]
        servers = [n for n in free if group_of(n) in SERVER_GROUPS]
        if not clients or not servers:
            return None
        return Fault(round(t, 2), kind, rng.choice(clients), round(heal_at, 2), rng.choice(servers))
    if not free:
        return None
    return Fault(round(t, 2), kind, rng.choice(free), round(heal_at, 2))


def counts_by_kind(faults: Sequence[Fault]) -> dict[str, int]:
    """``{"kill kafka": 3, "cut worker/redis": 2, ...}``: what the run did, by kind and group."""
    counts: dict[str, int] = {}
    for fault in faults:
        key = f"{fault.kind} {'/'.join(group_of(t) for t in (fault.target, fault.server) if t)}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
