"""One contract of the fast path with a library's internals, and the message it fails with."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import pytest

# The versions every contract here was last checked against. Raise them with the pins in pyproject.toml,
# once `make canary` passes on the new versions.
CHECKED_AGAINST = {
    "kombu": "5.7.0",
    "celery": "5.7.0",
    "billiard": "4.3.2",
    "amqp": "5.4.2",
    "redis": "8.2.0",
}
# What a missing or changed internal raises when touched: each becomes the contract's message.
BROKEN = (AssertionError, AttributeError, TypeError, KeyError, ValueError, ImportError, LookupError)


@dataclass(frozen=True)
class Contract:
    """A private name or behaviour of ``package`` that ``user`` relies on for ``why``."""

    id: str  # as worker/fast_path.py's docstring lists it
    package: str  # the distribution: kombu, celery, billiard, amqp or redis
    what: str
    user: str
    why: str
    reread: str  # the upstream file and functions to read again when it breaks

    def message(self, problem: str) -> str:
        checked = ", ".join(f"{name} {v}" for name, v in CHECKED_AGAINST.items())
        return (
            f"contract {self.id} broken on {self.package} {installed(self.package)}: {self.what} is gone or "
            f"changed ({problem}).\n"
            f"{self.user} relies on it for {self.why}.\n"
            f"Re-read {self.reread}.\n"
            f"Last checked against {checked}. " + self._until_fixed()
        )

    def _until_fixed(self) -> str:
        if self.package == "redis":  # the Cluster client has no stock lane: pin redis below the break
            return "Until it is fixed, pin redis to the last version checked (pyproject.toml)."
        return (
            "Until the override is fixed, ORDERS_STOCK_CELERY=true runs without the fast path "
            "(worker/fast_path.py)."
        )

    @contextmanager
    def holds(self) -> Iterator[None]:
        """Fail with :meth:`message` if the block finds the contract broken."""
        problem = None
        try:
            yield
        except BROKEN as exc:
            # The first line: an assert's own message, or pytest's one-line comparison.
            problem = f"{type(exc).__name__}: {str(exc).strip().partition(chr(10))[0][:400]}"
        if problem is not None:  # from None: the message alone, no chained traceback above it
            raise pytest.fail.Exception(self.message(problem), pytrace=False) from None


def installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"
