"""Plugin routes: the table the host matches requests against.

A route belongs to the plugin version (its :class:`tether.PluginScope`) that added it
through ``ctx.router``. A path and method taken by the host (``/admin/...``,
``/healthz``, ``/readyz``, ``/metrics``) or by another plugin is refused with a
:class:`RouteConflictError` naming both. Routes of a version are staged until it is
committed; then they take over the version's path and method from the previous
version, and when a version is dropped its routes go at once (the table is a
registrar of the runtime: ``tether.Registrar``).

Matching: an exact path first, then the parametrized paths in the order they were
added (``/users/{name}``, ``/files/{rest:path}``; Starlette's convertors ``str``,
``int``, ``float``, ``uuid``, ``path``). ``HEAD`` is served by the ``GET`` route.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.convertors import CONVERTOR_TYPES, Convertor

from tether import PluginEntry, PluginScope, TetherError

__all__ = [
    "METHODS",
    "RESERVED_PATHS",
    "Handler",
    "Route",
    "RouteConflictError",
    "RouteTable",
    "is_reserved",
]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
RESERVED_PATHS = ("/admin", "/healthz", "/readyz", "/metrics")
"""Paths the host keeps for itself; ``/admin`` with everything under it."""

Handler = Callable[..., object]

_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(:[a-zA-Z_][a-zA-Z0-9_]*)?}")


class RouteConflictError(TetherError, ValueError):
    """A route cannot be added: its path and method are taken, or the path is invalid."""


def is_reserved(path: str) -> bool:
    """True for the host's own paths (``/admin`` and below, ``/healthz``, ...)."""
    return path in RESERVED_PATHS or path.startswith("/admin/")


@dataclass(frozen=True, slots=True)
class _Path:
    """A path template compiled: its shape (parameter names left out) and its matcher."""

    template: str
    shape: str
    names: tuple[str, ...]
    convertors: tuple[Convertor[object], ...]
    pattern: re.Pattern[str] | None  # None for a path without parameters

    @classmethod
    def compile(cls, template: str, plugin: str) -> _Path:
        if not template.startswith("/"):
            raise RouteConflictError(
                f"plugin '{plugin}': route path {template!r} must start with '/'",
                plugin=plugin,
                hint="write paths such as '/users/{name}'",
            )
        names: list[str] = []
        convertors: list[Convertor[object]] = []
        shape, regex, last = "", "^", 0
        for match in _PARAM.finditer(template):
            name, kind = match.group(1), (match.group(2) or ":str")[1:]
            convertor = CONVERTOR_TYPES.get(kind)
            if convertor is None:
                raise RouteConflictError(
                    f"plugin '{plugin}': route {template!r} uses the unknown convertor '{kind}'",
                    plugin=plugin,
                    hint=f"convertors are {', '.join(CONVERTOR_TYPES)}",
                )
            if name in names:
                raise RouteConflictError(
                    f"plugin '{plugin}': route {template!r} names the parameter '{name}' twice",
                    plugin=plugin,
                )
            literal = template[last : match.start()]
            shape += literal + "{:" + kind + "}"
            regex += re.escape(literal) + f"({convertor.regex})"
            names.append(name)
            convertors.append(convertor)
            last = match.end()
        shape += template[last:]
        pattern = re.compile(regex + re.escape(template[last:]) + "$") if names else None
        return cls(template, shape, tuple(names), tuple(convertors), pattern)

    def params(self, match: re.Match[str]) -> dict[str, object]:
        groups = match.groups()
        return {
            name: convertor.convert(value)
            for name, convertor, value in zip(self.names, self.convertors, groups, strict=True)
        }


Endpoint = Callable[[object], Awaitable[object]]


@dataclass(eq=False, slots=True)
class Route:
    """One method on one path, and the plugin version whose handler serves it.

    ``owner`` is the scope of the version that added the route (identity matters: a new
    version has a new one). ``entry`` is the way into that version for this route, and
    ``endpoint`` calls it; ``runner`` is the route's middleware around the endpoint,
    for the registry snapshot ``runner_snapshot``. The app sets all three.
    """

    plugin: str
    method: str
    path: str
    handler: Handler
    owner: PluginScope
    compiled: _Path = field(repr=False)
    entry: PluginEntry | None = field(default=None, repr=False)
    endpoint: Endpoint | None = field(default=None, repr=False)
    runner: Endpoint | None = field(default=None, repr=False)
    runner_snapshot: object = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


_NO_PARAMS: dict[str, object] = {}


@dataclass(frozen=True, slots=True)
class _Shape:
    """The routes of one parametrized path shape, by method (a matching snapshot)."""

    compiled: _Path
    methods: dict[str, Route]


class RouteTable:
    """Every plugin route. Changes swap in new snapshots; matching never locks."""

    def __init__(self, *, prepare: Callable[[Route], None] | None = None) -> None:
        # (method, shape) -> the routes claiming it, the active one last.
        self._claims: dict[tuple[str, str], list[Route]] = {}
        self._order: dict[str, int] = {}  # shape -> when it was first added
        self._prepare = prepare
        self._lock = threading.Lock()
        self._static: dict[str, dict[str, Route]] = {}
        self._dynamic: tuple[_Shape, ...] = ()

    # ------------------------------------------------------------------ changing

    def add(self, *, owner: PluginScope, method: str, path: str, handler: Handler) -> Route:
        plugin = owner.name
        method = method.upper()
        if method not in METHODS:
            raise RouteConflictError(
                f"plugin '{plugin}': unsupported method {method!r} for route {path!r}",
                plugin=plugin,
                hint=f"methods are {', '.join(METHODS)}",
            )
        if not callable(handler):
            raise RouteConflictError(
                f"plugin '{plugin}': the handler of {method} {path} is not callable: {handler!r}",
                plugin=plugin,
            )
        compiled = _Path.compile(path, plugin)
        if is_reserved(path):
            raise RouteConflictError(
                f"route {method} {path} of plugin '{plugin}' conflicts with the host: "
                f"{path} is served by tether's web host itself",
                plugin=plugin,
                hint=f"the host keeps {', /'.join(p.strip('/') for p in RESERVED_PATHS)} "
                "(and everything under /admin/); pick another path",
            )
        route = Route(plugin, method, path, handler, owner, compiled)
        if self._prepare is not None:
            self._prepare(route)
        with self._lock:
            self._claim(route)
            self._rebuild()
        return route

    def _claim(self, route: Route) -> None:
        key = (route.method, route.compiled.shape)
        claims = self._claims.get(key, [])
        for other in claims:
            if other.owner is route.owner:
                same = "" if other.path == route.path else f" (first as {other.path})"
                raise RouteConflictError(
                    f"plugin '{route.plugin}' registered route {route.method} {route.path} "
                    f"twice{same}",
                    plugin=route.plugin,
                    hint="register each path and method once",
                )
            if other.plugin != route.plugin:
                same = "" if other.path == route.path else f" (as {other.path})"
                raise RouteConflictError(
                    f"route {route.method} {route.path} of plugin '{route.plugin}' conflicts "
                    f"with plugin '{other.plugin}', which already serves it{same}",
                    plugin=route.plugin,
                    hint=f"change the path in one of them, or unload '{other.plugin}' first",
                )
        self._claims[key] = [*claims, route]  # a new version of the same plugin takes over
        self._order.setdefault(route.compiled.shape, len(self._order))

    # ------------------------------------------------------------------ versions

    def version_committed(self, plugin: str) -> None:  # noqa: ARG002 - tether.Registrar's signature
        """A version was committed: its routes are the ones served now."""
        with self._lock:
            self._rebuild()

    def version_dropped(self, scope: object) -> None:
        """A version is gone: so are its routes."""
        self.remove_owner(scope)

    def counterpart(self, route: Route, live: PluginScope) -> Route | None:
        """``live``'s route for the same method and path shape as ``route``, if any."""
        claims = self._claims.get((route.method, route.compiled.shape), [])
        return next((r for r in reversed(claims) if r.owner is live), None)

    def remove_owner(self, owner: object) -> int:
        """Remove every route ``owner`` added; return how many."""
        removed = 0
        with self._lock:
            for key, claims in list(self._claims.items()):
                kept = [r for r in claims if r.owner is not owner]
                removed += len(claims) - len(kept)
                if kept:
                    self._claims[key] = kept
                else:
                    del self._claims[key]
            if removed:
                shapes = {shape for _, shape in self._claims}
                self._order = {s: n for s, n in self._order.items() if s in shapes}
                self._rebuild()
        return removed

    def _rebuild(self) -> None:
        static: dict[str, dict[str, Route]] = {}
        dynamic: dict[str, _Shape] = {}
        for (method, shape), claims in self._claims.items():
            live = [r for r in claims if r.owner.is_committed]
            if not live:
                continue  # staged: its version is not committed yet
            route = live[-1]
            if route.compiled.pattern is None:
                static.setdefault(shape, {})[method] = route
            else:
                entry = dynamic.setdefault(shape, _Shape(route.compiled, {}))
                entry.methods[method] = route
        for methods in static.values():
            if "GET" in methods:
                methods.setdefault("HEAD", methods["GET"])
        for entry in dynamic.values():
            if "GET" in entry.methods:
                entry.methods.setdefault("HEAD", entry.methods["GET"])
        self._static = static
        self._dynamic = tuple(sorted(dynamic.values(), key=lambda s: self._order[s.compiled.shape]))

    # ------------------------------------------------------------------ matching

    def match(self, path: str, method: str) -> tuple[Route | None, dict[str, object], set[str]]:
        """The route for ``method`` on ``path`` and its parameters; else the methods allowed
        on ``path`` (empty when nothing matches it: a 404 rather than a 405)."""
        allowed: set[str] = set()
        methods = self._static.get(path)
        if methods is not None:
            route = methods.get(method)
            if route is not None:
                return route, _NO_PARAMS, allowed
            allowed.update(methods)
        for shape in self._dynamic:
            pattern = shape.compiled.pattern
            found = pattern.match(path) if pattern is not None else None
            if found is None:
                continue
            route = shape.methods.get(method)
            if route is not None:
                return route, route.compiled.params(found), allowed
            allowed.update(shape.methods)
        return None, _NO_PARAMS, allowed

    # ------------------------------------------------------------------ reading

    def routes(self) -> list[Route]:
        """The routes served now, in the order their paths were first added."""
        active = [
            live[-1]
            for live in (
                [r for r in claims if r.owner.is_committed] for claims in self._claims.values()
            )
            if live
        ]
        return sorted(active, key=lambda r: (self._order[r.compiled.shape], r.method))

    def routes_of(self, plugin: str) -> list[Route]:
        return [r for r in self.routes() if r.plugin == plugin]

    def __len__(self) -> int:
        return len(self._claims)


def join_paths(prefix: str, path: str) -> str:
    """``/api`` + ``/users`` = ``/api/users``; an empty path is the prefix itself."""
    if not path:
        return prefix or "/"
    return prefix.rstrip("/") + "/" + path.lstrip("/")
