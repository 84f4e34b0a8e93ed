"""The router a plugin receives as ``ctx.router``: one :class:`PluginRouter` per version.

The web host gives the runtime a router factory (``Runtime.provide_router``); the
plugin's context asks it for the router of the plugin's own scope, so every route
added through it belongs to that plugin version, and goes when the version goes.
Plugins see the router through a sealed view of :class:`tether.Router` (``get``,
``post``, ``put``, ``patch``, ``delete``, ``group``); the table behind it is the host's.
"""

from __future__ import annotations

from tether import PluginScope, TetherError
from tether.hosts.web._routing import Handler, Route, RouteTable, join_paths
from tether.hosts.web._wire import wire_handler
from tether.isolation import is_remote

__all__ = ["PluginRouter"]


class PluginRouter:
    """The routes of one plugin version, under a prefix (``group``). A ``tether.Router``."""

    __slots__ = ("_prefix", "_scope", "_table")

    def __init__(self, table: RouteTable, scope: PluginScope, prefix: str = "") -> None:
        self._table = table
        self._scope = scope
        self._prefix = prefix

    @property
    def plugin(self) -> str:
        return self._scope.name

    @property
    def prefix(self) -> str:
        return self._prefix

    def add(self, method: str, path: str, handler: Handler) -> Route:
        """Serve ``method`` on ``path`` (under this router's prefix) with ``handler``."""
        if is_remote(handler):  # a process plugin's: it takes the request as a map
            handler = wire_handler(handler)
        return self._table.add(
            owner=self._scope,
            method=method,
            path=join_paths(self._prefix, path) if self._prefix else path,
            handler=handler,
        )

    def get(self, path: str, handler: Handler) -> None:
        self.add("GET", path, handler)

    def post(self, path: str, handler: Handler) -> None:
        self.add("POST", path, handler)

    def put(self, path: str, handler: Handler) -> None:
        self.add("PUT", path, handler)

    def patch(self, path: str, handler: Handler) -> None:
        self.add("PATCH", path, handler)

    def delete(self, path: str, handler: Handler) -> None:
        self.add("DELETE", path, handler)

    def group(self, prefix: str) -> PluginRouter:
        """A router whose paths start with ``prefix`` (``group("/users").get("/me", h)``)."""
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise TetherError(
                f"plugin '{self.plugin}': group prefix {prefix!r} must start with '/'",
                plugin=self.plugin,
            )
        return PluginRouter(self._table, self._scope, join_paths(self._prefix, prefix))

    def routes(self) -> list[Route]:
        """This version's routes (all of them, whatever the prefix)."""
        return [r for r in self._table.routes() if r.owner is self._scope]
