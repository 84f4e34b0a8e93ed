"""Middleware: a host-neutral chain around a host's handlers, and the one runner for it.

A middleware is ``handler(request, call_next)``, sync or async, where ``call_next`` is
an async function taking the request and returning the response. It runs for a route
when one of its globs matches (``/admin/*``; no globs means every route), in
descending priority, ties in registration order. Names are unique per plugin version.

``runner(route, endpoint)`` builds a route's chain once: one layer per middleware, an
entry of the seam (``tether._seam``) whose call passes the next layer, already built,
as ``call_next``, so a request allocates nothing for the chain and pays one frame per
middleware. Each layer passes its plugin's door:

- open: the handler runs;
- closed (the plugin is stopped, disabled, unloading): that middleware is skipped;
- held (a reload): the request waits; if the hold outlasts the queue timeout the
  request fails (503 in ``tether serve``) rather than skipping a check unchecked;
- replaced (a new version went live): the new version's middleware of the same name
  runs in its place, or none.

An exception is counted once, against the innermost plugin it left (the seam's
rule): a handler's error passing up through the middleware is the handler's, not
theirs. Middleware of a version that is not committed are staged: they join chains
when it is. A chain is rebuilt when the registry changes (``all()`` returns a new
snapshot on every change).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, cast

from tether._attribution import is_seam, pass_through
from tether._gate import GateState
from tether._remote_mark import is_remote
from tether._seam import Entry, Parameters
from tether._watchdog import not_the_callers_time
from tether.errors import MiddlewareError, PluginUnavailableError

if TYPE_CHECKING:
    from tether._gate import Door, Gate

__all__ = ["Endpoint", "Middleware", "MiddlewareRegistry"]

log = logging.getLogger("tether.middleware")

Endpoint = Callable[[object], Awaitable[object]]
_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Middleware:
    """One registered middleware (host-side: hosts read it, plugins get a sealed view)."""

    plugin: str
    name: str
    handler: Callable[[object, Endpoint], object]
    priority: int
    routes: tuple[str, ...]
    sequence: int
    entry: Entry = field(repr=False, compare=False)

    @property
    def door(self) -> Door:
        return self.entry.door

    def applies_to(self, route: str) -> bool:
        return not self.routes or any(fnmatchcase(route, glob) for glob in self.routes)


_REGISTERED = Parameters("request, call_next", "request, call_next")


def _layer_slow(registry: MiddlewareRegistry, name: str) -> Callable[..., Awaitable[object]]:
    """A layer's slow path: skip when closed, wait when held, the new version's when replaced."""

    async def slow(entry: Entry, request: object, call_next: Endpoint) -> object:
        door = entry.door
        gate = door.gate
        if _is_closed(gate):
            return await call_next(request)  # stopped, disabled: skip it
        try:
            live = await gate.wait_async(door)
        except PluginUnavailableError:
            if _is_closed(gate):
                return await call_next(request)  # it closed meanwhile
            raise  # held past the queue timeout, or too many waiting: the request fails
        # The door opened again (its own registration), or another version went live (the
        # new version's middleware of this name); neither: skip it.
        stand_in = registry.named(live, name)
        if stand_in is None:
            return await call_next(request)
        return await stand_in.entry.acall(request, call_next)

    return slow


def _host_endpoint(endpoint: Endpoint) -> Endpoint:
    """A host's own endpoint: its errors are the host's, not the middleware's around it."""

    async def call(request: object) -> object:
        try:
            return await endpoint(request)
        except Exception as exc:
            pass_through(exc)
            raise

    not_the_callers_time(call)
    return call


def _is_closed(gate: Gate) -> bool:
    return gate.state is GateState.CLOSED


def _unadapted(handler: Callable[..., object]) -> Callable[[object, Endpoint], object]:
    """No host said how a process plugin's middleware meets its requests: as it is (a
    request it cannot send then fails the call with a ``TypeError`` naming its type)."""
    return cast("Callable[[object, Endpoint], object]", handler)


class MiddlewareRegistry:
    """Every registered middleware, and the chain for each route."""

    def __init__(self) -> None:
        self.adapter: Callable[[Callable[..., object]], Callable[[object, Endpoint], object]]
        self.adapter = _unadapted
        """How a process plugin's middleware meets the host's requests (the host's
        business: ``tether serve`` gives one that sends requests as protocol maps)."""
        self._items: dict[tuple[Door, str], Middleware] = {}
        self._ordered: tuple[Middleware, ...] = ()
        self._chains: OrderedDict[str, tuple[Middleware, ...]] = OrderedDict()
        self._counter = itertools.count()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ registering

    def register(
        self,
        door: Door,
        name: str,
        handler: Callable[[object, Endpoint], object],
        priority: int = 100,
        routes: Sequence[str] | None = None,
    ) -> Middleware:
        """Add ``door``'s version's middleware ``name`` (staged until it is committed)."""
        plugin = door.plugin
        if not name or not isinstance(name, str):
            raise MiddlewareError("a middleware needs a name", plugin=plugin)
        if not callable(handler):
            raise MiddlewareError(
                f"middleware '{name}' of plugin '{plugin}' is not callable", plugin=plugin
            )
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise MiddlewareError(
                f"middleware '{name}' of plugin '{plugin}': priority {priority!r} is not an "
                "integer",
                plugin=plugin,
            )
        globs = tuple(routes or ())
        for glob in globs:
            if not isinstance(glob, str) or not glob.startswith("/"):
                raise MiddlewareError(
                    f"middleware '{name}' of plugin '{plugin}': route {glob!r} must start with '/'",
                    plugin=plugin,
                    hint="routes are path globs such as '/admin/*'",
                )
        if is_remote(handler):
            handler = self.adapter(handler)
        entry = Entry(door, handler, f"middleware:{name}", params=_REGISTERED)
        with self._lock:
            if (door, name) in self._items:
                raise MiddlewareError(
                    f"middleware '{name}' is already registered by plugin '{plugin}'",
                    plugin=plugin,
                    hint="names are unique per plugin; unregister it first or pick another",
                )
            item = Middleware(plugin, name, handler, priority, globs, next(self._counter), entry)
            self._items[(door, name)] = item
            self._rebuild()
        return item

    def unregister(self, door: Door, name: str) -> None:
        with self._lock:
            if self._items.pop((door, name), None) is None:
                mine = sorted(n for d, n in self._items if d is door)
                raise MiddlewareError(
                    f"plugin '{door.plugin}' has no middleware named '{name}'",
                    plugin=door.plugin,
                    hint=f"registered: {', '.join(mine) or 'none'}",
                )
            self._rebuild()

    def remove_door(self, door: Door) -> int:
        """Remove every middleware of one version; return how many."""
        return self._remove_where(lambda d: d is door)

    def remove_plugin(self, plugin: str) -> int:
        """Remove every middleware of every version of ``plugin``; return how many."""
        return self._remove_where(lambda d: d.plugin == plugin)

    def _remove_where(self, doomed: Callable[[Door], bool]) -> int:
        with self._lock:
            keys = [key for key in self._items if doomed(key[0])]
            for key in keys:
                del self._items[key]
            if keys:
                self._rebuild()
        return len(keys)

    def refresh(self) -> None:
        """A version was committed: its middleware join the chains."""
        with self._lock:
            self._rebuild()

    def _rebuild(self) -> None:
        live = (m for m in self._items.values() if m.entry.door.committed)
        self._ordered = tuple(sorted(live, key=lambda m: (-m.priority, m.sequence)))
        self._chains = OrderedDict()

    # ------------------------------------------------------------------ reading

    def named(self, door: Door, name: str) -> Middleware | None:
        """``door``'s version's middleware called ``name``, if it has one."""
        return self._items.get((door, name))

    def chain(self, route: str) -> tuple[Middleware, ...]:
        """The middleware that apply to ``route``, in the order they run."""
        chains = self._chains
        found = chains.get(route)
        if found is None:
            found = tuple(m for m in self._ordered if m.applies_to(route))
            with self._lock:
                if chains is self._chains:
                    chains[route] = found
                    if len(chains) > _CACHE_SIZE:
                        chains.popitem(last=False)
        return found

    def all(self) -> tuple[Middleware, ...]:
        """The live middleware in order; a new tuple after every change."""
        return self._ordered

    # ------------------------------------------------------------------ running

    def runner(self, route: str, endpoint: Endpoint) -> Endpoint:
        """``route``'s chain around ``endpoint``, built now: call it with the request.

        Each layer is an entry of its middleware's version whose call passes the next
        layer as ``call_next`` (generated from the seam, like every way into a plugin).
        """
        items = self.chain(route)
        chain: Endpoint = endpoint if not items or is_seam(endpoint) else _host_endpoint(endpoint)
        for item in reversed(items):
            params = Parameters("request", "request, _t_NEXT", {"_t_NEXT": chain})
            layer = Entry(
                item.entry.door,
                item.handler,
                item.entry.source,
                params=params,
                aslow=_layer_slow(self, item.name),
            )
            chain = layer.acall
        return chain

    async def run(self, route: str, request: object, endpoint: Endpoint) -> object:
        """Run ``route``'s chain around ``endpoint`` and return the response."""
        return await self.runner(route, endpoint)(request)
