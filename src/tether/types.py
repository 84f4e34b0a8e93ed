"""Public value types and the contracts plugins and hosts program against.

A plugin is any object with ``initialize(ctx)``, ``start()``, ``stop()`` and
``cleanup()``; each may be a plain method or ``async def``. Subclassing
:class:`tether.Plugin` is optional and only supplies no-op defaults. What a plugin
receives in ``initialize`` is a :class:`PluginContext`: every capability it has hangs
off it, behind its permission. The optional interfaces (:class:`Configurable`,
:class:`HealthCheckable`, :class:`Describable`) are honoured by the manager and the
CLI when the plugin object has them.

Typed hook points: a host declares ``HookPoint[Arg, Result]("name")``; a handler
registered at it must take ``Arg`` and return ``Result`` (or an awaitable of it), and a
type checker says so when it does not::

    PRE_REQUEST: HookPoint[RequestContext, None] = HookPoint("pre_request")
    ctx.register_hook(PRE_REQUEST, 100, self.check)   # check(self, request: RequestContext)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, overload, runtime_checkable

from tether._lifecycle import PluginStatus

if TYPE_CHECKING:
    import logging

    # Only for the annotation of PluginContext.manifest: the manifest model is
    # tether._manifest's (pydantic), a layer above this one; nothing here runs it.
    from tether._manifest import Manifest

__all__ = [
    "LIFECYCLE_METHODS",
    "SHUTDOWN",
    "STARTUP",
    "Cache",
    "ConfigReader",
    "Configurable",
    "Database",
    "Describable",
    "Event",
    "HealthCheckable",
    "HookPoint",
    "HookRegistration",
    "Metrics",
    "MiddlewareRegistration",
    "PluginContext",
    "PluginInfo",
    "PluginLogger",
    "PluginProtocol",
    "PluginStatus",
    "Router",
    "ServiceProxy",
    "Storage",
    "Subscription",
]

LIFECYCLE_METHODS = ("initialize", "start", "stop", "cleanup")

A = TypeVar("A")
R = TypeVar("R")
T = TypeVar("T")


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Event:
    """One published event. ``id`` is unique: a per-bus random prefix and a counter.

    ``trace`` carries the publisher's trace context (W3C header pairs) when
    OpenTelemetry tracing is on, so the subscriber's span continues the publisher's.
    """

    id: str
    name: str
    data: object
    source: str | None
    time: datetime
    trace: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)


# --------------------------------------------------------------------------- hook points


class HookPoint(Generic[A, R]):
    """A named hook point with the type of the argument its handlers receive (``A``) and
    of what they return (``R``). Equal to another point of the same name."""

    __slots__ = ("description", "name")

    def __init__(self, name: str, *, description: str = "") -> None:
        self.name = name
        self.description = description

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HookPoint) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"HookPoint({self.name!r})"


STARTUP: HookPoint[tuple[str, ...], None] = HookPoint(
    "startup", description="before the plugins start; receives the loaded plugins' names"
)
SHUTDOWN: HookPoint[tuple[str, ...], None] = HookPoint(
    "shutdown", description="before the plugins stop; receives the loaded plugins' names"
)


# --------------------------------------------------------------------------- plugins


@runtime_checkable
class PluginProtocol(Protocol):
    def initialize(self, ctx: PluginContext, /) -> Awaitable[None] | None: ...
    def start(self) -> Awaitable[None] | None: ...
    def stop(self) -> Awaitable[None] | None: ...
    def cleanup(self) -> Awaitable[None] | None: ...


@runtime_checkable
class Configurable(Protocol):
    """A plugin that checks its own config beyond the manifest's schema (003).

    Called (plain or ``async def``: it is awaited) with the validated config when the
    plugin is loaded, before its slot is made, and before each ``on_config_change``;
    raise ``ValueError`` (or a ``ConfigError``) to refuse it. Whatever it raises fails
    the load or the update with a ``ConfigError`` naming the plugin.
    """

    def validate_config(self, config: Mapping[str, object], /) -> Awaitable[None] | None: ...


@runtime_checkable
class HealthCheckable(Protocol):
    """A plugin with a health check, polled every ``plugins.health_check_interval``.

    Plain or ``async def``; it passes when it returns (or its awaitable gives) anything
    but ``False`` without raising in time.
    """

    def health_check(self) -> object: ...


@runtime_checkable
class Describable(Protocol):
    """A plugin that describes itself at run time (003); ``plugins test`` and the admin
    API show it beside the manifest's description and author. Each method may be
    ``async def`` (it is awaited)."""

    def description(self) -> str | Awaitable[str]: ...
    def author(self) -> str | Awaitable[str]: ...


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What ``PluginManager.list_plugins`` reports for each plugin (the reference's PluginInfo)."""

    name: str
    version: str
    description: str
    author: str
    loaded: bool
    enabled: bool
    load_time: datetime | None
    status: PluginStatus
    path: str | None = None
    isolation: str = "inprocess"
    provides: tuple[str, ...] = ()


# --------------------------------------------------------------------------- what a context offers

Handler = Callable[..., object]


@runtime_checkable
class Router(Protocol):
    """Routes a plugin adds through ``ctx.router`` (permission ``router``).

    Host-neutral: the web host implements it; what a handler receives and returns
    is the host's business (``tether serve`` passes a Starlette request).
    """

    def get(self, path: str, handler: Handler) -> None: ...
    def post(self, path: str, handler: Handler) -> None: ...
    def put(self, path: str, handler: Handler) -> None: ...
    def patch(self, path: str, handler: Handler) -> None: ...
    def delete(self, path: str, handler: Handler) -> None: ...
    def group(self, prefix: str) -> Router: ...


class PluginLogger(Protocol):
    """``ctx.logger``: a logger named ``tether.plugin.<name>`` with structured fields."""

    def debug(self, msg: object, *args: object) -> None: ...
    def info(self, msg: object, *args: object) -> None: ...
    def warning(self, msg: object, *args: object) -> None: ...
    def error(self, msg: object, *args: object) -> None: ...
    def exception(self, msg: object, *args: object) -> None: ...
    def log(self, level: int, msg: object, *args: object) -> None: ...
    def with_fields(self, **fields: object) -> PluginLogger: ...
    def set_level(self, level: str | int) -> None: ...
    def isEnabledFor(self, level: int) -> bool: ...  # noqa: N802 - logging's name

    @property
    def logger(self) -> logging.Logger: ...


class Metrics(Protocol):
    """``ctx.metrics``: counters, gauges and histograms labelled with the plugin."""

    def increment_counter(self, name: str, value: float = 1.0, **labels: object) -> None: ...
    def record_gauge(self, name: str, value: float, **labels: object) -> None: ...
    def record_histogram(
        self, name: str, value: float, *, buckets: Sequence[float] | None = None, **labels: object
    ) -> None: ...


class Storage(Protocol):
    """``ctx.plugin_storage``: durable key/value storage only this plugin sees."""

    @property
    def plugin(self) -> str: ...
    def get(self, key: str, default: object = ...) -> object: ...
    def set(self, key: str, value: object) -> None: ...
    def delete(self, key: str) -> bool: ...
    def list(self) -> list[str]: ...
    def clear(self) -> int: ...


class Cache(Protocol):
    """``ctx.cache`` (permission ``cache``): a cache whose keys are this plugin's alone."""

    @property
    def namespace(self) -> str: ...
    def get(self, key: str, default: object = None) -> object: ...
    def set(self, key: str, value: object, ttl: float | timedelta | None = None) -> None: ...
    def delete(self, key: str) -> bool: ...
    def has(self, key: str) -> bool: ...
    def clear(self) -> int: ...


class Database(Protocol):
    """``ctx.database`` (permission ``database``): SQL with ``?`` placeholders."""

    @property
    def location(self) -> str: ...
    @property
    def in_transaction(self) -> bool: ...
    def query(self, sql: str, *params: object) -> list[dict[str, object]]: ...
    def query_one(self, sql: str, *params: object) -> dict[str, object] | None: ...
    def execute(self, sql: str, *params: object) -> int: ...
    def executemany(self, sql: str, seq_of_params: Sequence[Sequence[object]]) -> int: ...
    def transaction(self) -> AbstractContextManager[Database]: ...


class ConfigReader(Protocol):
    """``ctx.config`` (permission ``config``): the framework config, read-only, no secrets."""

    def get(self, key: str, default: object = None) -> object: ...
    def get_string(self, key: str, default: str = "") -> str: ...
    def get_int(self, key: str, default: int = 0) -> int: ...
    def get_float(self, key: str, default: float = 0.0) -> float: ...
    def get_bool(self, key: str, default: bool = False) -> bool: ...
    def get_duration(self, key: str, default: timedelta | None = None) -> timedelta: ...
    def as_dict(self) -> dict[str, object]: ...


class HookRegistration(Protocol):
    """What ``ctx.register_hook`` returns."""

    @property
    def plugin(self) -> str: ...
    @property
    def hook_type(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def is_active(self) -> bool: ...
    def remove(self) -> None: ...


class Subscription(Protocol):
    """What ``ctx.subscribe_event`` returns: the subscription's counters; ``remove()``."""

    @property
    def plugin(self) -> str: ...
    @property
    def pattern(self) -> str: ...
    @property
    def is_active(self) -> bool: ...
    @property
    def delivered(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def pending(self) -> int: ...
    def remove(self) -> None: ...


class MiddlewareRegistration(Protocol):
    """What ``ctx.register_middleware`` returns."""

    @property
    def plugin(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def routes(self) -> tuple[str, ...]: ...
    def applies_to(self, route: str) -> bool: ...


class ServiceProxy(Protocol):
    """What ``ctx.import_service(plugin, name)`` returns without a type: the service's
    public methods (nothing else), each a call into the exporting plugin."""

    def __getattr__(self, name: str) -> Callable[..., object]: ...


class PluginContext(Protocol):
    """Capabilities handed to one plugin in ``initialize(ctx)``.

    ``logger``, ``metrics``, ``plugin_config`` and ``plugin_storage`` are always
    available; ``database``, ``cache``, ``config`` and ``router`` need the matching
    permission and raise :class:`~tether.errors.PermissionDeniedError` without it.
    Nothing reachable from a context leads to the host's machinery or to another
    plugin's objects (docs/reference/context.md says where that boundary lies).
    """

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def manifest(self) -> Manifest: ...
    @property
    def permissions(self) -> frozenset[str]: ...
    def has_permission(self, permission: str) -> bool: ...

    @property
    def logger(self) -> PluginLogger: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def database(self) -> Database: ...
    @property
    def cache(self) -> Cache: ...
    @property
    def config(self) -> ConfigReader: ...
    @property
    def router(self) -> Router: ...
    @property
    def plugin_config(self) -> dict[str, object]: ...
    @property
    def plugin_storage(self) -> Storage: ...
    @property
    def data_dir(self) -> Path: ...

    @overload
    def register_hook(
        self,
        hook: HookPoint[A, R],
        priority: int,
        handler: Callable[[A], R | Awaitable[R]],
        *,
        timeout: float | None = None,
    ) -> HookRegistration: ...
    @overload
    def register_hook(
        self,
        hook: str,
        priority: int,
        handler: Callable[..., object],
        *,
        timeout: float | None = None,
    ) -> HookRegistration: ...

    async def publish_event(self, event: str, data: object = None) -> Event: ...
    def publish_event_nowait(self, event: str, data: object = None) -> Event: ...
    def subscribe_event(self, event: str, handler: Callable[[Event], object]) -> Subscription: ...

    def export_service(self, name: str, service: object) -> None: ...
    @overload
    def import_service(self, plugin: str, name: str) -> ServiceProxy: ...
    @overload
    def import_service(self, plugin: str, name: str, kind: type[T]) -> T: ...

    def register_middleware(
        self,
        name: str,
        handler: Callable[[object, Callable[[object], Awaitable[object]]], object],
        priority: int = 100,
        routes: Sequence[str] | None = None,
    ) -> MiddlewareRegistration: ...
    def unregister_middleware(self, name: str) -> None: ...

    def on_release(self, callback: Callable[[], object]) -> None: ...
