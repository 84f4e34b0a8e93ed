"""One version's lifecycle steps: ``initialize``, ``start``, ``stop``, ``cleanup``.

The manager decides when (dependency order, its lock, the startup and shutdown hooks);
these functions do one step of one version: call the plugin's method, move its status,
commit it, open or close its gate, record a failure. They call the plugin outside the
seam: the gate is shut while a version starts and stops, and these calls are what
open and close it. A method may be plain or ``async def``. Under a time limit, an async
method is cancelled when it runs past it; a plain one runs in a daemon thread so that
a method that never returns cannot block the event loop or hold up the interpreter's
exit (it is abandoned, not killed: only process isolation can kill). Only the methods
the version's contract says the manager calls (``Contract.managed``) are called.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from tether._describe import error_line
from tether._lifecycle import PluginStatus
from tether.errors import PluginLifecycleError

if TYPE_CHECKING:
    from tether._slots import PluginSlot, PluginVersion

__all__ = [
    "StepTimedOutError",
    "call_step",
    "in_daemon_thread",
    "initialize_version",
    "retire_version",
    "start_version",
    "stop_version",
]

log = logging.getLogger("tether")


class StepTimedOutError(Exception):
    """A lifecycle call ran past its time limit (as opposed to raising TimeoutError itself)."""


def _post(loop: asyncio.AbstractEventLoop, *args: object) -> None:
    # The loop may have closed while the call was still running: then nobody waits.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(*args)  # type: ignore[arg-type]


async def in_daemon_thread(fn: Callable[[], object]) -> object:
    """Run a blocking call in a daemon thread, so a call that never returns cannot
    hold up interpreter exit the way a thread-pool worker would."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def settle(setter: Callable[[object], None], value: object) -> None:
        if not future.done():
            setter(value)

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:
            _post(loop, settle, future.set_exception, exc)
        else:
            _post(loop, settle, future.set_result, result)

    threading.Thread(target=run, name="tether-plugin-call", daemon=True).start()
    return await future


async def call_step(
    instance: object, method: str, *args: object, timeout: float | None = None
) -> None:
    """Call ``instance.method(*args)`` and await what it returns; nothing if it lacks it."""
    fn = getattr(instance, method, None)
    if fn is None:
        return
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            if timeout is None or inspect.iscoroutinefunction(fn):
                result = fn(*args)
            else:  # a sync method under a time limit runs where it cannot block the loop
                result = await in_daemon_thread(lambda: fn(*args))
            if inspect.isawaitable(result):
                await result
    except TimeoutError:
        if scope.expired():
            raise StepTimedOutError from None
        raise


# --------------------------------------------------------------------------- steps


def _failed(version: PluginVersion, step: str, exc: BaseException) -> PluginLifecycleError:
    """A step failed: record it on the gate, shut the gate, and mark the version."""
    version.last_error = exc
    gate = version.door.gate
    gate.record_error(exc, source=step)
    gate.close(f"its {step} failed")
    if version.status is not PluginStatus.ERROR:
        version.set_status(PluginStatus.ERROR)
    log.error("plugin %s: %s failed: %s", version.name, step, error_line(exc), exc_info=exc)
    return PluginLifecycleError(version.name, step, exc)


async def _managed(
    version: PluginVersion, method: str, *args: object, timeout: float | None = None
) -> None:
    if method in version.contract.managed:
        await call_step(version.instance, method, *args, timeout=timeout)


async def initialize_version(slot: PluginSlot, version: PluginVersion) -> None:
    """``initialize`` (with the context, or the config: the contract says which); then
    commit the version (its registrations go live) and open its door."""
    scope = version.scope
    argument: object = (
        dict(scope.config) if version.contract.initialize_with == "config" else scope.context
    )
    try:
        await _managed(version, "initialize", argument)
    except Exception as exc:
        raise _failed(version, "initialization", exc) from exc
    version.initialized = True
    version.set_status(PluginStatus.INITIALIZED)
    slot.commit(version)
    slot.gate.open(version.door)
    log.info("initialized plugin %s %s", slot.name, version.version)


async def start_version(slot: PluginSlot, version: PluginVersion) -> None:
    try:
        await _managed(version, "start")
    except Exception as exc:
        raise _failed(version, "start", exc) from exc
    version.set_status(PluginStatus.RUNNING)
    slot.gate.open(version.door)
    log.info("started plugin %s %s", slot.name, version.version)


async def stop_version(
    slot: PluginSlot, version: PluginVersion, limit: float, drain_timeout: float
) -> PluginLifecycleError | None:
    """Shut the gate (if this is the live version), let its calls drain, ``stop()``
    within ``limit``; the failure, if it failed."""
    live = version is slot.live
    gate = slot.gate
    if live:
        gate.close("it is stopping")
    if not await gate.drain(drain_timeout, door=version.door):
        log.warning(
            "plugin %s still has %d call(s) in flight after %.1fs; stopping it anyway",
            slot.name, version.door.in_flight, drain_timeout,
        )  # fmt: skip
    try:
        await _managed(version, "stop", timeout=limit)
    except StepTimedOutError:
        late = TimeoutError(f"stop() did not return within {limit:g}s")
        return _failed(version, "stop", late)
    except Exception as exc:
        return _failed(version, "stop", exc)
    version.set_status(PluginStatus.STOPPED)
    if live:
        gate.close("it is stopped")
    log.info("stopped plugin %s %s", slot.name, version.version)
    return None


async def retire_version(
    slot: PluginSlot, version: PluginVersion, *, reason: str
) -> PluginLifecycleError | None:
    """Release the version's registrations, ``cleanup()`` if it was initialized, and
    discard it from its slot; the cleanup's failure, if it failed."""
    failure: PluginLifecycleError | None = None
    for exc in version.scope.release():
        log.warning("plugin %s: releasing a registration failed: %s", slot.name, error_line(exc))
    if version.initialized:  # a workload's cleanup(db) is the host's: not managed
        try:
            await _managed(version, "cleanup")
        except Exception as exc:
            failure = _failed(version, "cleanup", exc)
    slot.discard(version, reason=reason)
    version.set_status(PluginStatus.UNLOADED)
    return failure
