"""Services one plugin exports and others import, through proxies that follow versions.

``export(door, "UserService", obj)`` publishes ``obj`` as one version's implementation;
``import_(...)`` hands the importer a proxy. A proxy is a sealed view (see
``tether._sealed``): it has no state of its own, and its methods are the seam's entry
functions (``tether._seam``) for the public methods of the *live* version's object,
generated with each method's exact signature. So a service call passes the exporter's
door (held: wait; closed: ``PluginUnavailableError``), is timed and counted per
version, and its errors count against the exporter, exactly like every other call
into a plugin.

Each (plugin, name) has one stable proxy. When a version is committed its exports
become the current ones and the proxy's methods are regenerated for it; importers keep
their proxy and reach the new code on the next call. A method an importer kept from
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
    """The base of every service proxy class (one class per export)."""

    __slots__ = ()

    def __repr__(self) -> str:
        export = inner(self)
        if isinstance(export, _Export):
            return f"<ServiceProxy {export.plugin}.{export.name}>"
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
    """One exported service: each version's implementation, and the one stable proxy."""

    def __init__(self, plugin: str, name: str) -> None:
        self.plugin = plugin
        self.name = name
        self.impls: dict[Door, tuple[object, frozenset[str], CallChain]] = {}
        self.current: Door | None = None
        self.entries: dict[Door, dict[str, Entry]] = {}
        self.proxy_class: type[_Proxy] = type(name, (_Proxy,), {"__slots__": ()})
        self.proxy = self.proxy_class()
        seal(self.proxy, self)
        self.function: Callable[..., object] | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ versions

    def set(self, door: Door, obj: object, hidden: frozenset[str], chain: CallChain) -> None:
        with self._lock:
            self.impls[door] = (obj, hidden, chain)
            self.entries.pop(door, None)
            self._refresh()

    def withdraw(self, door: Door) -> bool:
        with self._lock:
            if self.impls.pop(door, None) is None:
                return False
            self.entries.pop(door, None)
            self._refresh()
            return True

    def refresh(self) -> None:
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        """Point the proxy at the committed version's implementation (or refuse calls)."""
        committed = [door for door in self.impls if door.committed]
        current = committed[-1] if committed else None
        self.current = current
        if current is None:
            # Staged (or gone): the names the newest version will offer refuse calls for now.
            staged = list(self.impls)
            self._install(self._entries(staged[-1]) if staged else {}, reason=self._absence())
            return
        self._install(self._entries(current), reason="")

    def _absence(self) -> str:
        if self.impls:
            return "it has not finished initializing"
        return "it was unloaded"

    def _entries(self, door: Door) -> dict[str, Entry]:
        found = self.entries.get(door)
        if found is None:
            obj, hidden, chain = self.impls[door]
            found = self.entries[door] = self._make_entries(door, obj, hidden, chain)
        return found

    def _make_entries(
        self, door: Door, obj: object, hidden: frozenset[str], chain: CallChain
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
                redirect=self._redirect(method),
            )
        return entries

    def _redirect(self, method: str) -> Callable[[Door], Entry | None]:
        def stand_in(live: Door) -> Entry | None:
            with self._lock:
                if live not in self.impls:
                    return None
                return self._entries(live).get(method)

        return stand_in

    def _install(self, entries: dict[str, Entry], *, reason: str) -> None:
        klass = self.proxy_class
        call = entries.get("__call__")
        if call is not None:  # an exported function: the proxy is callable
            self.function = call.acall if call.is_async else call.call
            setattr(klass, "__call__", _call_function)  # noqa: B010 - a dunder on the class
            return
        if "__call__" in vars(klass):
            self.function = _closed(self.plugin, self.name, reason or "it was unloaded")
            return
        if reason:  # no live version: every name refuses calls, with the reason
            for name in {*[n for n in vars(klass) if not n.startswith("_")], *entries}:
                setattr(klass, name, staticmethod(_closed(self.plugin, name, reason)))
            return
        for name in [n for n in vars(klass) if not n.startswith("_")]:
            if name not in entries:
                delattr(klass, name)
        for name, entry in entries.items():
            setattr(klass, name, staticmethod(entry.acall if entry.is_async else entry.call))


def _call_function(self: _Proxy, *args: object, **kwargs: object) -> object:
    """The ``__call__`` of a proxy for an exported function: the live version's entry."""
    export = inner(self)
    if not isinstance(export, _Export) or export.function is None:  # pragma: no cover
        raise TypeError("this service proxy is not callable")
    return export.function(*args, **kwargs)


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
        return export.proxy

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
