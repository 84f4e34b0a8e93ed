"""``SyncPluginManager``: the blocking facade for callers without an event loop.

It owns one event loop running in a background thread and forwards each call to
the async :class:`~tether.PluginManager` on that loop, so plugin tasks started in
``start()`` keep running between calls. There is no second implementation.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any, Self, TypeVar

from tether._config import PluginConfig, TetherConfig
from tether._manager import PluginManager
from tether._resolver import Resolution
from tether.observability import ErrorThreshold, PluginHealth
from tether.types import PluginInfo

__all__ = ["SyncPluginManager"]

T = TypeVar("T")


class SyncPluginManager:
    """Blocking versions of the :class:`PluginManager` methods; use as a context manager."""

    def __init__(self, manager: PluginManager | None = None, **options: Any) -> None:
        self.manager = manager or PluginManager(**options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tether-sync-loop", daemon=True
        )
        self._thread.start()
        self._closed = False

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("this SyncPluginManager is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def load_plugin(
        self,
        path: Path | str,
        config: PluginConfig | Mapping[str, object] | None = None,
        *,
        retries: int = 0,
        retry_backoff: float = 0.1,
    ) -> PluginInfo:
        return self._run(
            self.manager.load_plugin(path, config, retries=retries, retry_backoff=retry_backoff)
        )

    def load_plugins_from_config(
        self, config: TetherConfig | Path | str | None = None
    ) -> list[PluginInfo]:
        return self._run(self.manager.load_plugins_from_config(config))

    def unload_plugin(self, name: str, *, force: bool = False) -> None:
        self._run(self.manager.unload_plugin(name, force=force))

    def initialize_all(self) -> None:
        self._run(self.manager.initialize_all())

    def start_all(self) -> None:
        self._run(self.manager.start_all())

    def update_plugin_config(self, name: str, config: Mapping[str, object]) -> None:
        self._run(self.manager.update_plugin_config(name, config))

    def stop_all(self, *, timeout: float | None = None) -> None:
        self._run(self.manager.stop_all(timeout=timeout))

    def get_plugin(self, name: str) -> object:
        return self.manager.get_plugin(name)

    def list_plugins(self) -> list[PluginInfo]:
        return self.manager.list_plugins()

    def is_loaded(self, name: str) -> bool:
        return self.manager.is_loaded(name)

    def resolve_dependencies(self) -> Resolution:
        return self.manager.resolve_dependencies()

    def get_dependency_graph(self) -> dict[str, list[str]]:
        return self.manager.get_dependency_graph()

    def get_plugin_health(self, name: str) -> PluginHealth:
        return self.manager.get_plugin_health(name)

    def get_all_health(self) -> dict[str, PluginHealth]:
        return self.manager.get_all_health()

    def set_error_threshold(self, name: str, threshold: ErrorThreshold | None) -> None:
        self.manager.set_error_threshold(name, threshold)

    def enable_plugin(self, name: str) -> PluginInfo:
        return self._run(self.manager.enable_plugin(name))

    def disable_plugin(self, name: str, *, force: bool = False) -> PluginInfo:
        return self._run(self.manager.disable_plugin(name, force=force))

    def close(self) -> None:
        """Stop and unload every plugin, then stop the loop thread."""
        if self._closed:
            return
        try:
            self._run(self.manager.aclose())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
