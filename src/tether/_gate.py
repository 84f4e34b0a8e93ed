"""The per-plugin entry gate: every call into a plugin passes through one.

A gate counts the calls in flight (so ``stop`` can wait for them to drain), holds
new callers while the plugin reloads (up to a queue size and a timeout), rejects
them while the plugin is stopped or disabled, and records the plugin's errors.

The normal path is two atomic deque operations and one attribute read::

    gate.enter()          # or: await gate.enter_async()
    try:
        ...call the plugin...
    finally:
        gate.exit()

``deque.append`` and ``deque.pop`` are atomic in CPython, so the count stays
right when sync callers on several threads share a gate.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from tether._durations import format_duration
from tether.errors import PluginUnavailableError

__all__ = ["Gate", "GateState"]


class GateState(StrEnum):
    OPEN = "open"  # calls pass
    HELD = "held"  # calls wait (a reload is in progress)
    CLOSED = "closed"  # calls are refused (stopped, disabled, unloaded)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Gate:
    """One plugin's gate. ``is_open`` is the fast-path flag callers check."""

    __slots__ = (
        "_async_waiters",
        "_closed_reason",
        "_lock",
        "_opened",
        "_waiting",
        "calls",
        "error_count",
        "error_listeners",
        "hold_timeout",
        "is_open",
        "last_error",
        "last_error_at",
        "max_waiting",
        "plugin",
        "probes",
        "state",
        "state_listeners",
    )

    def __init__(self, plugin: str, *, hold_timeout: float = 30.0, max_waiting: int = 1000) -> None:
        self.plugin = plugin
        self.calls: deque[None] = deque()
        self.is_open = False
        self.state = GateState.CLOSED
        self.hold_timeout = hold_timeout
        self.max_waiting = max_waiting
        self.error_count = 0
        self.last_error: BaseException | None = None
        self.last_error_at: datetime | None = None
        self.error_listeners: list[Callable[[str, BaseException], None]] = []
        # Extra sources of calls in flight that do not go through ``calls`` (the service
        # proxies find theirs on thread stacks), and callbacks told of every state change.
        self.probes: list[Callable[[], int]] = []
        self.state_listeners: list[Callable[[GateState], None]] = []
        self._closed_reason = "it is not running"
        self._lock = threading.Lock()
        self._opened = threading.Event()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiting = 0

    # ------------------------------------------------------------------ state

    @property
    def in_flight(self) -> int:
        """Calls that have entered and not yet left."""
        return len(self.calls) + sum(probe() for probe in self.probes)

    @property
    def waiting(self) -> int:
        """Callers held at the gate while it is held."""
        return self._waiting

    @property
    def closed_reason(self) -> str:
        return self._closed_reason

    def open(self) -> None:
        """Let calls through, and wake everyone held."""
        with self._lock:
            self.state = GateState.OPEN
            self.is_open = True
        self._notify()
        with self._lock:
            self._wake()

    def hold(self) -> None:
        """Make new callers wait (for at most ``hold_timeout``) until ``open`` or ``close``."""
        with self._lock:
            self.state = GateState.HELD
            self.is_open = False
            self._opened.clear()
        self._notify()

    def close(self, reason: str = "it is not running") -> None:
        """Refuse new callers; callers already held are woken and refused."""
        with self._lock:
            self.state = GateState.CLOSED
            self.is_open = False
            self._closed_reason = reason
        self._notify()
        with self._lock:
            self._wake()

    def _notify(self) -> None:
        for listener in self.state_listeners:
            listener(self.state)

    def _wake(self) -> None:
        self._opened.set()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, future)

    # ------------------------------------------------------------------ entering

    def enter(self) -> None:
        """Enter from synchronous code; blocks while the gate is held."""
        if not self.is_open:
            self._enter_slow()
        self.calls.append(None)

    def exit(self) -> None:
        self.calls.pop()

    async def enter_async(self) -> None:
        """Enter from a coroutine; awaits while the gate is held."""
        if not self.is_open:
            await self._enter_slow_async()
        self.calls.append(None)

    def _refuse_or_queue(self) -> bool:
        """True if the caller should wait; raise if it must be refused now."""
        if self.state is GateState.CLOSED:
            raise PluginUnavailableError(self.plugin, self._closed_reason)
        if self.state is GateState.OPEN:
            return False
        if self._waiting >= self.max_waiting:
            raise PluginUnavailableError(
                self.plugin, f"it is reloading and {self.max_waiting} callers are already queued"
            )
        return True

    def _timed_out(self) -> PluginUnavailableError:
        return PluginUnavailableError(
            self.plugin,
            "request timeout: plugin reload exceeded queue timeout "
            f"({format_duration_seconds(self.hold_timeout)})",
        )

    def _enter_slow(self) -> None:
        deadline = time.monotonic() + self.hold_timeout
        while True:
            with self._lock:
                if not self._refuse_or_queue():
                    return
                self._waiting += 1
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._opened.wait(remaining):
                    raise self._timed_out()
            finally:
                with self._lock:
                    self._waiting -= 1

    async def _enter_slow_async(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hold_timeout
        while True:
            with self._lock:
                if not self._refuse_or_queue():
                    return
                future: asyncio.Future[None] = loop.create_future()
                self._async_waiters.append((loop, future))
                self._waiting += 1
            try:
                await asyncio.wait_for(future, max(deadline - loop.time(), 0))
            except TimeoutError:
                raise self._timed_out() from None
            finally:
                with self._lock:
                    self._waiting -= 1

    # ------------------------------------------------------------------ draining

    async def drain(self, timeout: float) -> bool:
        """Wait until no call is in flight; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        delay = 0.001
        while self.in_flight:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    # ------------------------------------------------------------------ errors

    def record_error(self, error: BaseException, *, source: str = "call") -> None:
        """Count an error against the plugin and tell the listeners (metrics, thresholds)."""
        self.error_count += 1
        self.last_error = error
        self.last_error_at = datetime.now(UTC)
        for listener in self.error_listeners:
            listener(source, error)


def format_duration_seconds(seconds: float) -> str:
    return format_duration(timedelta(seconds=seconds))
