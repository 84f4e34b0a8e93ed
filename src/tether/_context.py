"""``PluginContext``: the one object through which a plugin reaches the framework.

Every service a plugin can touch hangs off its context, behind its permission, and
everything a plugin registers through the context (hooks, subscriptions, services,
middleware) is undone when the plugin unloads. The shared machinery lives in a
:class:`Runtime`, one per manager.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether._config import TetherConfig, mask_secrets
from tether._durations import parse_duration
from tether._gate import Gate
from tether._hooks import HookRegistry, Registration
from tether._manifest import Manifest
from tether._metrics import MetricsCollector, MetricsStore
from tether._middleware import Middleware, MiddlewareRegistry
from tether._services import ServiceRegistry
from tether.errors import PermissionDeniedError, TetherError

if TYPE_CHECKING:
    from tether._cache import CacheManager
    from tether._database import DatabaseManager
    from tether._events import Event, EventBus, Subscription
    from tether._storage import PluginStorage, StateStore
    from tether.types import Router

__all__ = ["ConfigView", "PluginContext", "PluginLogger", "Runtime"]


class Runtime:
    """The machinery shared by every plugin of one manager.

    Databases, caches and the state store open lazily, on the first plugin that asks.
    ``state_directory`` holds the default SQLite files (``state.db``, ``app.db``).
    """

    def __init__(
        self,
        *,
        config: TetherConfig | None = None,
        state_directory: Path | None = None,
    ) -> None:
        from tether._events import EventBus

        self.config = config or TetherConfig()
        strict = self.config.plugins.strict
        self.hooks = HookRegistry()
        self.events: EventBus = EventBus(
            queue_size=self.config.events.queue_size,
            policy=self.config.events.policy,
            strict=strict,
        )
        self.services = ServiceRegistry(strict=strict)
        self.middleware = MiddlewareRegistry()
        self.metrics = MetricsStore()
        self.router: Router | None = None
        self.state_directory = state_directory or self.config.base_directory / ".tether"
        self._state_store: StateStore | None = None
        self._database: DatabaseManager | None = None
        self._caches: dict[str, CacheManager] = {}

    def _url(self, section: str, default_file: str) -> str:
        url = getattr(self.config, section).target
        if url:
            return str(url)
        self.state_directory.mkdir(parents=True, exist_ok=True)
        return str(self.state_directory / default_file)

    def state_store(self) -> StateStore:
        if self._state_store is None:
            from tether._storage import open_state_store

            self._state_store = open_state_store(self._url("state", "state.db"))
        return self._state_store

    def database(self) -> DatabaseManager:
        if self._database is None:
            from tether._database import open_database

            self._database = open_database(self._url("database", "app.db"))
        return self._database

    def cache(self, plugin: str) -> CacheManager:
        cache = self._caches.get(plugin)
        if cache is None:
            from tether._cache import open_cache

            cache = open_cache(self.config.cache.target, namespace=plugin)
            self._caches[plugin] = cache
        return cache

    def close(self) -> None:
        """Close what was opened (databases, caches, the state store)."""
        for closeable in (self._database, self._state_store, *self._caches.values()):
            close = getattr(closeable, "close", None)
            if close is not None:
                close()
        self._database = None
        self._state_store = None
        self._caches.clear()


class PluginLogger(logging.LoggerAdapter[logging.Logger]):
    """``ctx.logger``: a logger named after the plugin that carries structured fields.

    ``logger.with_fields(user_id=123).info("logged in")`` logs
    ``logged in user_id=123`` and puts the fields in the record's ``fields`` attribute.
    """

    def __init__(self, logger: logging.Logger, plugin: str, fields: Mapping[str, object]) -> None:
        super().__init__(logger, {"plugin": plugin, "fields": dict(fields)})

    def with_fields(self, **fields: object) -> PluginLogger:
        merged = {**self._fields, **fields}
        return PluginLogger(self.logger, str(self._extra["plugin"]), merged)

    @property
    def _extra(self) -> Mapping[str, object]:
        return self.extra or {}

    @property
    def _fields(self) -> dict[str, object]:
        fields = self._extra.get("fields")
        return dict(fields) if isinstance(fields, dict) else {}

    def set_level(self, level: str | int) -> None:
        self.logger.setLevel(level.upper() if isinstance(level, str) else level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        # process() cannot see the arguments; the fields must be %-escaped only when
        # logging will %-format the message, i.e. when there are arguments.
        if self.isEnabledFor(level):
            fields = self._fields
            if fields and args:
                rendered = " ".join(f"{k}={v}" for k, v in fields.items())
                msg = f"{msg} {rendered.replace('%', '%%')}"
                kwargs["extra"] = {**self._extra, **kwargs.get("extra", {})}
                kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
                self.logger.log(level, msg, *args, **kwargs)
                return
            kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
            super().log(level, msg, *args, **kwargs)

    def process(
        self, msg: object, kwargs: MutableMapping[str, Any]
    ) -> tuple[object, MutableMapping[str, Any]]:
        fields = self._fields
        extra = {**self._extra, **kwargs.get("extra", {})}
        kwargs["extra"] = extra
        if fields:
            rendered = " ".join(f"{k}={v}" for k, v in fields.items())
            return f"{msg} {rendered}", kwargs
        return msg, kwargs


_MISSING = object()


class ConfigView:
    """``ctx.config``: the framework config, read-only, with secrets removed."""

    def __init__(self, config: TetherConfig) -> None:
        data = config.model_dump(mode="json", exclude_none=True)
        # Other plugins' settings are theirs alone: keep only who is configured.
        for entry in data.get("plugins", {}).get("plugins", []):
            entry.pop("config", None)
            entry.pop("permissions", None)
        self._data = _remove_secrets(mask_secrets(data))

    def get(self, key: str, default: object = None) -> object:
        """The value at a dotted key (``database.host``), or ``default``."""
        node: object = self._data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return copy.deepcopy(node)

    def _typed(self, key: str, default: object, kind: type, label: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TetherError(
                f"config key '{key}' is {type(value).__name__}, not {label}",
                hint=f"set '{key}' to {label} in the framework config",
            )
        return value

    def get_string(self, key: str, default: str = "") -> str:
        return str(self._typed(key, default, str, "a string"))

    def get_int(self, key: str, default: int = 0) -> int:
        return int(self._typed(key, default, int, "an integer"))

    def get_float(self, key: str, default: float = 0.0) -> float:
        return float(self._typed(key, default, float, "a number"))

    def get_bool(self, key: str, default: bool = False) -> bool:
        return bool(self._typed(key, default, bool, "a boolean"))

    def get_duration(self, key: str, default: timedelta | None = None) -> timedelta:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            return default or timedelta(0)
        return parse_duration(value)

    def as_dict(self) -> dict[str, object]:
        return copy.deepcopy(self._data)


def _remove_secrets(data: object) -> Any:
    if isinstance(data, dict):
        return {k: _remove_secrets(v) for k, v in data.items() if v != "****"}
    if isinstance(data, list):
        return [_remove_secrets(v) for v in data]
    if isinstance(data, str):
        return data.replace(":****@", "@")
    return data


class PluginContext:
    """Capabilities handed to one plugin in ``initialize(ctx)``.

    ``logger``, ``metrics``, ``plugin_config`` and ``plugin_storage`` are always
    available; ``database``, ``cache``, ``config`` and ``router`` need the matching
    permission and raise :class:`~tether.errors.PermissionDeniedError` without it.
    """

    def __init__(
        self,
        *,
        manifest: Manifest,
        config: Mapping[str, object],
        permissions: frozenset[str],
        runtime: Runtime | None = None,
        gate: Gate | None = None,
    ) -> None:
        self._manifest = manifest
        self._config = dict(config)
        self._permissions = permissions
        self._runtime = runtime or Runtime()
        self._gate = gate or Gate(manifest.name)
        name = manifest.name
        self._logger = PluginLogger(logging.getLogger(f"tether.plugin.{name}"), name, {})
        self._metrics = MetricsCollector(self._runtime.metrics, name)
        self._releases: list[Callable[[], object]] = []
        self._storage: PluginStorage | None = None
        self._middleware: dict[str, Middleware] = {}

    # ------------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        return self._manifest.name

    @property
    def version(self) -> str:
        return self._manifest.version

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def gate(self) -> Gate:
        return self._gate

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def permissions(self) -> frozenset[str]:
        return self._permissions

    def has_permission(self, permission: str) -> bool:
        return permission in self._permissions

    def _require(self, permission: str) -> None:
        if permission not in self._permissions:
            raise PermissionDeniedError(self.name, permission)

    # ------------------------------------------------------------------ services

    @property
    def logger(self) -> PluginLogger:
        """A logger named ``tether.plugin.<name>``; always available."""
        return self._logger

    @property
    def metrics(self) -> MetricsCollector:
        """Counters, gauges and histograms labelled with this plugin; always available."""
        return self._metrics

    @property
    def database(self) -> DatabaseManager:
        """The framework's database (permission ``database``)."""
        self._require("database")
        return self._runtime.database()

    @property
    def cache(self) -> CacheManager:
        """A cache whose keys are this plugin's alone (permission ``cache``)."""
        self._require("cache")
        return self._runtime.cache(self.name)

    @property
    def config(self) -> ConfigView:
        """The framework config, read-only, secrets removed (permission ``config``)."""
        self._require("config")
        return ConfigView(self._runtime.config)

    @property
    def router(self) -> Router:
        """The host's router (permission ``router``); hosts without HTTP have none."""
        self._require("router")
        router = self._runtime.router
        if router is None:
            raise TetherError(
                f"plugin '{self.name}' asked for the router, but this host serves no HTTP routes",
                plugin=self.name,
                hint="run the plugin under `tether serve`",
            )
        # A host whose router can give each plugin its own view (so it knows who added a
        # route without guessing) offers ``for_context``.
        view = getattr(router, "for_context", None)
        return view(self) if callable(view) else router

    @property
    def plugin_config(self) -> dict[str, object]:
        """This plugin's own config (defaults applied, durations parsed), as a copy."""
        return copy.deepcopy(self._config)

    def replace_config(self, values: Mapping[str, object]) -> dict[str, object]:
        """Install new (validated) config; return the old. Used by the manager."""
        previous, self._config = self._config, dict(values)
        return previous

    @property
    def plugin_storage(self) -> PluginStorage:
        """Durable key/value storage that only this plugin can see."""
        if self._storage is None:
            from tether._storage import PluginStorage

            self._storage = PluginStorage(self._runtime.state_store(), self.name)
        return self._storage

    # ------------------------------------------------------------------ hooks

    def register_hook(
        self,
        hook_type: str,
        priority: int,
        handler: Callable[[Any], object],
        *,
        timeout: float | None = None,
    ) -> Registration:
        """Run ``handler`` at ``hook_type`` (higher priority first). Removed on unload."""
        registration = self._runtime.hooks.register(
            self.name, self._gate, hook_type, priority, handler, timeout=timeout
        )
        self.on_release(registration.remove)
        return registration

    # ------------------------------------------------------------------ events

    async def publish_event(self, event: str, data: object = None) -> Event:
        """Publish to every subscriber; waits for queue space under the ``wait`` policy."""
        return await self._runtime.events.publish(
            event, data, source=self.name, declared=self._manifest
        )

    def publish_event_nowait(self, event: str, data: object = None) -> Event:
        """Publish from synchronous code (or another thread) without waiting."""
        return self._runtime.events.publish_nowait(
            event, data, source=self.name, declared=self._manifest
        )

    def subscribe_event(self, event: str, handler: Callable[[Event], object]) -> Subscription:
        """Receive events named ``event`` (``user.*`` for a family). Removed on unload."""
        subscription = self._runtime.events.subscribe(
            self.name, self._gate, event, handler, declared=self._manifest
        )
        self.on_release(subscription.remove)
        return subscription

    # ------------------------------------------------------------------ services

    def export_service(self, name: str, service: object) -> None:
        """Offer ``service`` to other plugins as ``name``."""
        from tether._plugin import Plugin

        hidden = {
            n
            for n in dir(service)
            if not n.startswith("_") and inspect.getattr_static(service, n, None) is self
        }
        if isinstance(service, Plugin):
            hidden |= {
                "initialize",
                "start",
                "stop",
                "cleanup",
                "on_config_change",
                "config_schema",
            }
        self._runtime.services.export(
            self.name, self._gate, name, service, manifest=self._manifest, hidden=frozenset(hidden)
        )

    def import_service(self, plugin: str, name: str) -> Any:
        """A proxy for another plugin's service; it follows reloads of that plugin."""
        return self._runtime.services.import_(
            self.name, plugin, name, importer_manifest=self._manifest
        )

    # ------------------------------------------------------------------ middleware

    def register_middleware(
        self,
        name: str,
        handler: Callable[[Any, Any], object],
        priority: int = 100,
        routes: Sequence[str] | None = None,
    ) -> Middleware:
        """Wrap requests on ``routes`` (globs; none = every route). Removed on unload."""
        item = self._runtime.middleware.register(
            self.name, self._gate, name, handler, priority, routes
        )
        self._middleware[name] = item
        return item

    def unregister_middleware(self, name: str) -> None:
        self._runtime.middleware.unregister(self.name, name)
        self._middleware.pop(name, None)

    # ------------------------------------------------------------------ teardown

    def on_release(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` when the plugin unloads (last registered, first run)."""
        self._releases.append(callback)

    def release(self) -> list[BaseException]:
        """Undo everything registered through this context; return what failed."""
        failures: list[BaseException] = []
        runtime = self._runtime
        removers: tuple[Callable[[str], object], ...] = (
            runtime.hooks.remove_plugin,
            runtime.events.remove_plugin,
            runtime.middleware.remove_plugin,
            runtime.services.withdraw_plugin,
        )
        for remove in removers:
            try:
                remove(self.name)
            except Exception as exc:
                failures.append(exc)
        self._middleware.clear()
        while self._releases:
            callback = self._releases.pop()
            try:
                callback()
            except Exception as exc:
                failures.append(exc)
        return failures
