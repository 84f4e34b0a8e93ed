"""The watchdog: cancels async calls into plugins that run past their deadline.

An async call with a deadline costs the seam one dict entry on its door (a key and
its timeout, ``Door.tasks``), and no clock read. A daemon thread scans the doors and
times each call from the scan that first sees it (so a call is never cancelled early,
and at most one scan interval late). A call that is late is looked for among the
process's tasks by its seam frame (the frame's ``_t_k``, and ``_t_D`` among its
globals), and its task is cancelled on its own loop. The seam turns that cancellation
into a :class:`~tether.errors.CallTimeoutError`.

A deadline is meant for a plugin's own work: a call found late while it is, at that
moment, awaiting a call into another plugin (a service, a middleware's ``call_next``)
or a host endpoint under its middleware is not cancelled, and its clock starts again
from that scan (the callee has its own deadline). So a middleware is not timed out
for the slow handler it awaits; time its callees took before the check still counts.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import weakref
from collections.abc import Callable
from time import perf_counter_ns
from types import CodeType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from tether._gate import Door

__all__ = ["next_key", "not_the_callers_time", "watchdog"]

_ELSEWHERE: set[CodeType] = set()  # frames whose time is not their caller's (host endpoints)


def not_the_callers_time(fn: Callable[..., object]) -> None:
    """Time a call spends awaiting ``fn`` (a host endpoint under middleware) does not
    count against the plugin awaiting it."""
    _ELSEWHERE.add(fn.__code__)


def _expire(door: Door, key: int, task: asyncio.Task[object]) -> None:
    """On the call's loop: cancel the task the call runs in, if the call is still there."""
    if key in door.tasks and not task.done():
        door.expired.add(key)
        task.cancel("tether: call timeout")


_NOT_FOUND, _OWN_WORK, _ELSEWHERE_NOW = 0, 1, 2


def _running_in(task: asyncio.Task[object], door: Door, key: int) -> int:
    """Whether ``task``'s await chain holds the seam frame of call ``key`` into ``door``,
    and if so whether, deeper down, it awaits another seam call or a host endpoint."""
    awaited: object = task.get_coro()
    depth = 0
    found = False
    while awaited is not None and depth < 256:  # noqa: PLR2004 - a bound on a chain, not data
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            if code.co_filename.startswith("<tether seam async"):
                if found:
                    return _ELSEWHERE_NOW
                local = frame.f_locals
                found = local.get("_t_k") == key and frame.f_globals.get("_t_D") is door
            elif found and code in _ELSEWHERE:
                return _ELSEWHERE_NOW
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        depth += 1
    return _OWN_WORK if found else _NOT_FOUND


def _find_task(door: Door, key: int) -> tuple[asyncio.Task[object] | None, bool]:
    """The task running async call ``key`` into ``door`` (looked for only once it is
    late), and whether it is awaiting someone else's work right now."""
    for _ in range(3):  # the set of tasks may change while it is copied
        try:
            tasks = list(asyncio.tasks._all_tasks)  # type: ignore[attr-defined]  # noqa: SLF001
        except RuntimeError:
            continue
        break
    else:  # pragma: no cover - three changes in a row
        return None, False
    for task in tasks:
        if task.done():
            continue
        where = _running_in(task, door, key)
        if where != _NOT_FOUND:
            return cast("asyncio.Task[object]", task), where == _ELSEWHERE_NOW
    return None, False


class _Watchdog:
    """One daemon thread that cancels async calls past their deadline, on their loop.

    A call costs the seam one dict entry (its key and deadline); only a call that is
    late is looked for among the process's tasks, by its frame.
    """

    def __init__(self) -> None:
        self._doors: weakref.WeakSet[Door] = weakref.WeakSet()
        self._seen: dict[int, int] = {}  # call key -> when a scan first saw it (ns)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.tick = 0.05

    def watch(self, door: Door, timeout: float) -> None:
        """Scan ``door`` from now on; scan often enough for ``timeout``."""
        with self._lock:
            self._doors.add(door)
            self.tick = min(self.tick, max(timeout / 4, 0.005))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="tether-call-watchdog", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.tick)
            self.scan()

    def scan(self) -> None:
        """One pass over the watched doors (the thread's loop; tests may call it)."""
        with self._lock:
            doors = list(self._doors)
        now = perf_counter_ns()
        seen = self._seen
        current: set[int] = set()
        for door in doors:
            if door.tasks:
                current.update(self._scan(door, now, seen))
        for key in seen.keys() - current:  # calls that have ended
            del seen[key]

    @staticmethod
    def _scan(door: Door, now: int, seen: dict[int, int]) -> list[int]:
        keys: list[int] = []
        for key, timeout in list(door.tasks.items()):
            keys.append(key)
            if now - seen.setdefault(key, now) < timeout:
                continue
            if key in door.expired or key in door.searched:
                continue
            door.searched.add(key)
            task, elsewhere = _find_task(door, key)
            if task is None:
                continue  # not in a task this process knows: it cannot be cancelled
            if elsewhere:  # awaiting another plugin or a host endpoint: not late itself
                seen[key] = now
                door.searched.discard(key)
                continue
            try:
                task.get_loop().call_soon_threadsafe(_expire, door, key, task)
            except RuntimeError:  # its loop has closed: nothing left to cancel
                door.tasks.pop(key, None)
        return keys


watchdog = _Watchdog()
next_key = itertools.count().__next__
"""A fresh key for each async call with a deadline."""
