"""`orders up` in the foreground: start the stack, show it, wait while every child lives, stop it in order.

It sits above stack.py (the children) and view.py (what is shown): it imports both and neither imports
it, so the dependencies point one way (an import-linter contract keeps them acyclic).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from orders.core.process import stop_on_signals
from orders.core.settings import Settings
from orders.stack.options import StackOptions
from orders.stack.stack import Stack, new_stack, start_pipeline, start_services
from orders.stack.supervisor import Service
from orders.stack.view import StatusLine, print_death, print_summary


def wait_while_healthy(stack: Stack, tick: Callable[[], None], stop: Callable[[], bool]) -> Service | None:
    """Run ``tick`` each second until ``stop()``; return the child that died, if one did."""
    while not stop():
        dead = stack.dead_child()
        if dead is not None:
            return dead
        tick()
        time.sleep(1.0)
    return None


def run_stack(settings: Settings, options: StackOptions) -> int:
    """Start everything, show the summary and a live status line, stop in order. Returns the exit code."""
    # Ctrl-C and SIGTERM end the status loop; the `finally` then stops the children in order.
    stop_requested = threading.Event()
    stop_on_signals(stop_requested.set)
    stack = new_stack(settings, options)
    try:
        start_services(stack)
        start_pipeline(stack)
        stack.write_state()
        print_summary(stack)
        with StatusLine(stack) as status:
            dead = wait_while_healthy(stack, status.refresh, stop_requested.is_set)
        if dead is not None:
            print_death(dead)
            return 1
        return 0
    finally:
        stack.stop()
