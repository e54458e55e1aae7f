"""What `orders bench` reads: a worker's settings, as its blocking baseline does a worker's work here."""

from __future__ import annotations

from worker.settings import WorkerSettings


class BenchSettings(WorkerSettings):
    """The shared settings (its clients, the retry countdowns) and the worker's (the dedupe window the
    baseline's aggregate writes use); the bench's children read their own from the environment."""
