"""One version's lifecycle steps: ``initialize``, ``start``, ``stop``, ``cleanup``.

The manager decides when (dependency order, its lock, the startup and shutdown hooks)
and with which time limits (the plugin's ``timeouts``); these functions do one step of
one version: call the plugin's method, move its status, commit it, open or close its
gate, record a failure. They call the plugin outside the seam: the gate is shut while a
version starts and stops, and these calls are what open and close it. A method may be
plain or ``async def``; it runs within its limit as ``tether._bounded`` runs plugin
code (a plain one in a daemon thread, abandoned past its limit; a coroutine cancelled,
then closed). Whatever a method raises, ``SystemExit`` and its kind included, and
running out of time, fail the step: the version becomes ``error`` and its gate closes,
so a half-started plugin is never reported running. Only the methods the version's
contract says the manager calls (``Contract.managed``) are called.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import TYPE_CHECKING

from tether._bounded import OverrunError, PluginCode, plugin_error, run_bounded
from tether._describe import error_line
from tether._lifecycle import PluginStatus
from tether._loader import code_directory
from tether._plugin import Plugin
from tether.errors import PluginLifecycleError, StepTimeoutError

if TYPE_CHECKING:
    from tether._slots import PluginSlot, PluginVersion

__all__ = [
    "call_step",
    "cancel_tasks_of",
    "code_of",
    "initialize_version",
    "retire_version",
    "start_version",
    "stop_version",
    "tasks_of",
    "threads_left",
]

log = logging.getLogger("tether")


async def call_step(
    instance: object,
    method: str,
    *args: object,
    timeout: float | None = None,
    code: PluginCode | None = None,
) -> None:
    """Call ``instance.method(*args)`` and await what it returns; nothing if it lacks it.

    Within ``timeout`` seconds when given (``OverrunError`` past it); a
    ``BaseException`` of the plugin's comes back as ``EscapedError`` (``code`` says which
    files are the plugin's, to tell its ``KeyboardInterrupt`` from a real one).
    """
    fn = getattr(instance, method, None)
    if fn is None:
        return
    if _is_inherited(instance, method):  # tether.Plugin's own no-op: nothing to bound
        timeout = None
    await run_bounded(fn, *args, code=code or PluginCode(type(instance).__name__), what=method,
                      limit=timeout)  # fmt: skip


def _is_inherited(instance: object, method: str) -> bool:
    """Whether ``instance.method`` is ``tether.Plugin``'s, not overridden."""
    own = getattr(Plugin, method, None)
    return own is not None and getattr(type(instance), method, None) is own


def tasks_of(version: PluginVersion) -> list[asyncio.Task[object]]:
    """The tasks of this loop whose coroutine runs the version's own modules (its private
    package), awaiting or not: what a version leaves behind when it goes."""
    namespace = version.code.namespace
    if namespace is None:
        return []
    prefix = namespace + "."
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # no loop running: no task to find
        return []
    found = []
    for task in tasks:
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        module = frame.f_globals.get("__name__", "") if frame is not None else ""
        if isinstance(module, str) and (module == namespace or module.startswith(prefix)):
            found.append(task)
    return found


def cancel_tasks_of(version: PluginVersion) -> int:
    """Cancel the tasks the version left running; how many."""
    current = asyncio.current_task() if _loop_running() else None
    tasks = [t for t in tasks_of(version) if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    return len(tasks)


def threads_left(slot: PluginSlot, version: PluginVersion) -> list[str]:
    """Names of the threads still running the version's own modules (its private package)
    once it is gone; none when another version of the slot shares its code."""
    namespace = version.code.namespace
    if namespace is None or any(v.code.module is version.code.module for v in slot.versions):
        return []
    prefix = namespace + "."
    frames = sys._current_frames()  # noqa: SLF001 - documented in sys
    found = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if isinstance(module, str) and module.startswith(prefix):
                found.append(thread.name)
                break
            frame = frame.f_back
    return sorted(found)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def code_of(version: PluginVersion) -> PluginCode:
    """The version's code, for telling its frames from the host's."""
    return PluginCode.of(version.name, code_directory(version.code))


# --------------------------------------------------------------------------- steps


_ESCAPED_HINT = (
    "a plugin reports a failure with an Exception; {kind} would end its host, so tether "
    "stops the plugin instead"
)


def _failed(
    version: PluginVersion,
    step: str,
    exc: BaseException,
    *,
    quiet: bool = False,
    close_gate: bool = True,
) -> PluginLifecycleError:
    """A step failed: record it on the gate, shut the gate (unless not ``close_gate``: a
    reload keeps callers held for the version it brings back), and mark the version; log
    it unless ``quiet`` (the caller logs it)."""
    version.last_error = exc
    gate = version.door.gate
    gate.record_error(exc, source=step)
    if close_gate:
        gate.close(f"its {step} failed")
    if version.status is not PluginStatus.ERROR:
        version.set_status(PluginStatus.ERROR)
    if isinstance(exc, StepTimeoutError):
        if not quiet:
            log.error("plugin %s: %s", version.name, exc)
        return exc
    if not quiet:
        log.error("plugin %s: %s failed: %s", version.name, step, error_line(exc), exc_info=exc)
    failure = PluginLifecycleError(version.name, step, exc)
    if not isinstance(exc, Exception):
        failure.hint = _ESCAPED_HINT.format(kind=type(exc).__name__)
    return failure


async def _managed(
    version: PluginVersion,
    method: str,
    step: str,
    *args: object,
    limit: float | None,
    quiet: bool = False,
    close_gate: bool = True,
) -> PluginLifecycleError | None:
    """Call one managed method of the version; its failure (recorded), if it failed."""
    if method not in version.contract.managed:
        return None
    try:
        await call_step(version.instance, method, *args, timeout=limit, code=code_of(version))
    except OverrunError as exc:
        file, line = (exc.where[0], exc.where[1]) if exc.where else (None, None)
        late = StepTimeoutError(version.name, step, method, exc.limit, abandoned=exc.abandoned,
                                file=file, line=line)  # fmt: skip
        return _failed(version, step, late, quiet=quiet, close_gate=close_gate)
    except Exception as exc:  # EscapedError: the plugin's SystemExit, KeyboardInterrupt...
        error = plugin_error(exc)
        failure = _failed(version, step, error, quiet=quiet, close_gate=close_gate)
        failure.__cause__ = error
        return failure
    return None


async def initialize_version(
    slot: PluginSlot,
    version: PluginVersion,
    limit: float | None = None,
    *,
    quiet: bool = False,
    open_gate: bool = True,
) -> None:
    """``initialize`` (with the context, or the config: the contract says which) within
    ``limit`` seconds; then commit the version (its registrations go live) and open its
    door (unless not ``open_gate``: a reload keeps callers held until ``start``). A
    failure is logged unless ``quiet`` (a caller that tries again logs it)."""
    scope = version.scope
    argument: object = (
        dict(scope.config) if version.contract.initialize_with == "config" else scope.context
    )
    failure = await _managed(
        version, "initialize", "initialization", argument, limit=limit, quiet=quiet,
        close_gate=open_gate,
    )  # fmt: skip
    if failure is not None:
        raise failure
    version.initialized = True
    version.set_status(PluginStatus.INITIALIZED)
    slot.commit(version)
    if open_gate:
        slot.gate.open(version.door)
    log.info("initialized plugin %s %s", slot.name, version.version)


async def start_version(
    slot: PluginSlot,
    version: PluginVersion,
    limit: float | None = None,
    *,
    open_gate: bool = True,
    quiet: bool = False,
) -> None:
    """``start`` within ``limit`` seconds; then the version is running, its door open
    (unless not ``open_gate``: a reload opens it once the swap is done)."""
    failure = await _managed(
        version, "start", "start", limit=limit, quiet=quiet, close_gate=open_gate
    )
    if failure is not None:
        raise failure
    version.set_status(PluginStatus.RUNNING)
    if open_gate:
        slot.gate.open(version.door)
    log.info("started plugin %s %s", slot.name, version.version)


async def stop_version(
    slot: PluginSlot,
    version: PluginVersion,
    limit: float,
    drain_timeout: float,
    *,
    keep_gate: bool = False,
) -> PluginLifecycleError | None:
    """Shut the gate (if this is the live version), let its calls drain, ``stop()``
    within ``limit``; the failure, if it failed. With ``keep_gate`` the gate is left as
    it is (a reload holds it while one version replaces another)."""
    live = version is slot.live and not keep_gate
    gate = slot.gate
    if live:
        gate.close("it is stopping")
    if not await gate.drain(drain_timeout, door=version.door):
        log.warning(
            "plugin %s still has %d call(s) in flight after %.1fs; stopping it anyway",
            slot.name, version.door.in_flight, drain_timeout,
        )  # fmt: skip
    failure = await _managed(version, "stop", "stop", limit=limit, close_gate=not keep_gate)
    if failure is not None:
        return failure
    version.set_status(PluginStatus.STOPPED)
    if live:
        gate.close("it is stopped")
    log.info("stopped plugin %s %s", slot.name, version.version)
    return None


async def retire_version(
    slot: PluginSlot, version: PluginVersion, *, reason: str, limit: float | None = None
) -> PluginLifecycleError | None:
    """Release the version's registrations, ``cleanup()`` (within ``limit`` seconds) if
    it was initialized, and discard it from its slot; the cleanup's failure, if it
    failed."""
    failure: PluginLifecycleError | None = None
    for exc in version.scope.release():
        log.warning("plugin %s: releasing a registration failed: %s", slot.name, error_line(exc))
    if version.initialized:  # a workload's cleanup(db) is the host's: not managed
        failure = await _managed(version, "cleanup", "cleanup", limit=limit)
    shared = any(v is not version and v.code.module is version.code.module for v in slot.versions)
    cancelled = 0 if shared else cancel_tasks_of(version)
    if cancelled:
        log.info("plugin %s %s: cancelled %d task(s) it left running", slot.name,
                 version.version, cancelled)  # fmt: skip
    slot.discard(version, reason=reason)
    version.set_status(PluginStatus.UNLOADED)
    return failure
