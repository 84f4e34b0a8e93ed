"""Services one plugin exports and others import, through proxies that follow versions.

``export(door, "UserService", obj)`` publishes ``obj`` as one version's implementation;
``import_(...)`` hands the importer a proxy. A proxy is a sealed view (see
``tether._sealed``): it has no state of its own, and its methods are the seam's entry
functions (``tether._seam``) for the public methods of the *live* version's object,
generated with each method's exact signature. So a service call passes the exporter's
door (held: wait; closed: ``PluginUnavailableError``), is timed and counted per
version, and its errors count against the exporter, exactly like every other call
into a plugin.

Each importer of a (plugin, name) has one stable proxy of its own (its class and entry
functions are not shared, so what one importer does to its proxy cannot reach
another's calls). When a version is committed its exports become the current ones and
the proxies' methods are regenerated for it; importers keep their proxy and reach the
new code on the next call. A method an importer kept from
an old proxy (``verify = proxy.verify``) still works: its version is no longer live,
so the seam sends the call on to the live version's method of the same name.

A proxy offers the service's public methods and nothing else: no data attributes, no
lifecycle methods of a plugin object, nothing whose value is the exporter's context,
and no attribute that leads to the exporter's object.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from tether._chain import CallChain
from tether._manifest import Manifest
from tether._sealed import Sealed, inner, seal
from tether._seam import Entry, parameters_of
from tether.errors import PluginUnavailableError, ServiceError, ServiceNotFoundError

if TYPE_CHECKING:
    from tether._gate import Door

__all__ = ["ServiceRegistry"]

log = logging.getLogger("tether.services")


class _Proxy(Sealed):
    """The base of every service proxy class (one class per export and importer)."""

    __slots__ = ()

    def __repr__(self) -> str:
        view = inner(self)
        if isinstance(view, _View):
            return f"<ServiceProxy {view.export.plugin}.{view.export.name}>"
        return "<ServiceProxy>"  # pragma: no cover - every proxy is sealed to its export


def _public(obj: object, hidden: frozenset[str]) -> list[str]:
    return [n for n in dir(obj) if not n.startswith("_") and n not in hidden]


def _is_method(obj: object, name: str) -> bool:
    """Callable and not a data descriptor (properties are never read at export)."""
    try:
        static = inspect.getattr_static(obj, name)
    except AttributeError:
        return False
    if inspect.isdatadescriptor(static) and not callable(static):
        return False
    if isinstance(static, type):
        return False  # a nested class is not a method
    try:
        return callable(getattr(obj, name))
    except Exception:
        return False


def _has_methods(obj: object) -> bool:
    return any(not n.startswith("_") and callable(getattr(obj, n, None)) for n in dir(type(obj)))


def _closed(plugin: str, name: str, reason: str) -> Callable[..., object]:
    def refuse(*_args: object, **_kwargs: object) -> object:
        raise PluginUnavailableError(plugin, reason)

    refuse.__name__ = name
    return refuse


class _Export:
    """One exported service: each version's implementation, and a proxy per importer."""

    def __init__(self, plugin: str, name: str) -> None:
        self.plugin = plugin
        self.name = name
        self.impls: dict[Door, tuple[object, frozenset[str], CallChain]] = {}
        self.current: Door | None = None
        self.views: dict[str, _View] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ versions

    def set(self, door: Door, obj: object, hidden: frozenset[str], chain: CallChain) -> None:
        with self._lock:
            self.impls[door] = (obj, hidden, chain)
            for view in self.views.values():
                view.entries.pop(door, None)
            self._refresh()

    def withdraw(self, door: Door) -> bool:
        with self._lock:
            if self.impls.pop(door, None) is None:
                return False
            for view in self.views.values():
                view.entries.pop(door, None)
            self._refresh()
            return True

    def refresh(self) -> None:
        with self._lock:
            self._refresh()

    def view_for(self, importer: str) -> _View:
        """The importer's own proxy (its class and entry functions are its alone, so
        nothing one importer does to its proxy reaches another's calls)."""
        with self._lock:
            view = self.views.get(importer)
            if view is None:
                view = self.views[importer] = _View(self)
                self._refresh_view(view)
            return view

    def _refresh(self) -> None:
        """Point the proxies at the committed version's implementation (or refuse calls)."""
        committed = [door for door in self.impls if door.committed]
        self.current = committed[-1] if committed else None
        for view in self.views.values():
            self._refresh_view(view)

    def _refresh_view(self, view: _View) -> None:
        current = self.current
        if current is None:
            # Staged (or gone): the names the newest version will offer refuse calls for now.
            staged = list(self.impls)
            entries = self._entries(view, staged[-1]) if staged else {}
            view.install(entries, reason=self._absence())
            return
        view.install(self._entries(view, current), reason="")

    def _absence(self) -> str:
        if self.impls:
            return "it has not finished initializing"
        return "it was unloaded"

    def _entries(self, view: _View, door: Door) -> dict[str, Entry]:
        found = view.entries.get(door)
        if found is None:
            obj, hidden, chain = self.impls[door]
            found = view.entries[door] = self._make_entries(view, door, obj, hidden, chain)
        return found

    def _make_entries(
        self, view: _View, door: Door, obj: object, hidden: frozenset[str], chain: CallChain
    ) -> dict[str, Entry]:
        if callable(obj) and not isinstance(obj, type) and not _has_methods(obj):
            methods: dict[str, Callable[..., object]] = {"__call__": obj}
        else:
            methods = {n: getattr(obj, n) for n in _public(obj, hidden) if _is_method(obj, n)}
        entries = {}
        for method, fn in methods.items():
            label = self.name if method == "__call__" else f"{self.name}.{method}"
            entries[method] = Entry(
                door,
                fn,
                f"service:{label}",
                chain=chain,
                params=parameters_of(fn),
                redirect=self._redirect(view, method),
            )
        return entries

    def _redirect(self, view: _View, method: str) -> Callable[[Door], Entry | None]:
        def stand_in(live: Door) -> Entry | None:
            with self._lock:
                if live not in self.impls:
                    return None
                return self._entries(view, live).get(method)

        return stand_in


class _View:
    """One importer's proxy of an export: its own class, whose attributes are the
    entry functions of the live version (host side; the proxy is sealed to it)."""

    def __init__(self, export: _Export) -> None:
        self.export = export
        self.entries: dict[Door, dict[str, Entry]] = {}
        self.klass: type[_Proxy] = type(export.name, (_Proxy,), {"__slots__": ()})
        self.proxy = self.klass()
        seal(self.proxy, self)
        self.function: Callable[..., object] | None = None

    def install(self, entries: dict[str, Entry], *, reason: str) -> None:
        export, klass = self.export, self.klass
        put, remove = type.__setattr__, type.__delattr__  # the class refuses plugins' writes
        call = entries.get("__call__")
        if call is not None:  # an exported function: the proxy is callable
            self.function = call.acall if call.is_async else call.call
            put(klass, "__call__", _call_function)
            return
        if "__call__" in vars(klass):
            self.function = _closed(export.plugin, export.name, reason or "it was unloaded")
            return
        if reason:  # no live version: every name refuses calls, with the reason
            for name in {*[n for n in vars(klass) if not n.startswith("_")], *entries}:
                put(klass, name, staticmethod(_closed(export.plugin, name, reason)))
            return
        for name in [n for n in vars(klass) if not n.startswith("_")]:
            if name not in entries:
                remove(klass, name)
        for name, entry in entries.items():
            put(klass, name, staticmethod(entry.acall if entry.is_async else entry.call))


def _call_function(self: _Proxy, *args: object, **kwargs: object) -> object:
    """The ``__call__`` of a proxy for an exported function: the live version's entry."""
    view = inner(self)
    if not isinstance(view, _View) or view.function is None:  # pragma: no cover
        raise TypeError("this service proxy is not callable")
    return view.function(*args, **kwargs)


class ServiceRegistry:
    """Every exported service, by (plugin, name)."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self._exports: dict[tuple[str, str], _Export] = {}
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str, str]] = set()

    def export(
        self,
        door: Door,
        name: str,
        obj: object,
        *,
        manifest: Manifest | None = None,
        hidden: frozenset[str] = frozenset(),
        chain: CallChain | None = None,
    ) -> None:
        """Publish ``obj`` as ``name`` for ``door``'s version; again under the name swaps it."""
        plugin = door.plugin
        if not name or not isinstance(name, str):
            raise ServiceError("a service needs a non-empty name", plugin=plugin)
        if obj is None:
            raise ServiceError(f"plugin '{plugin}' exported None as '{name}'", plugin=plugin)
        if manifest is not None and name not in {e.name for e in manifest.exports}:
            self._undeclared(plugin, name)
        with self._lock:
            export = self._exports.get((plugin, name))
            if export is None:
                export = self._exports[(plugin, name)] = _Export(plugin, name)
        export.set(door, obj, hidden, chain or door.chain)
        log.debug("plugin %s exported %s", plugin, name)

    def _undeclared(self, plugin: str, name: str) -> None:
        message = (
            f"plugin '{plugin}' exports '{name}' but its manifest does not list it under `exports`"
        )
        if self.strict:
            raise ServiceError(message, plugin=plugin, hint=f"add '{name}' to `exports`")
        if (plugin, name, "export") not in self._warned:
            self._warned.add((plugin, name, "export"))
            log.warning("%s", message)

    def import_(
        self,
        importer: str,
        plugin: str,
        name: str,
        *,
        importer_manifest: Manifest | None = None,
    ) -> object:
        """The proxy for ``plugin``'s service ``name``."""
        export = self._exports.get((plugin, name))
        if export is None or not export.impls:
            available = tuple(self.exports_of(plugin))
            raise ServiceNotFoundError(plugin, name, available=available)
        if importer_manifest is not None and importer_manifest.dependency(plugin) is None:
            key = (importer, plugin, name)
            if key not in self._warned:
                self._warned.add(key)
                log.warning(
                    "plugin '%s' imports '%s' from '%s' without declaring a dependency on it; "
                    "load order is not guaranteed",
                    importer, name, plugin,
                )  # fmt: skip
        return export.view_for(importer).proxy

    def refresh(self, plugin: str | None = None) -> None:
        """A version was committed: its exports become the ones proxies call."""
        for (owner, _), export in list(self._exports.items()):
            if plugin is None or owner == plugin:
                export.refresh()

    def remove_door(self, door: Door) -> int:
        """Withdraw one version's exports; proxies follow the live version, or refuse."""
        return sum(export.withdraw(door) for export in list(self._exports.values()))

    def withdraw_plugin(self, plugin: str) -> int:
        """The plugin unloaded: its proxies refuse calls until it exports again."""
        count = 0
        for (owner, _), export in list(self._exports.items()):
            if owner == plugin:
                for door in list(export.impls):
                    count += export.withdraw(door)
        return count

    def exports_of(self, plugin: str) -> list[str]:
        """The services ``plugin`` exports now (from any loaded version)."""
        return sorted(n for (p, n), e in self._exports.items() if p == plugin and e.impls)
