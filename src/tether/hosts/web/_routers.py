"""The routers plugins receive: ``ctx.router`` is the host's :class:`WebRouter`.

``PluginContext.router`` hands every plugin the same router object (the core keeps one
``runtime.router``), so the router finds out which plugin is calling: the innermost
frame of the call stack whose code lives in a loaded plugin (its directory, or its
package for installed plugins) names the plugin; failing that, the handler does (a
method of the plugin object, or a function defined in its code). The routes then
belong to that plugin's context, which releases them when the plugin unloads.
"""

from __future__ import annotations

import inspect
import os
import sys
import weakref
from collections.abc import Iterator
from types import FrameType

from tether import PluginContext, PluginManager
from tether.errors import TetherError
from tether.hosts.web._routing import Handler, Route, RouteTable, join_paths

__all__ = ["PluginRouter", "WebRouter"]

_THIS_FILE = os.path.realpath(__file__)


class PluginRouter:
    """The routes of one plugin, under a prefix (``group``). Implements ``tether.Router``."""

    __slots__ = ("_context", "_prefix", "_table")

    def __init__(self, table: RouteTable, context: PluginContext, prefix: str = "") -> None:
        self._table = table
        self._context = context
        self._prefix = prefix

    @property
    def plugin(self) -> str:
        return self._context.name

    @property
    def prefix(self) -> str:
        return self._prefix

    def add(self, method: str, path: str, handler: Handler) -> Route:
        """Serve ``method`` on ``path`` (under this router's prefix) with ``handler``."""
        context = self._context
        return self._table.add(
            plugin=context.name,
            owner=context,
            gate=context.gate,
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
        if not prefix.startswith("/"):
            raise TetherError(
                f"plugin '{self.plugin}': group prefix {prefix!r} must start with '/'",
                plugin=self.plugin,
            )
        return PluginRouter(self._table, self._context, join_paths(self._prefix, prefix))

    def routes(self) -> list[Route]:
        """This plugin's routes (all of them, whatever the prefix)."""
        return [r for r in self._table.routes() if r.owner is self._context]


class WebRouter:
    """The router the web host installs as ``manager.runtime.router``.

    Each call works out which plugin is calling (see the module docstring) and adds the
    route as that plugin's. ``for_context(ctx)`` gives a plugin's router explicitly.
    """

    def __init__(self, manager: PluginManager, table: RouteTable) -> None:
        self._manager = manager
        self.table = table
        self._routers: weakref.WeakKeyDictionary[PluginContext, PluginRouter] = (
            weakref.WeakKeyDictionary()
        )
        self._realpaths: dict[str, str] = {}

    def for_context(self, context: PluginContext) -> PluginRouter:
        """The root router of the plugin ``context`` belongs to; its routes go on unload."""
        router = self._routers.get(context)
        if router is None:
            router = PluginRouter(self.table, context)
            self._routers[context] = router
            table = self.table
            context.on_release(lambda: table.remove_owner(context))
        return router

    def for_plugin(self, name: str) -> PluginRouter:
        """The root router of the loaded plugin ``name``."""
        return self.for_context(self._manager.get_context(name))

    # ------------------------------------------------------------------ tether.Router

    def get(self, path: str, handler: Handler) -> None:
        self._caller(handler, "GET", path).add("GET", path, handler)

    def post(self, path: str, handler: Handler) -> None:
        self._caller(handler, "POST", path).add("POST", path, handler)

    def put(self, path: str, handler: Handler) -> None:
        self._caller(handler, "PUT", path).add("PUT", path, handler)

    def patch(self, path: str, handler: Handler) -> None:
        self._caller(handler, "PATCH", path).add("PATCH", path, handler)

    def delete(self, path: str, handler: Handler) -> None:
        self._caller(handler, "DELETE", path).add("DELETE", path, handler)

    def group(self, prefix: str) -> PluginRouter:
        return self._caller(None, "GROUP", prefix).group(prefix)

    # ------------------------------------------------------------------ who is calling

    def _caller(self, handler: Handler | None, method: str, path: str) -> PluginRouter:
        name = self._plugin_on_stack() or self._plugin_of_handler(handler)
        if name is None:
            raise TetherError(
                f"the web router cannot tell which plugin is adding {method} {path}",
                hint="add routes from the plugin's own code (initialize or start) through "
                "ctx.router; hosts and tests can use WebRouter.for_plugin(name)",
            )
        return self.for_plugin(name)

    def _places(self) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """Loaded plugins' directories (longest first) and installed plugins' packages."""
        directories: list[tuple[str, str]] = []
        packages: dict[str, str] = {}
        for info in self._manager.list_plugins():
            manifest = self._manager.get_manifest(info.name)
            directory = manifest.directory
            if directory is not None:
                directories.append((os.path.realpath(directory) + os.sep, info.name))
            else:
                packages[manifest.entry_module.partition(".")[0]] = info.name
        directories.sort(key=lambda item: len(item[0]), reverse=True)
        return directories, packages

    def _plugin_on_stack(self) -> str | None:
        directories, packages = self._places()
        for frame in _frames():
            filename = frame.f_code.co_filename
            if filename.startswith("<"):
                continue
            real = self._realpaths.get(filename)
            if real is None:
                real = self._realpaths[filename] = os.path.realpath(filename)
            if real == _THIS_FILE:
                continue
            for prefix, name in directories:
                if real.startswith(prefix):
                    return name
            module = frame.f_globals.get("__name__")
            if isinstance(module, str) and module.partition(".")[0] in packages:
                return packages[module.partition(".")[0]]
        return None

    def _plugin_of_handler(self, handler: Handler | None) -> str | None:
        if handler is None:
            return None
        owner = getattr(handler, "__self__", None)
        for info in self._manager.list_plugins():
            if owner is not None and owner is self._manager.get_plugin(info.name):
                return info.name
        module = sys.modules.get(getattr(handler, "__module__", None) or "")
        filename = getattr(module, "__file__", None)
        if not filename:
            return None
        real = os.path.realpath(filename)
        directories, _ = self._places()
        return next((name for prefix, name in directories if real.startswith(prefix)), None)


def _frames() -> Iterator[FrameType]:
    frame = inspect.currentframe()
    try:
        while frame is not None:
            yield frame
            frame = frame.f_back
    finally:
        del frame
