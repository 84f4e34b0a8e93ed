"""``Observability``: one manager's background checks, Prometheus registry and state writer.

Health, error thresholds and the enabled flags live in the manager itself; this hub
reads the manager through its public API and adds what runs in the background once a
host calls :meth:`Observability.start` (after starting the plugins): a task that polls
health checks, notices successful calls and retries disabled plugins after their
cooldown (``manager.check_thresholds``), and writes the state tables every
``state.flush_interval`` and at shutdown. ``observe(manager)`` gives a manager's one
hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tether._describe import error_line, error_text, type_name
from tether._state_tables import HookRow, MetricRow, PluginRow, PluginStateStore
from tether.errors import TetherError
from tether.observability._reloads import ReloadTally

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from tether._manager import PluginManager
    from tether._retries import FailedPlugin

__all__ = ["Observability", "observe"]

log = logging.getLogger("tether.observability")

_MAX_PENDING_ROWS = 10_000  # error rows kept for the state store between flushes
_MESSAGE_LIMIT = 500


class Observability:
    """Background checks, metrics and persistence for the plugins of one manager."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager
        self._lock = threading.Lock()
        self._pending: deque[MetricRow] = deque(maxlen=_MAX_PENDING_ROWS)
        self._gone: dict[str, tuple[PluginRow, list[HookRow]]] = {}
        self._loads_written = 0
        self._store: PluginStateStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._writing: asyncio.Future[None] | None = None  # the state store write under way
        self._persist = False
        self._registry: CollectorRegistry | None = None
        self.reloads = ReloadTally()
        """Every reload's outcome and duration, for the Prometheus reload families."""
        manager.on_error(self._on_error)
        manager.on_unload(self._on_unload)
        manager.on_reload(self.reloads.record)

    # ------------------------------------------------------------------ from the manager

    def _on_error(self, name: str, source: str, error: BaseException) -> None:
        labels = {"type": type_name(error), "source": source,
                  "message": error_text(error)[:_MESSAGE_LIMIT]}  # fmt: skip
        with self._lock:
            self._pending.append(MetricRow(name, "error", 1.0, datetime.now(UTC), labels))

    def _on_unload(self, name: str) -> None:
        """Keep the plugin's last row for the state store."""
        with contextlib.suppress(TetherError):
            self._gone[name] = (self._row(name), self._hook_rows(name))

    def _state_setting(self, key: str, default: timedelta) -> timedelta:
        """``state.flush_interval`` or ``state.retention`` (checked when the config is read)."""
        seconds: float | None = getattr(self.manager.config.state, key)
        return default if seconds is None else timedelta(seconds=seconds)

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
            self._store = PluginStateStore(self.manager.state_target)
        return self._store

    def _row(self, name: str) -> PluginRow:
        manager = self.manager
        health = manager.get_plugin_health(name)
        flag = manager.persisted_flag(name)
        error = health.last_error
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
            last_error=None if error is None else error_line(error)[:2000],
            last_error_at=health.last_error_at,
            load_time=health.load_time,
            load_duration_ms=None if duration is None else duration * 1000,
            path=manager.get_info(name).path,
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
        rows.extend(_failed_row(failed) for failed in self.manager.failed_plugins().values())
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
        return rows, hooks, metrics, self.manager.take_unsaved_switches()

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
            raise

    def flush(self) -> None:
        """Write every plugin's row, hook metrics and the new metric rows now."""
        self._write(self._snapshot())

    async def aflush(self) -> None:
        """``flush`` with the database write off the event loop.

        One write at a time, in the order of their snapshots: a write whose caller is
        cancelled still runs to its end in its thread, and the next waits for it, so an
        older snapshot can never land after a newer one (the last write at shutdown).
        """
        previous = self._writing
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(previous)
        writing = asyncio.ensure_future(asyncio.to_thread(self._write, self._snapshot()))
        self._writing = writing
        await asyncio.shield(writing)

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
                self.manager.check_thresholds()
                if now >= next_health:
                    next_health = now + health_every
                    await self.manager.check_health()
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
            log.warning("could not write the plugin state store at shutdown: %s", error_text(exc))
        finally:
            self._persist = False
            self.close()

    def close(self) -> None:
        """Close the state store connection (it reopens on the next write)."""
        store, self._store = self._store, None
        if store is not None:
            store.close()


_hubs: weakref.WeakKeyDictionary[PluginManager, Observability] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()


def _failed_row(failed: FailedPlugin) -> PluginRow:
    """The row of a plugin the host runs without (``required: false``, failed)."""
    return PluginRow(
        name=failed.name,
        version=failed.version,
        status="failed",
        lifecycle_status="failed",
        error_count=1,
        last_error=failed.reason[:2000],
        last_error_at=failed.at,
        path=failed.path,
    )


def observe(manager: PluginManager) -> Observability:
    """The one :class:`Observability` of ``manager`` (made on first use)."""
    with _hubs_lock:
        hub = _hubs.get(manager)
        if hub is None:
            hub = _hubs[manager] = Observability(manager)
        return hub
