"""Calling a plugin's lifecycle methods (``initialize``, ``start``, ``stop``, ``cleanup``).

The manager calls these itself, outside the seam: the plugin's gate is shut while it
starts and stops, and these calls are what open and close it. A method may be plain or
``async def``. Under a time limit, an async method is cancelled when it runs past it;
a plain one runs in a daemon thread so that a method that never returns cannot block
the event loop or hold up the interpreter's exit (it is abandoned, not killed: only
process isolation can kill).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import Callable

__all__ = ["StepTimedOutError", "call_step", "in_daemon_thread"]


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
