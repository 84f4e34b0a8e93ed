"""``SyncPluginManager``: the blocking facade for callers without an event loop.

It owns one event loop running in a background thread and forwards each call to
the async :class:`~tether.PluginManager` on that loop, so plugin tasks started in
``start()`` keep running between calls. There is no second implementation: every
public method of the manager is here, blocking where the manager's is ``async``
(``aclose`` is ``close``), and a test holds the two lists equal.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Self, TypeVar

from tether._bounded import settle_leftovers
from tether._config import PluginConfig, TetherConfig
from tether._manager import ErrorListener, PluginManager

if TYPE_CHECKING:
    from tether._audit import CapabilityUse
    from tether._context import PluginScope
    from tether._contracts import Contract
    from tether._handle import PluginHandle
    from tether._health import HealthCheckResult, PluginHealth
    from tether._lifecycle import PluginStatus
    from tether._manifest import Manifest
    from tether._reload_result import ReloadConfig, ReloadResult
    from tether._resolver import Resolution
    from tether._retries import FailedPlugin
    from tether._slots import SlotEvent
    from tether._state_tables import PersistedFlag
    from tether._thresholds import ErrorThreshold, ThresholdStatus
    from tether._watch import PluginWatcher
    from tether.types import PluginContext, PluginInfo

__all__ = ["SyncPluginManager"]

T = TypeVar("T")


class SyncPluginManager:
    """Blocking versions of the :class:`PluginManager` methods; use as a context manager.

    Wraps ``manager``, or a new one made with ``config``, ``state_directory`` and
    ``stop_timeout`` when none is given.
    """

    def __init__(
        self,
        manager: PluginManager | None = None,
        *,
        config: TetherConfig | None = None,
        state_directory: str | Path | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        self.manager = manager or PluginManager(
            config=config, state_directory=state_directory, stop_timeout=stop_timeout
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tether-sync-loop", daemon=True
        )
        self._thread.start()
        self._closed = False

    def run(self, coro: Coroutine[object, object, T]) -> T:
        """Run a coroutine on the facade's event loop (where the plugins live); wait for it."""
        if self._closed:
            coro.close()
            raise RuntimeError("this SyncPluginManager is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # ------------------------------------------------------------------ loading

    def load_plugin(
        self,
        path: Path | str,
        config: PluginConfig | Mapping[str, object] | None = None,
        *,
        retries: int | None = None,
        retry_backoff: float | None = None,
    ) -> PluginInfo:
        return self.run(
            self.manager.load_plugin(path, config, retries=retries, retry_backoff=retry_backoff)
        )

    def load_plugins_from_config(
        self, config: TetherConfig | Path | str | None = None
    ) -> list[PluginInfo]:
        return self.run(self.manager.load_plugins_from_config(config))

    def unload_plugin(self, name: str, *, force: bool = False) -> None:
        self.run(self.manager.unload_plugin(name, force=force))

    def reload_plugin(self, name: str, *, config: ReloadConfig | None = None) -> ReloadResult:
        return self.run(self.manager.reload_plugin(name, config=config))

    def rollback_plugin(self, name: str, *, config: ReloadConfig | None = None) -> ReloadResult:
        return self.run(self.manager.rollback_plugin(name, config=config))

    def reload_history(self, name: str | None = None, *, limit: int = 50) -> list[ReloadResult]:
        return self.manager.reload_history(name, limit=limit)

    def on_reload(self, listener: Callable[[ReloadResult], None]) -> None:
        self.manager.on_reload(listener)

    def in_grace_period(self, name: str) -> bool:
        return self.manager.in_grace_period(name)

    # ------------------------------------------------------------------ lifecycle

    def initialize_all(self) -> None:
        self.run(self.manager.initialize_all())

    def start_all(self) -> None:
        self.run(self.manager.start_all())

    def update_plugin_config(self, name: str, config: Mapping[str, object]) -> None:
        self.run(self.manager.update_plugin_config(name, config))

    def stop_all(self, *, timeout: float | None = None) -> None:
        self.run(self.manager.stop_all(timeout=timeout))

    def enable_plugin(self, name: str) -> PluginInfo:
        return self.run(self.manager.enable_plugin(name))

    def disable_plugin(
        self, name: str, *, force: bool = False, reason: str | None = None
    ) -> PluginInfo:
        return self.run(self.manager.disable_plugin(name, force=force, reason=reason))

    def set_enabled(
        self, name: str, *, enabled: bool, reason: str | None = None, persist: bool = True
    ) -> bool:
        return self.manager.set_enabled(name, enabled=enabled, reason=reason, persist=persist)

    def check_health(self, name: str | None = None) -> dict[str, HealthCheckResult]:
        return self.run(self.manager.check_health(name))

    # ------------------------------------------------------------------ queries

    def get_plugin(self, name: str) -> object:
        return self.manager.get_plugin(name)

    def get_manifest(self, name: str) -> Manifest:
        return self.manager.get_manifest(name)

    def get_context(self, name: str) -> PluginContext:
        return self.manager.get_context(name)

    def get_scope(self, name: str) -> PluginScope:
        return self.manager.get_scope(name)

    def get_contract(self, name: str) -> Contract:
        return self.manager.get_contract(name)

    def get_status(self, name: str) -> PluginStatus:
        return self.manager.get_status(name)

    def get_info(self, name: str) -> PluginInfo:
        return self.manager.get_info(name)

    def get_handle(self, name: str) -> PluginHandle:
        return self.manager.get_handle(name)

    def get_history(self, name: str) -> list[SlotEvent]:
        return self.manager.get_history(name)

    def get_timeouts(self, name: str) -> dict[str, float]:
        return self.manager.get_timeouts(name)

    def get_plugin_settings(self, name: str) -> PluginConfig:
        return self.manager.get_plugin_settings(name)

    def last_error(self, name: str) -> BaseException | None:
        return self.manager.last_error(name)

    def undeclared_capabilities(self, name: str | None = None) -> list[CapabilityUse]:
        return self.manager.undeclared_capabilities(name)

    def list_plugins(self) -> list[PluginInfo]:
        return self.manager.list_plugins()

    def is_loaded(self, name: str) -> bool:
        return self.manager.is_loaded(name)

    def resolve_dependencies(self) -> Resolution:
        return self.manager.resolve_dependencies()

    def get_dependency_graph(self) -> dict[str, list[str]]:
        return self.manager.get_dependency_graph()

    def dependents(self, name: str) -> list[str]:
        return self.manager.dependents(name)

    # ------------------------------------------------------------------ health, errors

    def get_plugin_health(self, name: str) -> PluginHealth:
        return self.manager.get_plugin_health(name)

    def get_all_health(self) -> dict[str, PluginHealth]:
        return self.manager.get_all_health()

    def is_degraded(self, name: str) -> bool:
        return self.manager.is_degraded(name)

    def failed_plugins(self) -> dict[str, FailedPlugin]:
        return self.manager.failed_plugins()

    def health_status(self) -> str:
        return self.manager.health_status()

    def readiness(self) -> tuple[bool, dict[str, str]]:
        return self.manager.readiness()

    def set_error_threshold(self, name: str, threshold: ErrorThreshold | None) -> None:
        self.manager.set_error_threshold(name, threshold)

    def reset_threshold(self, name: str) -> None:
        self.manager.reset_threshold(name)

    def record_success(self, name: str) -> None:
        self.manager.record_success(name)

    def check_thresholds(self) -> list[str]:
        return self.manager.check_thresholds()

    def threshold_status(self, name: str) -> ThresholdStatus | None:
        return self.manager.threshold_status(name)

    def on_error(self, listener: ErrorListener) -> None:
        self.manager.on_error(listener)

    def on_unload(self, listener: Callable[[str], None]) -> None:
        self.manager.on_unload(listener)

    @property
    def state_target(self) -> str:
        return self.manager.state_target

    def persisted_flag(self, name: str) -> PersistedFlag:
        return self.manager.persisted_flag(name)

    def take_unsaved_switches(self) -> frozenset[str]:
        return self.manager.take_unsaved_switches()

    def watch(
        self, *plugins: str, debounce: float | None = None, config: ReloadConfig | None = None
    ) -> PluginWatcher:
        """The started watcher, running on the facade's loop: stop it with
        ``run(watcher.stop())``, or let ``close`` stop it."""
        return self.run(self.manager.watch(*plugins, debounce=debounce, config=config))

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop and unload every plugin, then stop the loop thread (the manager's ``aclose``).

        Tasks plugins left on the loop are cancelled first, and given a moment to end
        (``tether.run_host`` does the same), so none is destroyed while pending.
        """
        if self._closed:
            return
        try:
            self.run(self.manager.aclose())
            self.run(settle_leftovers())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
