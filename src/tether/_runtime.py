"""``Runtime``: the machinery shared by every plugin of one manager (host-side).

Hooks, the event bus, services, middleware, the metrics store, the error policy, the
capabilities hosts provide (a router), and the stores that open on first use
(databases, caches, the state store). Plugins never see it: their context reaches the
parts it may use on their behalf. Hosts reach it as ``manager.runtime``.

When a plugin version is committed (its registrations become the live ones) or
dropped (discarded or retired), :meth:`version_committed` and :meth:`drop` tell every
mechanism, and every host registrar (the web host's route table), at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tether._chain import ErrorPolicy
from tether._config import TetherConfig
from tether._events import EventBus
from tether._hooks import HookRegistry
from tether._metrics import MetricsStore
from tether._middleware import MiddlewareRegistry
from tether._services import ServiceRegistry

if TYPE_CHECKING:
    from tether._cache import CacheManager
    from tether._database import DatabaseManager
    from tether._gate import Door
    from tether._storage import StateStore
    from tether.types import Cache, Database, Router

__all__ = ["Registrar", "RouterFactory", "Runtime"]

log = logging.getLogger("tether")


class Version(Protocol):
    """What the runtime reads of a plugin version's scope (``tether.PluginScope``)."""

    @property
    def name(self) -> str: ...
    @property
    def door(self) -> Door: ...


RouterFactory = Callable[..., "Router"]
"""``factory(scope) -> Router``: a host's router for one plugin version (its ``PluginScope``)."""


class Registrar(Protocol):
    """A host's registry of plugin registrations (routes), told when versions change."""

    def version_committed(self, plugin: str, /) -> None:
        """A version of ``plugin`` was committed: its registrations are the live ones now."""

    def version_dropped(self, scope: Version, /) -> None:
        """A version is gone: forget what it registered."""


class Runtime:
    """The machinery shared by every plugin of one manager.

    Databases, caches and the state store open lazily, on the first plugin that asks.
    ``state_directory`` holds the default SQLite files (``state.db``, ``app.db``).
    """

    def __init__(
        self,
        *,
        config: TetherConfig | None = None,
        state_directory: str | Path | None = None,
    ) -> None:
        self.config = config or TetherConfig()
        strict = self.config.plugins.strict
        self.hooks = HookRegistry()
        self.events = EventBus(
            queue_size=self.config.events.queue_size,
            policy=self.config.events.policy,
            strict=strict,
        )
        self.services = ServiceRegistry(strict=strict)
        self.middleware = MiddlewareRegistry()
        self.metrics = MetricsStore()
        self.errors = ErrorPolicy()
        self.state_directory = (
            Path(state_directory)
            if state_directory is not None
            else self.config.base_directory / ".tether"
        )
        self._router: RouterFactory | None = None
        self._registrars: list[Registrar] = []
        self._state_store: StateStore | None = None
        self._database: DatabaseManager | None = None
        self._caches: dict[str, CacheManager] = {}

    # ------------------------------------------------------------------ what hosts provide

    def provide_router(self, factory: RouterFactory) -> None:
        """Give plugins ``ctx.router``: ``factory(scope)`` makes one plugin version's router."""
        if self._router is not None:
            raise ValueError("this runtime has a router already (one web host per manager)")
        self._router = factory

    @property
    def has_router(self) -> bool:
        return self._router is not None

    def router_for(self, scope: Version) -> Router | None:
        return None if self._router is None else self._router(scope)

    def add_registrar(self, registrar: Registrar) -> None:
        """Tell ``registrar`` whenever a version is committed or dropped."""
        self._registrars.append(registrar)

    # ------------------------------------------------------------------ versions

    def version_committed(self, old: Version | None, new: Version) -> None:
        """``new``'s registrations are the live ones now (``old``'s were, if given)."""
        self.hooks.refresh()
        self.events.version_committed(old.door if old is not None else None, new.door)
        self.middleware.refresh()
        self.services.refresh(new.name)
        for registrar in self._registrars:
            registrar.version_committed(new.name)

    def drop(self, scope: Version) -> list[BaseException]:
        """Remove everything one version registered, in every mechanism; what failed."""
        failures: list[BaseException] = []
        door = scope.door
        removers: tuple[Callable[[], object], ...] = (
            lambda: self.hooks.remove_door(door),
            lambda: self.events.remove_door(door),
            lambda: self.middleware.remove_door(door),
            lambda: self.services.remove_door(door),
            *(lambda r=registrar: r.version_dropped(scope) for registrar in self._registrars),
        )
        for remove in removers:
            try:
                remove()
            except Exception as exc:
                failures.append(exc)
        return failures

    # ------------------------------------------------------------------ stores

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

    def database(self) -> Database:
        if self._database is None:
            from tether._database import open_database

            self._database = open_database(self._url("database", "app.db"))
        return self._database

    def cache(self, plugin: str) -> Cache:
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
