"""The event loop a run uses: uvloop when it is installed, else asyncio's own.

On the bench's hot path the event loop is a large share of the client's CPU per
statement (measured on 2 cores, asyncpg, one-row SELECT: 34 us per query with
asyncio's loop, 14 us with uvloop), and on a small machine client CPU decides
throughput. ``$TETHER_EVENT_LOOP`` chooses: ``auto`` (default: uvloop if
importable), ``uvloop`` (required) or ``asyncio``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tether import run_host
from tether.hosts.workload._errors import BenchError

__all__ = ["EVENT_LOOP_ENV", "event_loop_name", "loop_factory", "run_with_best_loop"]

EVENT_LOOP_ENV = "TETHER_EVENT_LOOP"
T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory of the chosen event loop (see the module docstring)."""
    choice = os.environ.get(EVENT_LOOP_ENV, "auto").strip().lower() or "auto"
    if choice not in {"auto", "uvloop", "asyncio"}:
        raise BenchError(
            f"${EVENT_LOOP_ENV} must be auto, uvloop or asyncio, got {choice!r}",
            hint=f"unset {EVENT_LOOP_ENV} to use uvloop when it is installed",
        )
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":
                raise BenchError(
                    f"${EVENT_LOOP_ENV}=uvloop, but uvloop is not installed",
                    hint="pip install uvloop, or unset the variable",
                ) from None
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def run_with_best_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)`` on the loop :func:`loop_factory` chooses."""
    return run_host(coroutine, loop_factory=loop_factory())


def event_loop_name() -> str:
    """``uvloop`` or ``asyncio``: the running loop's kind."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
