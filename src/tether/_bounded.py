"""Running plugin code that may never return, or may raise what would end the host.

Every plugin method the manager calls (the import of its code and the creation of
its object, ``validate_config``, ``initialize``, ``start``, ``stop``, ``cleanup``,
``on_config_change``, the ``startup`` and ``shutdown`` hooks) goes through
:func:`run_bounded`, with a time limit:

- a plain function runs in a daemon thread of its own, named
  ``tether-step:PLUGIN:WHAT``, and is waited for until its limit. Past it, the call is
  **abandoned**: a thread cannot be killed in-process, so it runs on, but nobody waits
  for it, and as a daemon it does not hold up the interpreter's exit. An awaitable it
  returns is awaited as below, within what is left of the limit;
- a coroutine runs in a task of its own. Past its limit it is cancelled; if it has not
  ended :data:`GRACE` seconds later (it swallowed the cancellation), its coroutine is
  closed (``GeneratorExit`` at the ``await`` it waits in: its ``finally`` blocks run)
  and the task is left to end. A coroutine that swallows ``GeneratorExit`` too cannot
  be stopped in-process; it is left running.

A plugin that raises what is not an ``Exception`` (``SystemExit``, a
``KeyboardInterrupt`` it raised itself, a ``CancelledError`` nobody asked for, a
``BaseException`` subclass of its own) would end the host; it comes back as an
:class:`EscapedError` carrying the original. What belongs to the host passes as it is
(:func:`is_hosts`): a real Ctrl-C, ``GeneratorExit``, and the cancellation of
the calling task. Only process isolation can do better: kill what overruns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dis
import inspect
import logging
import os
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import TypeVar

from tether._describe import error_line
from tether._seam import is_async_callable

__all__ = [
    "GRACE",
    "EscapedError",
    "OverrunError",
    "PluginCode",
    "frame_in",
    "is_hosts",
    "is_interruption",
    "plugin_error",
    "plugin_frame",
    "raised_by",
    "run_bounded",
    "run_host",
    "settle_leftovers",
    "threads_running",
]

log = logging.getLogger("tether")

T = TypeVar("T")

GRACE = 1.0
"""Seconds a coroutine cancelled at its limit has to end before it is closed (or the
limit itself, when that is shorter)."""

_RAISE = dis.opmap["RAISE_VARARGS"]
_MAX_FRAMES = 256  # a bound on a stack or an await chain, not data


@dataclass(frozen=True, slots=True)
class PluginCode:
    """Whose code a call runs: the plugin's name and the directories its files are in."""

    plugin: str
    directories: tuple[str, ...] = ()
    _prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefixes = {os.path.realpath(d).rstrip(os.sep) + os.sep for d in self.directories if d}
        object.__setattr__(self, "_prefixes", tuple(sorted(prefixes)))

    @classmethod
    def of(cls, plugin: str, directory: str | os.PathLike[str] | None) -> PluginCode:
        return cls(plugin, (os.fspath(directory),) if directory is not None else ())

    def owns(self, filename: str) -> bool:
        """Whether ``filename`` (a code object's) is one of the plugin's files."""
        if not self._prefixes or filename.startswith("<"):
            return False
        try:
            path = os.path.realpath(filename)
        except (OSError, ValueError):
            return False
        return path.startswith(self._prefixes)


class EscapedError(Exception):
    """A ``BaseException`` from plugin code that would end the host, carried as an
    ``Exception``; ``error`` is the original (and the ``__cause__``)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error_line(error))
        self.error = error


class OverrunError(Exception):
    """Plugin code ran past its time limit.

    ``abandoned``: it could not be stopped and runs on (a thread; a coroutine that
    ignores ``GeneratorExit``). ``where``: the plugin's frame it was in when the limit
    came (``(file, line, function)``), when one was found.
    """

    def __init__(
        self, limit: float, *, abandoned: bool, where: tuple[str, int, str] | None
    ) -> None:
        super().__init__(f"did not return within {limit:g}s")
        self.limit = limit
        self.abandoned = abandoned
        self.where = where


def plugin_error(error: BaseException) -> BaseException:
    """What the plugin raised: the original of an :class:`EscapedError`, else ``error``."""
    return error.error if isinstance(error, EscapedError) else error


# --------------------------------------------------------------------------- whose is it


def _innermost(tb: TracebackType | None) -> TracebackType | None:
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def _is_raise_statement(tb: TracebackType) -> bool:
    """Whether the traceback entry stops at a ``raise`` (not where a signal landed)."""
    code = tb.tb_frame.f_code.co_code
    return 0 <= tb.tb_lasti < len(code) and code[tb.tb_lasti] == _RAISE


def raised_by(error: BaseException, code: PluginCode) -> bool:
    """Whether ``error`` was raised by a ``raise`` statement in the plugin's own files.

    A ``KeyboardInterrupt`` from the interpreter's SIGINT handler appears wherever the
    main thread was (its innermost entry is no ``raise``); one from asyncio's handler or
    a host's is raised in their files.
    """
    tb = _innermost(error.__traceback__)
    return tb is not None and code.owns(tb.tb_frame.f_code.co_filename) and _is_raise_statement(tb)


def _being_cancelled() -> bool:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop
        return False
    return task is not None and task.cancelling() > 0


def is_hosts(error: BaseException, code: PluginCode) -> bool:
    """Whether ``error`` is the host's rather than the plugin's: a real Ctrl-C (exactly
    ``KeyboardInterrupt``, not raised by the plugin's own code), ``GeneratorExit`` (a
    coroutine being closed), or a ``CancelledError`` while the calling task is being
    cancelled. Everything else a plugin raises is the plugin's."""
    if isinstance(error, GeneratorExit):
        return True
    if isinstance(error, asyncio.CancelledError):
        return _being_cancelled()
    return type(error) is KeyboardInterrupt and not raised_by(error, code)


def _frames_of(frame: FrameType | None) -> Iterator[FrameType]:
    """``frame`` and its callers, innermost first (bounded)."""
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return
        yield frame
        frame = frame.f_back


def _site(frame: FrameType, line: int | None = None) -> tuple[str, int, str]:
    code = frame.f_code
    return code.co_filename, line if line is not None else frame.f_lineno, code.co_name


def frame_in(error: BaseException, code: PluginCode) -> tuple[str, int, str] | None:
    """The innermost frame of ``error``'s traceback in the plugin's files (``(file, line,
    function)``), or ``None``. Follows ``__cause__``/``__context__`` when the error itself
    was raised by the host on the plugin's behalf."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < _MAX_FRAMES:
        seen.add(id(current))
        found = None
        tb = current.__traceback__
        while tb is not None:
            if code.owns(tb.tb_frame.f_code.co_filename):
                found = _site(tb.tb_frame, tb.tb_lineno)
            tb = tb.tb_next
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _thread_site(thread: threading.Thread, code: PluginCode) -> tuple[str, int, str] | None:
    frame = sys._current_frames().get(thread.ident or -1)  # noqa: SLF001 - documented in sys
    for each in _frames_of(frame):
        if code.owns(each.f_code.co_filename):
            return _site(each)
    return None


def _task_site(task: asyncio.Task[object], code: PluginCode) -> tuple[str, int, str] | None:
    """The innermost plugin frame in the await chain of a suspended task."""
    found = None
    awaited: object = task.get_coro()
    for _ in range(_MAX_FRAMES):
        if awaited is None:
            break
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if isinstance(frame, FrameType) and code.owns(frame.f_code.co_filename):
            found = _site(frame)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return found


def is_interruption(error: BaseException, directory: str | os.PathLike[str] | None = None) -> bool:
    """Whether ``error``, raised by a call into a plugin, is the host's rather than the
    plugin's: a real Ctrl-C, ``GeneratorExit``, or the cancellation of the calling task.

    A ``KeyboardInterrupt`` counts as real unless it is a subclass or was raised by a
    ``raise`` statement in the plugin's files (under ``directory``, when given); a
    ``CancelledError`` is real while the calling task is being cancelled. Everything
    else a plugin raises (``SystemExit`` included) is the plugin's to answer for.
    """
    return is_hosts(error, PluginCode.of("", directory))


def plugin_frame(
    error: BaseException, directory: str | os.PathLike[str]
) -> traceback.FrameSummary | None:
    """The innermost frame of ``error``'s traceback in the files under ``directory`` (a
    plugin's), following ``__cause__`` and ``__context__``; ``None`` if there is none."""
    found = frame_in(error, PluginCode.of("", directory))
    if found is None:
        return None
    file, line, function = found
    return traceback.FrameSummary(file, line, function)


# --------------------------------------------------------------------------- threads


_workers: dict[str, weakref.WeakSet[_Worker]] = {}
_registry_lock = threading.Lock()


def _note_worker(plugin: str, worker: _Worker) -> None:
    with _registry_lock:
        _workers.setdefault(plugin, weakref.WeakSet()).add(worker)


def threads_running(code: PluginCode) -> list[threading.Thread]:
    """Live threads running the plugin's code: those tether started for its steps that
    have not returned, and every other thread with one of the plugin's files on its
    stack (the calling thread and step threads that are ending left out)."""
    with _registry_lock:
        workers = list(_workers.get(code.plugin, ()))
        ending = {w.thread for w in workers if w.outcome is not None}
        found = {w.thread for w in workers if w.outcome is None and w.thread.is_alive()}
        if not found:
            _workers.pop(code.plugin, None)
    frames = sys._current_frames()  # noqa: SLF001 - documented in sys
    me = threading.get_ident()
    owned: dict[str, bool] = {}  # one check per file, however many frames show it
    for thread in threading.enumerate():
        ident = thread.ident
        if ident is None or ident == me or thread in found or thread in ending:
            continue
        for frame in _frames_of(frames.get(ident)):
            filename = frame.f_code.co_filename
            mine = owned.get(filename)
            if mine is None:
                mine = owned[filename] = code.owns(filename)
            if mine:
                found.add(thread)
                break
    return sorted(found, key=lambda t: t.name)


@dataclass(slots=True)
class _Outcome:
    value: object = None
    error: BaseException | None = None


def _unbox(outcome: _Outcome) -> object:
    error = outcome.error
    if error is None:
        return outcome.value
    if isinstance(error, Exception):
        raise error
    raise EscapedError(error) from error


class _Worker:
    """One plain call in a daemon thread; its outcome goes to a future on the loop,
    or, once abandoned, to ``on_late`` (in the thread)."""

    __slots__ = ("__weakref__", "abandoned", "call", "future", "lock", "loop", "on_late",
                 "outcome", "thread")  # fmt: skip

    def __init__(
        self,
        call: Callable[[], object],
        loop: asyncio.AbstractEventLoop,
        on_late: Callable[[object], None] | None,
        name: str,
    ) -> None:
        self.call = call
        self.loop = loop
        self.on_late = on_late
        self.future: asyncio.Future[_Outcome] = loop.create_future()
        self.outcome: _Outcome | None = None
        self.abandoned = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, name=name, daemon=True)

    def run(self) -> None:
        try:
            outcome = _Outcome(value=self.call())
        except BaseException as exc:  # everything goes back to the loop
            outcome = _Outcome(error=exc)
        with self.lock:
            self.outcome = outcome
            abandoned = self.abandoned
        if not abandoned:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                self.loop.call_soon_threadsafe(self._settle, outcome)
        elif self.on_late is not None and outcome.error is None:
            try:
                self.on_late(outcome.value)
            except Exception:
                log.exception("tidying up after an abandoned plugin call failed")

    def _settle(self, outcome: _Outcome) -> None:
        if not self.future.done():
            self.future.set_result(outcome)

    def abandon(self) -> _Outcome | None:
        """Stop waiting; the outcome, if the call ended meanwhile."""
        with self.lock:
            if self.outcome is None:
                self.abandoned = True
            return self.outcome


async def _in_thread(
    call: Callable[[], object],
    code: PluginCode,
    what: str,
    timeout: float,
    on_late: Callable[[object], None] | None,
) -> object:
    worker = _Worker(call, asyncio.get_running_loop(), on_late, f"tether-step:{code.plugin}:{what}")
    _note_worker(code.plugin, worker)
    thread = worker.thread
    thread.start()
    try:
        await asyncio.wait({worker.future}, timeout=timeout)
    except asyncio.CancelledError:
        worker.abandon()
        raise
    if worker.future.done():
        return _unbox(worker.future.result())
    where = _thread_site(thread, code)
    outcome = worker.abandon()
    if outcome is not None:  # it ended just now
        return _unbox(outcome)
    raise OverrunError(timeout, abandoned=True, where=where)


# --------------------------------------------------------------------------- coroutines


async def _guarded(awaitable: object, code: PluginCode) -> _Outcome:
    """Await the plugin's awaitable; what it raises comes back boxed (a task must never
    see a plugin's ``SystemExit``: asyncio would re-raise it out of the event loop)."""
    try:
        value = await awaitable  # type: ignore[misc]  # checked by inspect.isawaitable
    except Exception as exc:
        return _Outcome(error=exc)
    except BaseException as exc:
        if is_hosts(exc, code):
            raise
        return _Outcome(error=exc)
    return _Outcome(value=value)


def _retrieve(task: asyncio.Task[object]) -> None:
    """Take a finished task's outcome, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


def _close(task: asyncio.Task[_Outcome], awaitable: object, code: PluginCode, what: str) -> bool:
    """Close the plugin's coroutine (``awaitable``, run by ``task``) that ignored its
    cancellation; whether that worked. (Closed through the task's own coroutine, a
    coroutine that ignores ``GeneratorExit`` would go unnoticed: ``await`` turns that
    into a ``RuntimeError`` the guard takes for the plugin's.)"""
    task.add_done_callback(_retrieve)
    target = awaitable if inspect.iscoroutine(awaitable) else task.get_coro()
    try:
        target.close()
    except RuntimeError:  # it swallowed GeneratorExit as well
        log.warning("plugin %s: %s ignores cancellation and GeneratorExit; it runs on",
                    code.plugin, what)  # fmt: skip
        return False
    task.cancel()  # wake it: it ends at once, its coroutine being closed
    return True


async def _in_task(
    awaitable: object, code: PluginCode, what: str, limit: float, timeout: float
) -> object:
    task = asyncio.ensure_future(_guarded(awaitable, code))
    try:
        await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task.done():
        return _unbox(task.result())
    where = _task_site(task, code)
    task.cancel()
    await asyncio.wait({task}, timeout=min(GRACE, limit))
    if task.done():
        _retrieve(task)
        raise OverrunError(limit, abandoned=False, where=where)
    stopped = _close(task, awaitable, code, what)
    raise OverrunError(limit, abandoned=not stopped, where=where)


# --------------------------------------------------------------------------- entry


def _called(fn: Callable[..., object], args: tuple[object, ...], code: PluginCode) -> object:
    """``fn(*args)`` on this thread; a ``BaseException`` of the plugin's comes back as an
    :class:`EscapedError`."""
    try:
        return fn(*args)
    except Exception:
        raise
    except BaseException as exc:
        if is_hosts(exc, code):
            raise
        raise EscapedError(exc) from exc


async def run_bounded(
    fn: Callable[..., object],
    *args: object,
    code: PluginCode,
    what: str,
    limit: float | None,
    on_late: Callable[[object], None] | None = None,
) -> object:
    """Call ``fn(*args)`` (and await what it returns) within ``limit`` seconds.

    Raises what the plugin raised if it is an ``Exception``, an :class:`EscapedError` if
    it is any other ``BaseException`` of the plugin's, an :class:`OverrunError` past the
    limit. ``what`` names the call in thread names and logs. ``on_late(result)`` runs
    if an abandoned plain call returns after all (to undo what it did). Without a limit
    (``None``) the call runs here, on the loop, as long as it takes.
    """
    if limit is None:
        result = _called(fn, args, code)
        if inspect.isawaitable(result):
            return _unbox(await _guarded(result, code))
        return result
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    if is_async_callable(fn):
        result = _called(fn, args, code)  # makes the coroutine: none of its code runs yet
    else:
        result = await _in_thread(lambda: fn(*args), code, what, limit, on_late)
    if not inspect.isawaitable(result):
        return result
    return await _in_task(result, code, what, limit, max(deadline - loop.time(), 0.0))


def run_host(
    main: Coroutine[object, object, T],
    *,
    grace: float = GRACE,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """``asyncio.run(main)`` for a host: tasks left when ``main`` returns (or raises)
    are cancelled and get ``grace`` seconds to end; the coroutines of those still there
    are closed, and any left after that are abandoned with a warning. ``asyncio.run``
    would wait for them forever, and a plugin's task that swallows cancellation would
    keep it from ever returning. ``loop_factory`` makes the loop (uvloop's, say)."""
    loop = (loop_factory or asyncio.new_event_loop)()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_leftovers(loop, grace)
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _cancel_leftovers(loop: asyncio.AbstractEventLoop, grace: float) -> None:
    loop.run_until_complete(settle_leftovers(grace))
    for shutdown in (loop.shutdown_asyncgens, loop.shutdown_default_executor):
        with contextlib.suppress(Exception):  # TimeoutError included: it is left behind
            loop.run_until_complete(asyncio.wait_for(shutdown(), grace))


async def settle_leftovers(grace: float = GRACE) -> None:
    """End the other tasks of this loop before it closes: cancel them; after ``grace``
    seconds close the coroutines of those still there (here, on the loop, where their
    ``finally`` blocks can still use it); warn about any that survive even that."""
    me = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=grace)
    stubborn = [t for t in left if not t.done()]
    for task in stubborn:
        with contextlib.suppress(RuntimeError):  # it swallows GeneratorExit too
            task.get_coro().close()
        task.cancel()
    if stubborn:
        await asyncio.wait(stubborn, timeout=grace)
    for task in left:
        if task.done():
            _retrieve(task)
        else:
            log.warning("a task ignored cancellation and GeneratorExit; it was left: %r", task)
