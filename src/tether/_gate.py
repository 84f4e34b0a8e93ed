"""The gate of one plugin slot, and the door of each version it holds.

A plugin name owns one :class:`Gate` for as long as it is loaded, whatever version
runs; every loaded version of it has a :class:`Door`. The gate keeps the state
callers see (``open``, ``held`` while a version is being swapped, ``closed`` while
stopped, disabled or unloaded), the callers held at it, and the plugin's errors. A
door is what the fast path reads: its ``is_open`` is true only for the gate's live
version while the gate is open, and it counts the calls inside that one version (so
stopping a version can drain exactly its calls, while another version runs)::

    if door.is_open:            # one attribute read: the normal path
        door.calls.append(None)
    else:
        door = gate.wait(door)  # held: wait; closed: PluginUnavailableError; retired: the live door
    try:
        ...call the version's code...
    finally:
        door.calls.pop()

``deque.append`` and ``deque.pop`` are atomic in CPython, so the count stays right
when sync callers on several threads share a door. Async calls that have a deadline
are kept by their entry's ``Deadlines`` instead (``door.deadlines``; see
``tether._watchdog``), where the watchdog finds them. The seam (``tether._seam``) is
the one place that writes this sequence out.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from tether._callstats import CallStats
from tether._chain import CallChain
from tether._durations import format_duration
from tether.errors import PluginUnavailableError

if TYPE_CHECKING:
    from tether._watchdog import Deadlines

__all__ = ["Door", "Gate", "GateState"]


class GateState(StrEnum):
    OPEN = "open"  # calls pass
    HELD = "held"  # calls wait (a version is being swapped)
    CLOSED = "closed"  # calls are refused (stopped, disabled, unloaded)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Door:
    """One version's way in. ``is_open`` is the flag every fast path checks.

    ``calls`` counts the synchronous calls (and async calls without a deadline) inside
    this version; ``deadlines`` are its entries' tables of async calls with a deadline
    (``tether._watchdog.Deadlines``). ``stats_for(source)`` is the version's call statistics
    for one source (``[calls, nanoseconds, errors, timed calls]``), which the seam updates.
    ``committed`` is true once this version's registrations are the live ones;
    ``chain`` is the call chain every entry of this version runs (``tether._seam``).
    """

    __slots__ = (
        "__weakref__",
        "calls",
        "chain",
        "committed",
        "deadlines",
        "gate",
        "is_open",
        "owner",
        "plugin",
        "version",
    )

    def __init__(self, gate: Gate, version: str, chain: CallChain) -> None:
        self.gate = gate
        self.chain = chain
        self.owner: object = None  # the version's host-side scope (tether._context)
        self.plugin = gate.plugin
        self.version = version
        self.is_open = False
        self.committed = False
        self.calls: deque[None] = deque()
        self.deadlines: weakref.WeakSet[Deadlines] = weakref.WeakSet()

    @property
    def in_flight(self) -> int:
        """Calls inside this version now."""
        return len(self.calls) + sum(len(d.tasks) for d in list(self.deadlines))

    @property
    def is_live(self) -> bool:
        return self.gate.live is self

    def stats_for(self, source: str) -> list[int]:
        """This version's ``[calls, nanoseconds, errors]`` of one source (``hook:x``...)."""
        return self.gate.stats.list_for(self.plugin, self.version, source)

    def __repr__(self) -> str:
        state = "open" if self.is_open else "shut"
        return f"<Door {self.plugin} {self.version} {state} in_flight={self.in_flight}>"


class Gate:
    """One plugin slot's gate: the state callers see, the callers held, the errors."""

    __slots__ = (
        "_async_waiters",
        "_closed_reason",
        "_lock",
        "_opened",
        "_rejecting",
        "_waiting",
        "doors",
        "error_count",
        "error_listeners",
        "errors_by_type",
        "held_total",
        "hold_timeout",
        "last_error",
        "last_error_at",
        "live",
        "max_waiting",
        "plugin",
        "refused_total",
        "state",
        "state_listeners",
        "stats",
    )

    def __init__(
        self,
        plugin: str,
        *,
        hold_timeout: float = 30.0,
        max_waiting: int = 1000,
        stats: CallStats | None = None,
    ) -> None:
        self.plugin = plugin
        self.stats = stats if stats is not None else CallStats()
        self.state = GateState.CLOSED
        self.hold_timeout = hold_timeout
        self.max_waiting = max_waiting
        self.live: Door | None = None
        self.doors: tuple[Door, ...] = ()
        self.error_count = 0
        self.held_total = 0  # callers that ever waited at this gate
        self.refused_total = 0  # callers it ever refused (closed, queue full, timed out)
        self.errors_by_type: dict[str, int] = {}
        self.last_error: BaseException | None = None
        self.last_error_at: datetime | None = None
        self.error_listeners: list[Callable[[str, BaseException], None]] = []
        self.state_listeners: list[Callable[[GateState], None]] = []
        self._closed_reason = "it is not running"
        self._lock = threading.Lock()
        self._opened = threading.Event()
        self._rejecting = False
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiting = 0

    # ------------------------------------------------------------------ doors

    def add_door(self, version: str, *, chain: CallChain | None = None) -> Door:
        """A door for a newly loaded version; shut until the gate opens with it."""
        door = Door(self, version, chain if chain is not None else CallChain())
        with self._lock:
            self.doors = (*self.doors, door)
        return door

    def remove_door(self, door: Door) -> None:
        """Forget a version that is gone (its calls have drained or been abandoned)."""
        with self._lock:
            door.is_open = False
            self.doors = tuple(d for d in self.doors if d is not door)
            if self.live is door:
                self.live = None

    # ------------------------------------------------------------------ state

    @property
    def in_flight(self) -> int:
        """Calls inside any version now."""
        return sum(door.in_flight for door in self.doors)

    @property
    def waiting(self) -> int:
        """Callers held at the gate while it is held."""
        return self._waiting

    @property
    def closed_reason(self) -> str:
        return self._closed_reason

    @property
    def is_open(self) -> bool:
        return self.state is GateState.OPEN

    def open(self, door: Door | None = None) -> None:
        """Let calls into ``door`` (by default the live version), and wake everyone held."""
        with self._lock:
            target = door or self.live
            if target is None:
                raise ValueError(f"plugin '{self.plugin}' has no version to open")
            self.live = target
            self._rejecting = False
            for other in self.doors:
                if other is not target:
                    other.is_open = False
            self.state = GateState.OPEN
            target.is_open = True
        self._notify()
        with self._lock:
            self._wake()

    def hold(self, *, reject: bool = False) -> None:
        """Make new callers wait (for at most ``hold_timeout``) until ``open`` or ``close``;
        with ``reject``, refuse them at once instead (a reload's ``reject`` strategy). Either
        way the gate is held, not closed: what skips a closed plugin (its middleware, its
        hooks) fails instead, so nothing is served without the plugin's checks."""
        with self._lock:
            self.state = GateState.HELD
            self._rejecting = reject
            self._shut_all()
            self._opened.clear()
        self._notify()

    def close(self, reason: str = "it is not running") -> None:
        """Refuse new callers; callers already held are woken and refused."""
        with self._lock:
            self.state = GateState.CLOSED
            self._rejecting = False
            self._shut_all()
            self._closed_reason = reason
        self._notify()
        with self._lock:
            self._wake()

    def _shut_all(self) -> None:
        for door in self.doors:
            door.is_open = False

    def _notify(self) -> None:
        for listener in self.state_listeners:
            listener(self.state)

    def _wake(self) -> None:
        self._opened.set()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, future)

    # ------------------------------------------------------------------ the slow path

    def _refuse_or_queue(self) -> bool:
        """True if the caller should wait; raise if it must be refused now."""
        if self.state is GateState.OPEN:
            return False
        if self.state is GateState.CLOSED:
            self.refused_total += 1
            raise PluginUnavailableError(self.plugin, self._closed_reason)
        if self._rejecting:
            self.refused_total += 1
            raise PluginUnavailableError(self.plugin, "it is reloading")
        if self._waiting >= self.max_waiting:
            self.refused_total += 1
            raise PluginUnavailableError(
                self.plugin, f"it is reloading and {self.max_waiting} callers are already queued"
            )
        return True

    def _timed_out(self) -> PluginUnavailableError:
        with self._lock:
            self.refused_total += 1
        return PluginUnavailableError(
            self.plugin,
            "request timeout: plugin reload exceeded queue timeout "
            f"({format_duration(timedelta(seconds=self.hold_timeout))})",
        )

    def _live_door(self) -> Door:
        live = self.live
        if live is None:  # pragma: no cover - an open gate always has a live door
            raise PluginUnavailableError(self.plugin, "it has no running version")
        return live

    def wait(self, door: Door | None = None) -> Door:
        """Block while the gate is held; the live door once it opens (not yet entered).

        Raises :class:`PluginUnavailableError` when the gate is closed, when too many
        callers are held, or when the hold outlasts ``hold_timeout``. The door returned
        is ``door`` itself unless another version became live meanwhile; the caller
        then calls that version's equivalent instead (the seam's redirect).
        """
        del door  # which version the caller came for does not change how it waits
        deadline = time.monotonic() + self.hold_timeout
        first = True
        while True:
            with self._lock:
                if not self._refuse_or_queue():
                    return self._live_door()
                self._waiting += 1
                self.held_total += first
                first = False
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._opened.wait(remaining):
                    raise self._timed_out()
            finally:
                with self._lock:
                    self._waiting -= 1

    async def wait_async(self, door: Door | None = None) -> Door:
        """``wait`` for coroutines: awaits while the gate is held."""
        del door
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hold_timeout
        first = True
        while True:
            with self._lock:
                if not self._refuse_or_queue():
                    return self._live_door()
                future: asyncio.Future[None] = loop.create_future()
                self._async_waiters.append((loop, future))
                self._waiting += 1
                self.held_total += first
                first = False
            try:
                await asyncio.wait_for(future, max(deadline - loop.time(), 0))
            except TimeoutError:
                raise self._timed_out() from None
            finally:
                with self._lock:
                    self._waiting -= 1

    # ------------------------------------------------------------------ entering the live version

    def enter(self) -> Door:
        """Enter the live version from synchronous code (waits while held); the door entered.

        Leave with ``door.calls.pop()`` (or :meth:`exit`).
        """
        door = self.live
        if door is None or not door.is_open:
            door = self.wait(door)
        door.calls.append(None)
        return door

    async def enter_async(self) -> Door:
        """``enter`` from a coroutine."""
        door = self.live
        if door is None or not door.is_open:
            door = await self.wait_async(door)
        door.calls.append(None)
        return door

    @staticmethod
    def exit(door: Door) -> None:
        door.calls.pop()

    # ------------------------------------------------------------------ draining

    async def drain(self, timeout: float, *, door: Door | None = None) -> bool:
        """Wait until no call is in flight (in ``door``, or in any version).

        False if ``timeout`` passed first.
        """
        deadline = time.monotonic() + timeout
        delay = 0.001

        def busy() -> int:
            return door.in_flight if door is not None else self.in_flight

        while busy():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    # ------------------------------------------------------------------ errors

    def record_error(self, error: BaseException, *, source: str = "call") -> None:
        """Count an error against the plugin and tell the listeners (metrics, thresholds)."""
        kind = type(error).__name__
        self.error_count += 1
        self.errors_by_type[kind] = self.errors_by_type.get(kind, 0) + 1
        self.last_error = error
        self.last_error_at = datetime.now(UTC)
        for listener in self.error_listeners:
            listener(source, error)
