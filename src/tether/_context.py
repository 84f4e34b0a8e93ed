"""The plugin context: the one object through which a plugin reaches the framework.

Two objects per loaded version of a plugin:

- :class:`PluginScope` (host-side): the version's manifest, config, permissions and
  door, what it registered, and the runtime it belongs to. The manager and hosts use it
  (a host's router is made for a scope); plugins never see it.
- its :class:`Context` (plugin-facing, ``tether.types.PluginContext``): a sealed view
  (``tether._sealed``) of the scope offering exactly what a plugin may use. Every
  service hangs off it behind its permission, and everything a plugin registers
  through it (hooks, subscriptions, services, middleware, routes) belongs to its
  version: staged until the version is committed, and undone with it.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from tether._config import TetherConfig, mask_secrets
from tether._durations import parse_duration
from tether._metrics import MetricsCollector
from tether._sealed import Sealed, inner, seal, view
from tether._seam import Entry, parameters_of
from tether.errors import PermissionDeniedError, TetherError
from tether.types import (
    Cache,
    ConfigReader,
    Database,
    HookPoint,
    HookRegistration,
    Metrics,
    MiddlewareRegistration,
    PluginLogger,
    Router,
    ServiceProxy,
    Storage,
    Subscription,
)

if TYPE_CHECKING:
    from tether._event_model import Event
    from tether._gate import Door
    from tether._manifest import Manifest
    from tether._runtime import Runtime
    from tether._storage import PluginStorage

__all__ = ["ConfigView", "Context", "FieldLogger", "PluginScope"]

T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")


class FieldLogger(logging.LoggerAdapter[logging.Logger]):
    """``ctx.logger``: a logger named after the plugin that carries structured fields.

    ``logger.with_fields(user_id=123).info("logged in")`` logs
    ``logged in user_id=123`` and puts the fields in the record's ``fields`` attribute.
    """

    def __init__(self, logger: logging.Logger, plugin: str, fields: Mapping[str, object]) -> None:
        super().__init__(logger, {"plugin": plugin, "fields": dict(fields)})

    def with_fields(self, **fields: object) -> FieldLogger:
        merged = {**self._fields, **fields}
        return FieldLogger(self.logger, str(self._extra["plugin"]), merged)

    @property
    def _extra(self) -> Mapping[str, object]:
        return self.extra or {}

    @property
    def _fields(self) -> dict[str, object]:
        fields = self._extra.get("fields")
        return dict(fields) if isinstance(fields, dict) else {}

    def set_level(self, level: str | int) -> None:
        self.logger.setLevel(level.upper() if isinstance(level, str) else level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:  # noqa: ANN401 - LoggerAdapter.log's own signature
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
        self,
        msg: object,
        kwargs: MutableMapping[str, Any],  # logging.LoggerAdapter.process's signature
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
        self._data: object = _remove_secrets(mask_secrets(data))

    def get(self, key: str, default: object = None) -> object:
        """The value at a dotted key (``database.host``), or ``default``."""
        node: object = self._data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return copy.deepcopy(node)

    def _typed(self, key: str, default: T, kind: type[T], label: str) -> T:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return cast("T", float(value))
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TetherError(
                f"config key '{key}' is {type(value).__name__}, not {label}",
                hint=f"set '{key}' to {label} in the framework config",
            )
        return value

    def get_string(self, key: str, default: str = "") -> str:
        return self._typed(key, default, str, "a string")

    def get_int(self, key: str, default: int = 0) -> int:
        return self._typed(key, default, int, "an integer")

    def get_float(self, key: str, default: float = 0.0) -> float:
        return self._typed(key, default, float, "a number")

    def get_bool(self, key: str, default: bool = False) -> bool:
        return self._typed(key, default, bool, "a boolean")

    def get_duration(self, key: str, default: timedelta | None = None) -> timedelta:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            return default or timedelta(0)
        return parse_duration(value)

    def as_dict(self) -> dict[str, object]:
        data = copy.deepcopy(self._data)
        return data if isinstance(data, dict) else {}


def _remove_secrets(data: object) -> object:
    if isinstance(data, dict):
        return {k: _remove_secrets(v) for k, v in data.items() if v != "****"}
    if isinstance(data, list):
        return [_remove_secrets(v) for v in data]
    if isinstance(data, str):
        return data.replace(":****@", "@")
    return data


# --------------------------------------------------------------------------- the scope


class _DatabaseView(Sealed):
    """``ctx.database``: the runtime's database, sealed; a transaction yields the view
    (never the database manager, whose ``close()`` is every plugin's)."""

    __slots__ = ()

    @property
    def location(self) -> str:
        return _db(self).location

    @property
    def in_transaction(self) -> bool:
        return _db(self).in_transaction

    def query(self, sql: str, *params: object) -> list[dict[str, object]]:
        return _db(self).query(sql, *params)

    def query_one(self, sql: str, *params: object) -> dict[str, object] | None:
        return _db(self).query_one(sql, *params)

    def execute(self, sql: str, *params: object) -> int:
        return _db(self).execute(sql, *params)

    def executemany(self, sql: str, seq_of_params: Sequence[Sequence[object]]) -> int:
        return _db(self).executemany(sql, seq_of_params)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        with _db(self).transaction():
            yield cast("Database", self)

    def __repr__(self) -> str:
        return f"<Database {self.location!r}>"


def _db(outer: _DatabaseView) -> Database:
    return cast("Database", inner(outer))


def _database_view(database: Database) -> _DatabaseView:
    outer = _DatabaseView()
    seal(outer, database)
    return outer


class PluginScope:
    """One loaded version of a plugin, as the host sees it (see the module docstring)."""

    def __init__(
        self,
        *,
        manifest: Manifest,
        config: Mapping[str, object],
        permissions: frozenset[str],
        runtime: Runtime,
        door: Door,
    ) -> None:
        self.manifest = manifest
        self.config: dict[str, object] = dict(config)
        self.permissions = permissions
        self.runtime = runtime
        self.door = door
        door.owner = self
        name = manifest.name
        self.logger = FieldLogger(logging.getLogger(f"tether.plugin.{name}"), name, {})
        self.metrics = MetricsCollector(runtime.metrics, name)
        self._releases: list[Callable[[], object]] = []
        self._storage: PluginStorage | None = None
        self._middleware: set[str] = set()
        # the view of the runtime's database (and which one), made on first use
        self.database_view: tuple[Database, Database] | None = None
        self.context = Context()
        seal(self.context, self)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def is_committed(self) -> bool:
        """Whether this version's registrations are the live ones."""
        return self.door.committed

    def require(self, permission: str) -> None:
        if permission not in self.permissions:
            raise PermissionDeniedError(self.name, permission)

    def entry(
        self,
        fn: Callable[..., object],
        source: str,
        *,
        redirect: Callable[[PluginScope], Entry | None] | None = None,
    ) -> Entry:
        """A way into this version for a host's registration (a route handler).

        ``redirect(live_scope)`` finds the registration's counterpart when another
        version has replaced this one (None: there is none).
        """

        def stand_in(live: Door) -> Entry | None:
            owner = live.owner
            return (
                redirect(owner) if redirect is not None and isinstance(owner, PluginScope) else None
            )

        return Entry(
            self.door,
            fn,
            source,
            redirect=stand_in if redirect is not None else None,
            params=parameters_of(fn),
        )

    def replace_config(self, values: Mapping[str, object]) -> dict[str, object]:
        """Install new (validated) config; return the old."""
        previous, self.config = self.config, dict(values)
        return previous

    def storage(self) -> Storage:
        if self._storage is None:
            from tether._storage import PluginStorage

            self._storage = PluginStorage(self.runtime.state_store(), self.name)
        return self._storage

    def data_dir(self) -> Path:
        """The plugin's own directory for files, ``<state dir>/data/<name>`` (made on
        first use, readable by its owner only); it outlives versions and restarts."""
        directory = self.runtime.state_directory / "data" / self.name
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return directory

    def on_release(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` when this version goes (last registered, first run)."""
        self._releases.append(callback)

    def release(self) -> list[BaseException]:
        """Undo everything this version registered; return what failed."""
        failures = self.runtime.drop(self)
        self._middleware.clear()
        while self._releases:
            callback = self._releases.pop()
            try:
                callback()
            except Exception as exc:
                failures.append(exc)
        return failures

    def __repr__(self) -> str:
        state = "committed" if self.is_committed else "staged"
        return f"<PluginScope {self.name} {self.version} {state}>"


# --------------------------------------------------------------------------- the context


def _scope(ctx: Context) -> PluginScope:
    return cast("PluginScope", inner(ctx))


_LIFECYCLE = frozenset({"initialize", "start", "stop", "cleanup", "on_config_change",
                        "config_schema"})  # fmt: skip


class Context(Sealed):
    """A plugin's context (``tether.types.PluginContext``); its state lives in its scope."""

    __slots__ = ()

    # ------------------------------------------------------------------ identity

    @property
    def name(self) -> str:
        return _scope(self).name

    @property
    def version(self) -> str:
        return _scope(self).version

    @property
    def manifest(self) -> Manifest:
        return _scope(self).manifest

    @property
    def permissions(self) -> frozenset[str]:
        return _scope(self).permissions

    def has_permission(self, permission: str) -> bool:
        return permission in _scope(self).permissions

    # ------------------------------------------------------------------ services

    @property
    def logger(self) -> PluginLogger:
        """A logger named ``tether.plugin.<name>``; always available."""
        return _scope(self).logger

    @property
    def metrics(self) -> Metrics:
        """Counters, gauges and histograms labelled with this plugin; always available."""
        return cast("Metrics", view(_scope(self).metrics, Metrics))

    @property
    def database(self) -> Database:
        """The framework's database (permission ``database``)."""
        scope = _scope(self)
        scope.require("database")
        database = scope.runtime.database()
        if scope.database_view is None or scope.database_view[0] is not database:
            scope.database_view = (database, cast("Database", _database_view(database)))
        return scope.database_view[1]

    @property
    def cache(self) -> Cache:
        """A cache whose keys are this plugin's alone (permission ``cache``)."""
        scope = _scope(self)
        scope.require("cache")
        return cast("Cache", view(scope.runtime.cache(scope.name), Cache))

    @property
    def config(self) -> ConfigReader:
        """The framework config, read-only, secrets removed (permission ``config``)."""
        scope = _scope(self)
        scope.require("config")
        return ConfigView(scope.runtime.config)

    @property
    def router(self) -> Router:
        """The host's router for this plugin (permission ``router``)."""
        scope = _scope(self)
        scope.require("router")
        router = scope.runtime.router_for(scope)
        if router is None:
            raise TetherError(
                f"plugin '{scope.name}' asked for the router, but this host serves no HTTP routes",
                plugin=scope.name,
                hint="run the plugin under `tether serve`",
            )
        return cast("Router", view(router, Router, wraps={"group": Router}))

    @property
    def plugin_config(self) -> dict[str, object]:
        """This plugin's own config (defaults applied, durations parsed), as a copy."""
        return copy.deepcopy(_scope(self).config)

    @property
    def plugin_storage(self) -> Storage:
        """Durable key/value storage that only this plugin can see."""
        return cast("Storage", view(_scope(self).storage(), Storage))

    @property
    def data_dir(self) -> Path:
        """A directory for the plugin's own files (``<state dir>/data/<name>``): the one a
        process plugin's sandbox lets it write (with its ``filesystem`` paths)."""
        return _scope(self).data_dir()

    # ------------------------------------------------------------------ hooks

    def register_hook(
        self,
        hook: str | HookPoint[A, R],
        priority: int,
        handler: Callable[[A], R | Awaitable[R]] | Callable[..., object],
        *,
        timeout: float | None = None,
    ) -> HookRegistration:
        """Run ``handler`` at a hook point (higher priority first). Removed on unload."""
        scope = _scope(self)
        registration = scope.runtime.hooks.register(
            scope.door, hook, priority, handler, timeout=timeout
        )
        return cast("HookRegistration", view(registration, HookRegistration))

    # ------------------------------------------------------------------ events

    async def publish_event(self, event: str, data: object = None) -> Event:
        """Publish to every subscriber; waits for queue space under the ``wait`` policy."""
        scope = _scope(self)
        return await scope.runtime.events.publish(
            event, data, source=scope.name, declared=scope.manifest
        )

    def publish_event_nowait(self, event: str, data: object = None) -> Event:
        """Publish from synchronous code (or another thread) without waiting."""
        scope = _scope(self)
        return scope.runtime.events.publish_nowait(
            event, data, source=scope.name, declared=scope.manifest
        )

    def subscribe_event(self, event: str, handler: Callable[[Event], object]) -> Subscription:
        """Receive events named ``event`` (``user.*`` for a family). Removed on unload."""
        scope = _scope(self)
        subscription = scope.runtime.events.subscribe(
            scope.door, event, handler, declared=scope.manifest
        )
        return cast("Subscription", view(subscription, Subscription))

    # ------------------------------------------------------------------ services

    def export_service(self, name: str, service: object) -> None:
        """Offer ``service``'s public methods to other plugins as ``name``."""
        from tether._plugin import Plugin

        scope = _scope(self)
        hidden = {
            n
            for n in dir(service)
            if not n.startswith("_") and inspect.getattr_static(service, n, None) is self
        }
        if isinstance(service, Plugin) or (service is not None and _is_plugin_like(service)):
            hidden |= _LIFECYCLE
        scope.runtime.services.export(
            scope.door, name, service, manifest=scope.manifest, hidden=frozenset(hidden)
        )

    @overload
    def import_service(self, plugin: str, name: str) -> ServiceProxy: ...
    @overload
    def import_service(self, plugin: str, name: str, kind: type[T]) -> T: ...
    def import_service(
        self, plugin: str, name: str, kind: type[T] | None = None
    ) -> T | ServiceProxy:
        """A proxy for another plugin's service; it follows that plugin's versions.

        ``kind`` (a Protocol or class describing the service) only types the result.
        """
        scope = _scope(self)
        proxy = scope.runtime.services.import_(
            scope.name, plugin, name, importer_manifest=scope.manifest
        )
        del kind
        return cast("ServiceProxy", proxy)

    # ------------------------------------------------------------------ middleware

    def register_middleware(
        self,
        name: str,
        handler: Callable[[object, Callable[[object], Awaitable[object]]], object],
        priority: int = 100,
        routes: Sequence[str] | None = None,
    ) -> MiddlewareRegistration:
        """Wrap requests on ``routes`` (globs; none = every route). Removed on unload."""
        scope = _scope(self)
        item = scope.runtime.middleware.register(scope.door, name, handler, priority, routes)
        return cast("MiddlewareRegistration", view(item, MiddlewareRegistration))

    def unregister_middleware(self, name: str) -> None:
        scope = _scope(self)
        scope.runtime.middleware.unregister(scope.door, name)

    # ------------------------------------------------------------------ teardown

    def on_release(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` when the plugin unloads (last registered, first run)."""
        _scope(self).on_release(callback)

    def __repr__(self) -> str:
        scope = _scope(self)
        return f"<PluginContext {scope.name} {scope.version}>"


def _is_plugin_like(service: object) -> bool:
    """An object with the whole plugin lifecycle: exporting it must not export that."""
    return all(callable(getattr(service, m, None)) for m in ("initialize", "start", "stop"))
