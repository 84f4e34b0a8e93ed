"""``Observability``: one manager's health, error thresholds, metrics and state store writer.

The manager creates one on first use (``manager.observability``) and tells it when a
plugin is loaded, unloaded or switched on or off; the rest reads live state through
the manager's public API. Nothing here runs in the background until a host calls
:meth:`Observability.start` (after starting the plugins): then a task polls health checks,
tries disabled plugins again after their cooldown, notices successful hook calls
(for ``reset_on_success``) and writes the state store every ``state.flush_interval``
and at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from tether._config import PluginConfig
from tether._durations import parse_duration
from tether._gate import Gate, GateState
from tether._lifecycle import PluginStatus
from tether.errors import TetherError
from tether.observability._health import HealthChecks, PluginHealth
from tether.observability._thresholds import (
    THRESHOLD_EVENT,
    ErrorThreshold,
    ErrorThresholds,
    merge_settings,
)
from tether.observability.state import (
    HookRow,
    MetricRow,
    PersistedFlag,
    PluginRow,
    PluginStateStore,
    read_enabled_flags,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from tether._manager import PluginManager

__all__ = ["Observability"]

log = logging.getLogger("tether.observability")

_MAX_PENDING_ROWS = 10_000  # error rows kept for the state store between flushes
_MESSAGE_LIMIT = 500


def _setting(extra: dict[str, object] | None, key: str, default: timedelta) -> timedelta:
    value = (extra or {}).get(key)
    if value is None:
        return default
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise TetherError(
            f"invalid config: state.{key}: {exc}", hint=f"set state.{key} to a duration like 10s"
        ) from None


class Observability:
    """Health, thresholds, metrics and persistence for the plugins of one manager."""

    def __init__(
        self, manager: PluginManager, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.manager = manager
        config = manager.config
        self.thresholds = ErrorThresholds(
            disable=self._threshold_disable,
            enable=self._threshold_enable,
            alert=self._alert,
            clock=clock,
        )
        self.health = HealthChecks(timeout=config.plugins.health_check_timeout)
        self._lock = threading.Lock()
        self._errors_by_type: dict[str, dict[str, int]] = {}
        self._pending: deque[MetricRow] = deque(maxlen=_MAX_PENDING_ROWS)
        self._listeners: dict[str, tuple[Gate, Callable[[str, BaseException], None]]] = {}
        self._explicit: dict[str, ErrorThreshold | None] = {}
        self._persisted: dict[str, PersistedFlag] | None = None
        self._unsaved: set[str] = set()  # operator switches the state store has not taken yet
        self._gone: dict[str, tuple[PluginRow, list[HookRow]]] = {}
        self._loads_written = 0
        self._successes: dict[str, int] = {}
        self._store: PluginStateStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._persist = False
        self._registry: CollectorRegistry | None = None

    # ------------------------------------------------------------------ settings

    @property
    def state_target(self) -> str:
        """Where the state tables live: ``state.url``, else ``<state directory>/state.db``."""
        target = self.manager.config.state.target
        if target:
            return str(target)
        return str(Path(self.manager.runtime.state_directory) / "state.db")

    def _state_setting(self, key: str, default: timedelta) -> timedelta:
        return _setting(self.manager.config.state.model_extra, key, default)

    # ------------------------------------------------------------------ from the manager

    def plugin_loaded(self, name: str, gate: Gate, settings: PluginConfig) -> PersistedFlag | None:
        """Watch a new plugin's errors, give it its threshold; its persisted flag if disabled."""
        listener = functools.partial(self._on_error, name)
        gate.error_listeners.append(listener)
        self._listeners[name] = (gate, listener)
        if name in self._explicit:
            threshold = self._explicit[name]
        else:
            section = self.manager.config.plugins.error_threshold
            threshold = merge_settings(section, settings.error_threshold)
        self.thresholds.set(name, threshold)
        self._successes[name] = self._succeeded(name)  # hook metrics outlive a reload
        flag = self._flags().get(name)
        return flag if flag is not None and not flag.enabled else None

    def plugin_unloaded(self, name: str) -> None:
        """Stop watching a plugin; keep its last row for the state store."""
        with contextlib.suppress(TetherError):
            self._gone[name] = (self._row(name), self._hook_rows(name))
        gate, listener = self._listeners.pop(name, (None, None))
        if gate is not None and listener in gate.error_listeners:
            gate.error_listeners.remove(listener)
        self.health.forget(name)
        self.thresholds.set(name, None)
        with self._lock:
            self._errors_by_type.pop(name, None)

    def plugin_switched(self, name: str, *, enabled: bool, reason: str | None) -> None:
        """An operator enabled or disabled ``name``: remember it, and write it through."""
        flag = PersistedFlag(enabled, None if enabled else reason)
        self._flags()[name] = flag
        if enabled:
            self.thresholds.reset(name)
        try:
            self._open_store().set_enabled(name, enabled, flag.reason)
        except TetherError as exc:
            self._unsaved.add(name)
            log.warning("could not save that plugin %s is %s: %s", name,
                        "enabled" if enabled else "disabled", exc)  # fmt: skip

    def _flags(self) -> dict[str, PersistedFlag]:
        if self._persisted is None:
            try:
                self._persisted = read_enabled_flags(self.state_target)
            except TetherError as exc:
                log.warning("could not read which plugins are disabled: %s", exc)
                self._persisted = {}
        return self._persisted

    def persisted_flag(self, name: str) -> PersistedFlag:
        return self._flags().get(name, PersistedFlag(enabled=True))

    def _on_error(self, name: str, source: str, error: BaseException) -> None:
        kind = type(error).__name__
        now = datetime.now(UTC)
        labels = {"type": kind, "source": source, "message": str(error)[:_MESSAGE_LIMIT]}
        with self._lock:
            counts = self._errors_by_type.setdefault(name, {})
            counts[kind] = counts.get(kind, 0) + 1
            self._pending.append(MetricRow(name, "error", 1.0, now, labels))
        self.thresholds.record_error(name, source, error)

    def errors_by_type(self, name: str | None = None) -> dict[str, dict[str, int]]:
        """Plugin -> exception type -> errors recorded since the plugin was loaded."""
        with self._lock:
            return {
                plugin: dict(counts)
                for plugin, counts in self._errors_by_type.items()
                if name is None or plugin == name
            }

    # ------------------------------------------------------------------ thresholds

    def set_error_threshold(self, name: str, threshold: ErrorThreshold | None) -> None:
        """Override the config's threshold for ``name`` (kept across reloads); None: none."""
        self._explicit[name] = threshold
        self.thresholds.set(name, threshold)

    def record_success(self, name: str) -> None:
        self.thresholds.record_success(name)

    def _threshold_disable(self, name: str, reason: str) -> None:
        with contextlib.suppress(TetherError):
            self.manager.set_enabled(name, enabled=False, reason=reason, persist=False)

    def _threshold_enable(self, name: str) -> bool:
        try:
            return self.manager.set_enabled(name, enabled=True, persist=False)
        except TetherError:
            return False

    def _alert(self, name: str, data: dict[str, object]) -> None:
        try:
            self.manager.runtime.events.publish_nowait(THRESHOLD_EVENT, data)
        except TetherError as exc:
            log.warning("could not publish %s for plugin %s: %s", THRESHOLD_EVENT, name, exc)

    def _succeeded(self, name: str) -> int:
        metrics = self.manager.runtime.hooks.metrics(name).values()
        return sum(m.execution_count - m.error_count for m in metrics)

    def _notice_successes(self) -> None:
        """Hook calls that succeeded since the last look count as successes."""
        for info in self.manager.list_plugins():
            if self.thresholds.get(info.name) is None:
                continue
            succeeded = self._succeeded(info.name)
            if succeeded > self._successes.get(info.name, 0):
                self.thresholds.record_success(info.name)
            self._successes[info.name] = succeeded

    # ------------------------------------------------------------------ health

    def plugin_health(self, name: str) -> PluginHealth:
        """The reference's PluginHealth for a loaded plugin (``PluginNotFoundError`` else)."""
        manager = self.manager
        info = manager.get_info(name)
        gate = manager.get_gate(name)
        return PluginHealth(
            name=name,
            version=info.version,
            status=info.status,
            enabled=info.enabled,
            error_count=gate.error_count,
            last_error=gate.last_error,
            last_error_at=gate.last_error_at,
            hook_metrics=manager.runtime.hooks.metrics(name),
            load_time=info.load_time,
            load_duration=self._load_duration(name),
            gate=gate.state,
            unavailable_reason=gate.closed_reason if gate.state is GateState.CLOSED else None,
            in_flight=gate.in_flight,
            degraded=self.health.is_degraded(name),
            last_check=self.health.result(name),
            threshold=self.thresholds.status(name),
            errors_by_type=self.errors_by_type(name).get(name, {}),
        )

    def all_health(self) -> dict[str, PluginHealth]:
        return {info.name: self.plugin_health(info.name) for info in self.manager.list_plugins()}

    def _load_duration(self, name: str) -> float | None:
        for attempt in reversed(self.manager.load_attempts):
            if attempt.plugin == name and attempt.status == "success":
                return attempt.duration
        return None

    async def check_health(self, name: str | None = None) -> None:
        """Run the ``health_check()`` of one running plugin, or of every one, now."""
        names = [name] if name is not None else [i.name for i in self.manager.list_plugins()]
        checks = []
        for plugin in names:
            if self.manager.get_status(plugin) is PluginStatus.RUNNING:
                instance = self.manager.get_plugin(plugin)
                checks.append(self.health.check(plugin, instance, self.manager.get_gate(plugin)))
        await asyncio.gather(*checks)

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """Whether every plugin is enabled and running; the others with the reason."""
        waiting = {
            name: health.not_ready_reason or ""
            for name, health in self.all_health().items()
            if not health.is_ready
        }
        return not waiting, waiting

    # ------------------------------------------------------------------ metrics

    def registry(self) -> CollectorRegistry:
        """This manager's Prometheus registry (tether's collector plus process metrics)."""
        if self._registry is None:
            from tether.observability._prometheus import create_registry

            self._registry = create_registry(self.manager)
        return self._registry

    def render_metrics(self) -> bytes:
        """The registry in Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry())

    # ------------------------------------------------------------------ the state store

    def _open_store(self) -> PluginStateStore:
        if self._store is None:
            self._store = PluginStateStore(self.state_target)
        return self._store

    def _row(self, name: str) -> PluginRow:
        health = self.plugin_health(name)
        flag = self.persisted_flag(name)
        error = health.last_error
        info = self.manager.get_info(name)
        duration = health.load_duration
        return PluginRow(
            name=name,
            version=health.version,
            status=health.state,
            lifecycle_status=health.status.value,
            enabled=flag.enabled,
            disabled_reason=flag.reason,
            degraded=health.degraded,
            error_count=health.error_count,
            last_error=None if error is None else f"{type(error).__name__}: {error}"[:2000],
            last_error_at=health.last_error_at,
            load_time=health.load_time,
            load_duration_ms=None if duration is None else duration * 1000,
            path=info.path,
        )

    def _hook_rows(self, name: str) -> list[HookRow]:
        return [
            HookRow(name, hook, m.execution_count, m.total_duration.total_seconds() * 1000,
                    m.error_count)
            for hook, m in self.manager.runtime.hooks.metrics(name).items()
        ]  # fmt: skip

    def _snapshot(self) -> tuple[list[PluginRow], list[HookRow], list[MetricRow], frozenset[str]]:
        gone, self._gone = self._gone, {}
        rows = [row for row, _ in gone.values()]
        hooks = [hook for _, hook_rows in gone.values() for hook in hook_rows]
        for info in self.manager.list_plugins():
            rows.append(self._row(info.name))
            hooks.extend(self._hook_rows(info.name))
        with self._lock:
            metrics = list(self._pending)
            self._pending.clear()
        attempts = self.manager.load_attempts[self._loads_written :]
        self._loads_written += len(attempts)
        for attempt in attempts:
            labels = {"status": attempt.status}
            if attempt.error:
                labels["error"] = attempt.error[:_MESSAGE_LIMIT]
            metrics.append(
                MetricRow(attempt.plugin, "load_duration_ms", attempt.duration * 1000,
                          attempt.at, labels)
            )  # fmt: skip
            ok = 1.0 if attempt.status == "success" else 0.0
            metrics.append(MetricRow(attempt.plugin, "load_success", ok, attempt.at, labels))
        unsaved, self._unsaved = frozenset(self._unsaved), set()
        return rows, hooks, metrics, unsaved

    def _write(
        self, snapshot: tuple[list[PluginRow], list[HookRow], list[MetricRow], frozenset[str]]
    ) -> None:
        rows, hooks, metrics, unsaved = snapshot
        retention = self._state_setting("retention", timedelta(days=7))
        try:
            self._open_store().write(rows, hooks, metrics, switched=unsaved, retention=retention)
        except TetherError:
            with self._lock:  # keep the rows for the next try, as far as there is room
                self._pending.extendleft(reversed(metrics))
            self._unsaved |= unsaved
            raise

    def flush(self) -> None:
        """Write every plugin's row, hook metrics and the new metric rows now."""
        self._write(self._snapshot())

    async def aflush(self) -> None:
        """``flush`` with the database write off the event loop."""
        await asyncio.to_thread(self._write, self._snapshot())

    # ------------------------------------------------------------------ background

    @property
    def is_running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, *, persist: bool = True) -> None:
        """Start the background task (health checks, cooldowns, state store writes).

        With ``persist`` the state store is opened now (an unreachable one fails here)
        and written every ``state.flush_interval`` (10s) and by :meth:`aclose`.
        """
        if self.is_running:
            return
        self._persist = persist
        self.health.timeout = self.manager.config.plugins.health_check_timeout
        if persist:
            await asyncio.to_thread(self._open_store)
        self._task = asyncio.create_task(self._run(), name="tether-observability")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        health_every = self.manager.config.plugins.health_check_interval
        flush_every = self._state_setting("flush_interval", timedelta(seconds=10)).total_seconds()
        tick = min(1.0, health_every, flush_every or 1.0)
        next_health = loop.time()
        next_flush = loop.time() + flush_every
        while True:
            now = loop.time()
            try:
                self.thresholds.check_cooldowns()
                self._notice_successes()
                if now >= next_health:
                    next_health = now + health_every
                    await self.check_health()
                if self._persist and now >= next_flush:
                    next_flush = now + flush_every
                    await self.aflush()
            except Exception:
                log.exception("observability: a periodic task failed")
            await asyncio.sleep(tick)

    async def aclose(self) -> None:
        """Stop the background task; write the state store one last time if persisting."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            if self._persist:
                await self.aflush()
        except TetherError as exc:
            log.warning("could not write the plugin state store at shutdown: %s", exc)
        finally:
            self._persist = False
            self.close()

    def close(self) -> None:
        """Close the state store connection (it reopens on the next write)."""
        store, self._store = self._store, None
        if store is not None:
            store.close()
