"""The watchdog: cancels async calls into plugins that run past their deadline.

An async call with a deadline costs the seam one dict entry on its door (a key and
the deadline, ``Door.tasks``). A daemon thread scans the doors; a call that is late is
looked for among the process's tasks by its seam frame (the frame's ``_t_k`` and
``_t_d``), and its task is cancelled on its own loop. The seam turns that cancellation
into a :class:`~tether.errors.CallTimeoutError`.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import weakref
from time import perf_counter_ns
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from tether._gate import Door

__all__ = ["next_key", "watchdog"]


def _expire(door: Door, key: int, task: asyncio.Task[object]) -> None:
    """On the call's loop: cancel the task the call runs in, if the call is still there."""
    if key in door.tasks and not task.done():
        door.expired.add(key)
        task.cancel("tether: call timeout")


def _running_in(task: asyncio.Task[object], door: Door, key: int) -> bool:
    """Whether ``task``'s await chain holds the seam frame of call ``key`` into ``door``."""
    awaited: object = task.get_coro()
    depth = 0
    while awaited is not None and depth < 256:  # noqa: PLR2004 - a bound on a chain, not data
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None and frame.f_code.co_filename.startswith("<tether seam async"):
            local = frame.f_locals
            if local.get("_t_k") == key and local.get("_t_d") is door:
                return True
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        depth += 1
    return False


def _find_task(door: Door, key: int) -> asyncio.Task[object] | None:
    """The task running async call ``key`` into ``door`` (looked for only once it is late)."""
    for _ in range(3):  # the set of tasks may change while it is copied
        try:
            tasks = list(asyncio.tasks._all_tasks)  # type: ignore[attr-defined]  # noqa: SLF001
        except RuntimeError:
            continue
        break
    else:  # pragma: no cover - three changes in a row
        return None
    for task in tasks:
        if not task.done() and _running_in(task, door, key):
            return cast("asyncio.Task[object]", task)
    return None


class _Watchdog:
    """One daemon thread that cancels async calls past their deadline, on their loop.

    A call costs the seam one dict entry (its key and deadline); only a call that is
    late is looked for among the process's tasks, by its frame.
    """

    def __init__(self) -> None:
        self._doors: weakref.WeakSet[Door] = weakref.WeakSet()
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
            with self._lock:
                doors = list(self._doors)
            now = perf_counter_ns()
            for door in doors:
                if door.tasks:
                    self._scan(door, now)

    @staticmethod
    def _scan(door: Door, now: int) -> None:
        for key, deadline in list(door.tasks.items()):
            if now < deadline or key in door.expired or key in door.searched:
                continue
            door.searched.add(key)
            task = _find_task(door, key)
            if task is None:
                continue  # not in a task this process knows: it cannot be cancelled
            try:
                task.get_loop().call_soon_threadsafe(_expire, door, key, task)
            except RuntimeError:  # its loop has closed: nothing left to cancel
                door.tasks.pop(key, None)


watchdog = _Watchdog()
next_key = itertools.count().__next__
"""A fresh key for each async call with a deadline."""
