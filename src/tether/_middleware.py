"""The middleware registry: a host-neutral chain the hosts run around their handlers.

A middleware is ``handler(request, call_next)``, sync or async, where ``call_next``
is an async function taking the request and returning the response. It runs for a
route when one of its globs matches (``/admin/*``; no globs means every route), in
descending priority, ties in registration order. Names are unique per plugin.

Each middleware call passes its plugin's gate: held gates make the request wait,
closed gates (plugin stopped or disabled) skip that middleware.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from tether._gate import Gate, GateState
from tether.errors import MiddlewareError, PluginUnavailableError

__all__ = ["Middleware", "MiddlewareRegistry"]

log = logging.getLogger("tether.middleware")

Endpoint = Callable[[object], Awaitable[object]]
_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Middleware:
    plugin: str
    name: str
    handler: Callable[[object, Endpoint], object]
    priority: int
    routes: tuple[str, ...]
    gate: Gate
    sequence: int

    def applies_to(self, route: str) -> bool:
        return not self.routes or any(fnmatchcase(route, glob) for glob in self.routes)


class MiddlewareRegistry:
    """Every registered middleware, and the chain for each route."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Middleware] = {}
        self._ordered: tuple[Middleware, ...] = ()
        self._chains: OrderedDict[str, tuple[Middleware, ...]] = OrderedDict()
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def register(
        self,
        plugin: str,
        gate: Gate,
        name: str,
        handler: Callable[[object, Endpoint], object],
        priority: int = 100,
        routes: Sequence[str] | None = None,
    ) -> Middleware:
        if not name:
            raise MiddlewareError("a middleware needs a name", plugin=plugin)
        if not callable(handler):
            raise MiddlewareError(
                f"middleware '{name}' of plugin '{plugin}' is not callable", plugin=plugin
            )
        globs = tuple(routes or ())
        for glob in globs:
            if not isinstance(glob, str) or not glob.startswith("/"):
                raise MiddlewareError(
                    f"middleware '{name}' of plugin '{plugin}': route {glob!r} must start with '/'",
                    plugin=plugin,
                    hint="routes are path globs such as '/admin/*'",
                )
        with self._lock:
            if (plugin, name) in self._items:
                raise MiddlewareError(
                    f"middleware '{name}' is already registered by plugin '{plugin}'",
                    plugin=plugin,
                    hint="names are unique per plugin; unregister it first or pick another",
                )
            item = Middleware(plugin, name, handler, priority, globs, gate, next(self._counter))
            self._items[(plugin, name)] = item
            self._rebuild()
        return item

    def unregister(self, plugin: str, name: str) -> None:
        with self._lock:
            if self._items.pop((plugin, name), None) is None:
                mine = sorted(n for p, n in self._items if p == plugin)
                raise MiddlewareError(
                    f"plugin '{plugin}' has no middleware named '{name}'",
                    plugin=plugin,
                    hint=f"registered: {', '.join(mine) or 'none'}",
                )
            self._rebuild()

    def remove_plugin(self, plugin: str) -> int:
        with self._lock:
            doomed = [key for key in self._items if key[0] == plugin]
            for key in doomed:
                del self._items[key]
            if doomed:
                self._rebuild()
        return len(doomed)

    def _rebuild(self) -> None:
        self._ordered = tuple(sorted(self._items.values(), key=lambda m: (-m.priority, m.sequence)))
        self._chains = OrderedDict()

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
        return self._ordered

    async def run(self, route: str, request: object, endpoint: Endpoint) -> object:
        """Run ``route``'s chain around ``endpoint`` and return the response."""
        chain = self.chain(route)
        if not chain:
            return await endpoint(request)
        return await _Step(chain, 0, endpoint, set())(request)


class _Step:
    """``call_next`` for position ``index`` of a chain."""

    __slots__ = ("chain", "counted", "endpoint", "index")

    def __init__(
        self, chain: tuple[Middleware, ...], index: int, endpoint: Endpoint, counted: set[int]
    ) -> None:
        self.chain = chain
        self.index = index
        self.endpoint = endpoint
        self.counted = counted

    async def __call__(self, request: object) -> object:
        index = self.index
        chain = self.chain
        while index < len(chain):
            item = chain[index]
            gate = item.gate
            if gate.is_open or gate.state is GateState.HELD:
                try:
                    await gate.enter_async()
                except PluginUnavailableError:
                    if gate.state is not GateState.CLOSED:
                        raise  # held too long, or too many waiting: the request fails
                    index += 1
                    continue
                break
            index += 1  # closed: the plugin is stopped or disabled; skip its middleware
        else:
            try:
                return await self.endpoint(request)
            except Exception as exc:
                _attribute(exc, self.counted)  # the endpoint's own errors are the host's to count
                raise
        try:
            result = item.handler(request, _Step(chain, index + 1, self.endpoint, self.counted))
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            if _attribute(
                exc, self.counted
            ):  # raised here, not passed up from further down the chain
                gate.record_error(exc, source=f"middleware:{item.name}")
            raise
        finally:
            gate.exit()
        return result


def _attribute(exc: BaseException, counted: set[int]) -> bool:
    """Note ``exc`` for this request; True the first time (the innermost frame that saw it)."""
    if id(exc) in counted:
        return False
    counted.add(id(exc))
    return True
