"""Plugin health: the reference's ``PluginHealth``, and polling plugins' ``health_check()``.

``PluginHealth`` is a snapshot built from live state: the plugin's lifecycle status,
its gate (errors, calls in flight, why it refuses calls), its hooks' metrics, its
load, its last health check and its error threshold.

A plugin may define ``health_check()`` (plain or ``async def``). It passes when it
returns anything but ``False`` without raising within the time limit. A failing check
marks the plugin *degraded* (a flag beside the lifecycle status, which does not
change) and is recorded on its gate as a :class:`~tether.errors.HealthCheckError`, so
it counts as one of the plugin's errors (and against its error threshold). The next
passing check clears the flag. Checks enter the plugin through the seam, like any
call: a plugin that is not running, disabled or reloading is not checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tether._callstats import CallMetrics
from tether._describe import error_line
from tether._gate import GateState
from tether._hooks import HookMetrics
from tether._lifecycle import PluginStatus
from tether._seam import Entry
from tether.errors import CallTimeoutError, HealthCheckError, PluginUnavailableError

if TYPE_CHECKING:
    from tether._gate import Door
    from tether._thresholds import ThresholdStatus

__all__ = ["HealthCheckResult", "HealthChecks", "PluginHealth"]


@dataclass(frozen=True, slots=True)
class HealthCheckResult:
    """One run of a plugin's ``health_check()``."""

    ok: bool
    checked_at: datetime
    duration: float
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "checked_at": self.checked_at.isoformat(),
            "duration_seconds": self.duration,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class PluginHealth:
    """The reference's ``PluginHealth`` for one plugin, and what tether knows besides.

    ``status`` is the lifecycle status; ``state`` folds in ``enabled`` and ``degraded``
    (``disabled``, ``degraded`` or the status). ``last_error`` is the last error
    recorded on the plugin's gate, whatever raised it.
    """

    name: str
    version: str
    status: PluginStatus
    enabled: bool
    error_count: int
    last_error: BaseException | None
    last_error_at: datetime | None
    hook_metrics: Mapping[str, HookMetrics]
    load_time: datetime | None = None
    load_duration: float | None = None
    gate: GateState = GateState.CLOSED
    unavailable_reason: str | None = None
    in_flight: int = 0
    degraded: bool = False
    last_check: HealthCheckResult | None = None
    threshold: ThresholdStatus | None = None
    errors_by_type: Mapping[str, int] = field(default_factory=dict)
    calls: Mapping[str, CallMetrics] = field(default_factory=dict)

    @property
    def state(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.degraded and self.status is PluginStatus.RUNNING:
            return "degraded"
        return self.status.value

    @property
    def is_ready(self) -> bool:
        """Enabled, running, and taking calls (a held gate, during a reload, counts)."""
        return (
            self.enabled
            and self.status is PluginStatus.RUNNING
            and self.gate is not GateState.CLOSED
        )

    @property
    def not_ready_reason(self) -> str | None:
        if self.is_ready:
            return None
        if not self.enabled:
            return self.unavailable_reason or "it is disabled"
        if self.status is PluginStatus.ERROR:
            return self.unavailable_reason or "it failed"
        if self.status is not PluginStatus.RUNNING:
            return f"it is {self.status.value}"
        return self.unavailable_reason or "its gate is closed"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: durations in seconds, times in ISO 8601, the error as text."""
        error = self.last_error
        return {
            "name": self.name,
            "version": self.version,
            "status": self.status.value,
            "state": self.state,
            "enabled": self.enabled,
            "ready": self.is_ready,
            "degraded": self.degraded,
            "error_count": self.error_count,
            "last_error": None if error is None else error_line(error),
            "last_error_at": _iso(self.last_error_at),
            "errors_by_type": dict(self.errors_by_type),
            "hook_metrics": {
                hook: {
                    "execution_count": m.execution_count,
                    "total_duration_seconds": m.total_duration.total_seconds(),
                    "average_duration_seconds": m.average_duration.total_seconds(),
                    "error_count": m.error_count,
                }
                for hook, m in self.hook_metrics.items()
            },
            "load_time": _iso(self.load_time),
            "load_duration_seconds": self.load_duration,
            "gate": self.gate.value,
            "unavailable_reason": self.unavailable_reason,
            "in_flight": self.in_flight,
            "last_health_check": None if self.last_check is None else self.last_check.to_dict(),
            "error_threshold": None if self.threshold is None else self.threshold.to_dict(),
            "calls": {source: m.to_dict() for source, m in self.calls.items()},
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# --------------------------------------------------------------------------- polling


class _CheckTimedOutError(Exception):
    pass


async def _in_daemon_thread(fn: Callable[[], object], timeout: float) -> object:
    """Run a blocking check in a daemon thread: one that never returns cannot hold up exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def settle(ok: bool, value: object) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result: object = fn()
        except BaseException as exc:
            ok, result = False, exc
        else:
            ok = True
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, ok, result)

    threading.Thread(target=run, name="tether-health-check", daemon=True).start()
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise _CheckTimedOutError from None


class _Exited(Exception):  # noqa: N818 - a carrier, not an error of its own
    """A check's ``SystemExit`` or ``KeyboardInterrupt``, kept from its task: asyncio
    re-raises those two out of the event loop."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


async def _kept(entry: Entry) -> object:
    try:
        return await entry.acall()
    except (SystemExit, KeyboardInterrupt) as exc:
        raise _Exited(exc) from exc


async def _run_check(entry: Entry, timeout: float) -> object:
    """Run a check through its entry: async under the watchdog, sync in a daemon thread."""
    if entry.is_async:
        # In a task of its own: the watchdog cancels it at the limit, and a check that
        # swallows that is left behind (cancelled again) rather than waited for.
        task = asyncio.ensure_future(_kept(entry))
        done, _ = await asyncio.wait({task}, timeout=timeout * 2 + 0.1)
        if not done:
            task.cancel()
            raise _CheckTimedOutError
        try:
            return task.result()
        except CallTimeoutError:
            raise _CheckTimedOutError from None
        except _Exited as exc:
            raise exc.error from None
    result = await _in_daemon_thread(entry.call, timeout)
    if inspect.isawaitable(result):
        try:
            async with asyncio.timeout(timeout):
                return await result
        except TimeoutError:
            raise _CheckTimedOutError from None
    return result


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class HealthChecks:
    """The latest ``health_check()`` result of each plugin, and the code that runs them."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._results: dict[str, HealthCheckResult] = {}

    def result(self, plugin: str) -> HealthCheckResult | None:
        return self._results.get(plugin)

    def is_degraded(self, plugin: str) -> bool:
        result = self._results.get(plugin)
        return result is not None and not result.ok

    def forget(self, plugin: str) -> None:
        self._results.pop(plugin, None)

    async def check(self, door: Door, instance: object) -> HealthCheckResult | None:
        """Run ``instance.health_check()`` once through ``door``; None if it has none, or
        the door is shut (a plugin that is not running, disabled or reloading)."""
        fn = getattr(instance, "health_check", None)
        if not callable(fn) or not door.is_open:
            return None
        # The check's own time limit, whatever the plugin's chain says about calls; its
        # failure is recorded below, once, as a HealthCheckError (so no recovery link).
        chain = door.chain.with_timeout(self.timeout, without=("recovery",))
        entry = Entry(door, fn, "health_check", chain=chain)
        started = time.perf_counter()
        error: str | None = None
        try:
            value = await _run_check(entry, self.timeout)
        except PluginUnavailableError:
            return None
        except _CheckTimedOutError:
            error = f"health_check() did not return within {self.timeout:g}s"
        except asyncio.CancelledError as exc:
            if _being_cancelled():
                raise  # the caller is cancelling the check, not the plugin failing it
            error = f"health_check() raised {error_line(exc)}"
        except BaseException as exc:
            error = f"health_check() raised {error_line(exc)}"
        else:
            if value is False:
                error = "health_check() returned False"
        result = HealthCheckResult(
            ok=error is None,
            checked_at=datetime.now(UTC),
            duration=time.perf_counter() - started,
            error=error,
        )
        self._results[door.plugin] = result
        if error is not None:
            door.gate.record_error(HealthCheckError(door.plugin, error), source="health_check")
        return result
