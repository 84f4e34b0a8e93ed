"""The watchdog: cancels async calls into plugins that run past their deadline.

An async call with a deadline costs the seam one dict entry on its entry's
:class:`Deadlines` (a key and the task the call runs in), and no clock read. A daemon
thread scans them and times each call from the scan that first sees it, so a call is
never cancelled early, and at most one scan interval late. A late call's task is
cancelled on its own loop. (On Python 3.11, where ``asyncio.current_task`` is written
in Python and costs a few hundred nanoseconds, the seam records no task: the watchdog
looks for the tasks of late calls itself, once per scan for all of them, among the
tasks asyncio keeps, by the seam frames in their await chains.) The seam turns that
cancellation into a :class:`~tether.errors.CallTimeoutError`. A plugin that swallows
the cancellation is cancelled again once per timeout while it runs on, and when it
returns at last the seam raises the timeout all the same (in-process code cannot be
killed: process isolation can).

A deadline is meant for a plugin's own work: a call found late while it is, at that
moment, awaiting a call into another plugin (a service, a middleware's ``call_next``)
or a host endpoint under its middleware is not cancelled, and its clock starts again
from that scan (the callee has its own deadline). So a middleware is not timed out
for the slow handler it awaits; time its callees took before the check still counts.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
import weakref
from collections.abc import Callable
from time import perf_counter_ns
from types import CodeType

__all__ = [
    "RECORDS_TASKS",
    "Deadlines",
    "next_key",
    "not_the_callers_time",
    "uncancel",
    "watchdog",
]

RECORDS_TASKS = sys.version_info >= (3, 12)
"""Whether the seam records each call's task (``asyncio.current_task`` is C from 3.12)."""

_ELSEWHERE: set[CodeType] = set()  # frames whose time is not their caller's (host endpoints)
_SEAM_FILE = "<tether seam async"
_ENDED = object()


def not_the_callers_time(fn: Callable[..., object]) -> None:
    """Time a call spends awaiting ``fn`` (a host endpoint under middleware) does not
    count against the plugin awaiting it."""
    _ELSEWHERE.add(fn.__code__)


class Deadlines:
    """The async calls of one seam entry that have a deadline, while they run.

    ``tasks`` maps each call's key to the task it runs in (the seam writes it);
    ``expired`` maps the key of a call the watchdog cancelled to how many times it
    did. ``owner`` is what the seam's frames hold as ``_t_E`` (the entry).
    """

    __slots__ = ("__weakref__", "expired", "owner", "tasks", "timeout_ns")

    def __init__(self, owner: object, timeout: float) -> None:
        self.owner = owner
        self.timeout_ns = int(timeout * 1e9)
        self.tasks: dict[int, asyncio.Task[object] | None] = {}
        self.expired: dict[int, int] = {}


def uncancel(deadlines: Deadlines, key: int) -> bool:
    """The call ``key`` ends: take back the watchdog's cancellations of its task (the
    call ends here, as a timeout, rather than cancelling the caller). True if there were
    any."""
    times = deadlines.expired.pop(key, 0)
    if times:
        task = asyncio.current_task()
        if task is not None:
            for _ in range(min(times, task.cancelling())):
                task.uncancel()
    return bool(times)


def _expire(deadlines: Deadlines, key: int, task: asyncio.Task[object]) -> None:
    """On the call's loop: cancel the task the call runs in, if the call is still there."""
    recorded = deadlines.tasks.get(key, _ENDED)
    if (recorded is task or recorded is None) and not task.done():  # None: 3.11, unrecorded
        deadlines.expired[key] = deadlines.expired.get(key, 0) + 1
        task.cancel("tether: call timeout")


def _seam_frames(task: asyncio.Task[object]) -> list[tuple[object, object]]:
    """``(the frame's entry, its key)`` of each async seam frame in ``task``'s await chain."""
    found: list[tuple[object, object]] = []
    awaited: object = task.get_coro()
    for _ in range(256):  # a bound on an await chain, not data
        if awaited is None:
            break
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None and frame.f_code.co_filename.startswith(_SEAM_FILE):
            found.append((frame.f_globals.get("_t_E"), frame.f_locals.get("_t_k")))
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return found


def _tasks_of(late: list[tuple[Deadlines, int]]) -> dict[int, asyncio.Task[object]]:
    """Python 3.11: the task of each late call, from one pass over asyncio's tasks."""
    everything = getattr(asyncio.tasks, "_all_tasks", None)
    if everything is None:  # pragma: no cover - 3.11 has it; 3.12+ records tasks instead
        return {}
    for _ in range(3):  # the set of tasks may change while it is copied
        try:
            tasks = list(everything)
        except RuntimeError:
            continue
        break
    else:  # pragma: no cover - three changes in a row
        return {}
    wanted = {(id(d.owner), key) for d, key in late}
    found: dict[int, asyncio.Task[object]] = {}
    for task in tasks:
        if task.done():
            continue
        for owner, key in _seam_frames(task):
            if isinstance(key, int) and (id(owner), key) in wanted:
                found[key] = task
    return found


def _awaiting_elsewhere(task: asyncio.Task[object], deadlines: Deadlines, key: int) -> bool:
    """Whether ``task``, below the seam frame of call ``key``, is awaiting another seam
    call or a host endpoint right now (looked at only once the call is late)."""
    awaited: object = task.get_coro()
    found = False
    for _ in range(256):  # a bound on an await chain, not data
        if awaited is None:
            break
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            if code.co_filename.startswith(_SEAM_FILE):
                if found:
                    return True
                found = (
                    frame.f_globals.get("_t_E") is deadlines.owner
                    and frame.f_locals.get("_t_k") == key
                )
            elif found and code in _ELSEWHERE:
                return True
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return False


_MAX_TICK = 0.05  # seconds between scans when no timeout is short


def _tick_for(deadlines: Deadlines) -> float:
    """Scan four times per timeout, at most every 5 ms."""
    return max(deadlines.timeout_ns / 4e9, 0.005)


class _Watchdog:
    """One daemon thread that cancels async calls past their deadline, on their loop."""

    def __init__(self) -> None:
        self._watched: weakref.WeakSet[Deadlines] = weakref.WeakSet()
        self._seen: dict[int, int] = {}  # call key -> when its clock started (ns)
        self._found: dict[int, asyncio.Task[object]] = {}  # 3.11: late calls' tasks
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.tick = _MAX_TICK

    def watch(self, deadlines: Deadlines) -> None:
        """Scan ``deadlines`` from now on, often enough for its timeout."""
        with self._lock:
            self._watched.add(deadlines)
            self.tick = min(self.tick, _tick_for(deadlines))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="tether-call-watchdog", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.tick)
            try:
                self.scan()
            except Exception:  # noqa: S112 - one bad scan must not end the watch
                continue

    def scan(self) -> None:
        """One pass over the watched calls (the thread's loop; tests may call it)."""
        with self._lock:
            watched = list(self._watched)
            # the entries with the shortest timeouts may have gone: the tick follows
            self.tick = min([_MAX_TICK, *map(_tick_for, watched)])
        now = perf_counter_ns()
        seen = self._seen
        current: set[int] = set()
        late: list[tuple[Deadlines, int, asyncio.Task[object] | None]] = []
        for deadlines in watched:
            if not deadlines.tasks:
                continue
            limit = deadlines.timeout_ns
            for key, task in list(deadlines.tasks.items()):
                current.add(key)
                if now - seen.setdefault(key, now) >= limit:
                    seen[key] = (
                        now  # the clock starts again: a call that runs on is cancelled again
                    )
                    late.append((deadlines, key, task))
        for key in seen.keys() - current:  # calls that have ended
            del seen[key]
            self._found.pop(key, None)
        if not late:
            return
        unknown = [(d, key) for d, key, task in late if task is None and key not in self._found]
        if unknown:
            self._found.update(_tasks_of(unknown))
        for deadlines, key, recorded in late:
            task = recorded or self._found.get(key)
            if task is not None and not task.done():
                self._cancel(deadlines, key, task)

    @staticmethod
    def _cancel(deadlines: Deadlines, key: int, task: asyncio.Task[object]) -> None:
        if _awaiting_elsewhere(task, deadlines, key):
            return  # awaiting another plugin or a host endpoint: not late itself
        try:
            task.get_loop().call_soon_threadsafe(_expire, deadlines, key, task)
        except RuntimeError:  # its loop has closed: nothing left to cancel
            deadlines.tasks.pop(key, None)


watchdog = _Watchdog()
next_key = itertools.count().__next__
"""A fresh key for each async call with a deadline."""
