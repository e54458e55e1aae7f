"""What every process's entry point does first: build the settings once, set up logging, catch signals."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import TypeVar

from orders.core.settings import Settings
from orders.core.tracing import LOG_SUFFIX, log_trace_ids
from orders.core.tracing_settings import TracingSettings

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
S = TypeVar("S", bound=Settings)
OUR_PACKAGES = frozenset({"orders", "bridge", "worker"})


class OwnRecords(logging.Filter):
    """Our records at LOG_LEVEL; a library's from WARNING up only, unless :func:`show_library_logs`.

    An HTTP client's INFO line for each registry request (a 404 among them, the normal answer to a
    lookup) reads like an error to someone watching a command; its warnings and errors still show.
    """

    libraries = False  # class-wide: logging is configured once per process

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name.partition(".")[0] in OUR_PACKAGES
        return ours or self.libraries or record.levelno >= logging.WARNING


def show_library_logs() -> None:
    """`orders -v`: this process's libraries log at LOG_LEVEL too."""
    OwnRecords.libraries = True


def start_process(kind: type[S]) -> S:
    """The process's settings (``kind``: the ones it reads) from its environment, and logging at their
    LOG_LEVEL.

    Raises :class:`~orders.core.settings.SettingsError` naming each bad variable.
    """
    settings = kind.from_env()
    log_format = LOG_FORMAT
    if isinstance(settings, TracingSettings) and settings.trace_exporter is not None:
        log_trace_ids()  # log lines carry the trace id of the span they are written in
        log_format += LOG_SUFFIX
    handler = logging.StreamHandler()
    handler.addFilter(OwnRecords())
    # Does nothing where logging is configured already (pytest's capture, an embedding program).
    logging.basicConfig(level=settings.log_level, format=log_format, handlers=[handler])
    return settings


def stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT ask for a clean stop (``stop``) instead of killing the process mid-batch."""

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s; finishing up", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
