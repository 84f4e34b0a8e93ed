"""Services one plugin exports and others import, through proxies that survive reloads.

``export(plugin, gate, "UserService", obj)`` publishes ``obj``; ``import_(...)`` hands
the importer a :class:`ServiceProxy`. The proxy never holds the exporter's object
directly: each of its methods is a small generated function that calls the method of
the *current* export through a one-slot cell. Exporting again under the same name
(what a reload does) swaps the cells, so importers keep their proxy and get the new
code on the next call.

The exporter's gate decides what the cells hold. Open: the real bound methods. Held
(reloading): stubs that wait for the gate, then call the current export. Closed:
stubs that raise ``PluginUnavailableError``. So the normal path is one extra Python
frame with exactly the method's signature, and a ``try`` that counts errors against
the exporter; no per-call bookkeeping.

Calls in flight are still visible to ``Gate.drain``: the generated functions' code
objects are registered, and a probe on the gate counts the frames of those functions
on other threads' stacks. Async methods are wrapped with ``enter_async``/``exit``.
"""

from __future__ import annotations

import inspect
import logging
import re
import sys
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from tether._gate import Gate, GateState
from tether._manifest import Manifest
from tether.errors import PluginUnavailableError, ServiceError, ServiceNotFoundError

__all__ = ["ServiceProxy", "ServiceRegistry"]

log = logging.getLogger("tether.services")

_CODES: dict[CodeType, Gate] = {}  # generated wrapper code -> the exporter's gate
_codes_lock = threading.Lock()


def _frames_in(gate: Gate) -> int:
    """How many generated service frames for ``gate`` are on other threads' stacks."""
    me = threading.get_ident()
    count = 0
    for thread_id, top in sys._current_frames().items():  # noqa: SLF001 - the one API for it
        if thread_id == me:
            continue
        frame: FrameType | None = top
        while frame is not None:
            if _CODES.get(frame.f_code) is gate:
                count += 1
            frame = frame.f_back
    return count


class ServiceProxy:
    """What ``import_service`` returns: the methods of the current export, gated."""

    __slots__ = ("__dict__", "_export")

    def __init__(self, export: _Export) -> None:
        object.__setattr__(self, "_export", export)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("service proxies are read-only")

    def __repr__(self) -> str:
        export: _Export = object.__getattribute__(self, "_export")
        return f"<ServiceProxy {export.plugin}.{export.name}>"


# --------------------------------------------------------------------------- codegen


def _parameters(fn: Callable[..., object]) -> tuple[str, str, dict[str, object]] | None:  # noqa: C901
    """Source text of a parameter list and the matching call, or None when unknown."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params: list[str] = []
    args: list[str] = []
    defaults: dict[str, object] = {}
    saw_positional_only = saw_star = False
    for index, p in enumerate(signature.parameters.values()):
        name = f"a{index}"
        default = ""
        if p.default is not inspect.Parameter.empty:
            defaults[f"d{index}"] = p.default
            default = f"=d{index}"
        kind = p.kind
        if kind is inspect.Parameter.POSITIONAL_ONLY:
            params.append(f"{name}{default}")
            args.append(name)
            saw_positional_only = True
            continue
        if saw_positional_only:
            params.append("/")
            saw_positional_only = False
        if kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            params.append(f"{p.name}{default}")
            args.append(p.name)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            params.append(f"*{p.name}")
            args.append(f"*{p.name}")
            saw_star = True
        elif kind is inspect.Parameter.KEYWORD_ONLY:
            if not saw_star:
                params.append("*")
                saw_star = True
            params.append(f"{p.name}{default}")
            args.append(f"{p.name}={p.name}")
        else:
            params.append(f"**{p.name}")
            args.append(f"**{p.name}")
    if saw_positional_only:
        params.append("/")
    return ", ".join(params), ", ".join(args), defaults


_SYNC = """
def {name}({params}):
    try:
        return {cell}[0]({args})
    except Exception as {exc}:
        {record}({exc})
        raise
"""

_ASYNC = """
async def {name}({params}):
    if {gate}.is_open:
        {gate}.calls.append(None)
    else:
        await {gate}.enter_async()
    try:
        return await {cell}[0]({args})
    except Exception as {exc}:
        {record}({exc})
        raise
    finally:
        {gate}.exit()
"""


def _free(name: str, taken: set[str]) -> str:
    while name in taken:
        name = "_" + name
    return name


def _generate(
    method_name: str,
    fn: Callable[..., object],
    cell: list[Callable[..., object]],
    gate: Gate,
    record: Callable[[BaseException], None],
) -> Callable[..., object]:
    parts = _parameters(fn)
    params, args, defaults = parts or ("*args, **kwargs", "*args, **kwargs", {})
    template = _ASYNC if inspect.iscoroutinefunction(fn) else _SYNC
    safe = method_name if method_name.isidentifier() else "service_call"
    taken = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", params)) | {safe}
    names = {k: _free(k, taken) for k in ("cell", "gate", "record", "exc")}
    source = template.format(name=safe, params=params, args=args, **names)
    namespace: dict[str, Any] = {
        names["cell"]: cell,
        names["gate"]: gate,
        names["record"]: record,
        **defaults,
    }
    exec(compile(source, f"<tether service {gate.plugin}.{method_name}>", "exec"), namespace)  # noqa: S102 - generated from a signature, no user text
    wrapper: Callable[..., object] = namespace[safe]
    wrapper.__doc__ = getattr(fn, "__doc__", None)
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    with _codes_lock:
        _CODES[wrapper.__code__] = gate
    return wrapper


# --------------------------------------------------------------------------- exports


class _Export:
    """One exported service and every cell that points into it."""

    def __init__(self, plugin: str, name: str, gate: Gate) -> None:
        self.plugin = plugin
        self.name = name
        self.gate = gate
        self.obj: object | None = None
        self.cells: dict[str, list[Callable[..., object]]] = {}
        self.proxy: ServiceProxy | Callable[..., object] | None = None
        self.wrappers: dict[str, Callable[..., object]] = {}
        self.signatures: dict[str, object] = {}
        self.hidden: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def current(self) -> object:
        if self.obj is None or self.gate.state is GateState.CLOSED:
            raise PluginUnavailableError(self.plugin, self.gate.closed_reason)
        return self.obj

    def _record(self, exc: BaseException) -> None:
        if isinstance(exc, PluginUnavailableError) and exc.plugin == self.plugin:
            return  # refused at its own gate: not an error of its code
        self.gate.record_error(exc, source=f"service:{self.name}")

    def _methods(self) -> dict[str, Callable[..., object]]:
        obj = self.obj
        if obj is None:
            return {}
        if callable(obj) and not isinstance(obj, type) and not _has_methods(obj):
            return {"__call__": obj}
        return {n: getattr(obj, n) for n in _public(obj, self.hidden) if _is_method(obj, n)}

    def set(self, obj: object) -> None:
        """Install a new implementation and regenerate the proxy's methods."""
        with self._lock:
            self.obj = obj
            methods = self._methods()
            generated: dict[str, Callable[..., object]] = {}
            for name, fn in methods.items():
                cell = self.cells.get(name)
                if cell is None:
                    cell = self.cells[name] = [fn]
                signature = _signature_key(fn)
                wrapper = self.wrappers.get(name)
                if wrapper is None or self.signatures.get(name) != signature:
                    wrapper = _generate(name, fn, cell, self.gate, self._record)
                    self.wrappers[name] = wrapper
                    self.signatures[name] = signature
                generated[name] = wrapper
            if "__call__" in generated:
                self.proxy = generated["__call__"]
            else:
                if not isinstance(self.proxy, ServiceProxy):
                    self.proxy = ServiceProxy(self)
                self.proxy.__dict__.clear()
                self.proxy.__dict__.update(generated)
                # Plain (non-callable) attributes become properties reading the current
                # export; a class of their own keeps attribute lookup free of __getattr__.
                object.__setattr__(self.proxy, "__class__", self._proxy_class(obj))
            self._rebind(self.gate.state)

    def _proxy_class(self, obj: object) -> type[ServiceProxy]:
        def reader(attribute: str) -> property:
            return property(lambda _proxy: getattr(self.current(), attribute))

        data = [n for n in _public(obj, self.hidden) if not _is_method(obj, n)]
        name = f"{type(obj).__name__}Proxy"
        return type(name, (ServiceProxy,), {"__slots__": (), **{n: reader(n) for n in data}})

    def _rebind(self, state: GateState) -> None:
        methods = self._methods()
        for name, cell in self.cells.items():
            if state is GateState.OPEN and name in methods:
                cell[0] = methods[name]
            elif state is GateState.HELD:
                cell[0] = self._held(name)
            else:
                cell[0] = self._closed

    def on_gate(self, state: GateState) -> None:
        with self._lock:
            self._rebind(state)

    def _held(self, name: str) -> Callable[..., object]:
        def wait_then_call(*args: object, **kwargs: object) -> object:
            self.gate.enter()  # blocks until the reload finishes (or times out)
            try:
                target = self.current()
                method: Callable[..., object] = (
                    target if name == "__call__" else getattr(target, name)  # type: ignore[assignment]
                )
                return method(*args, **kwargs)
            finally:
                self.gate.exit()

        return wait_then_call

    def _closed(self, *_args: object, **_kwargs: object) -> object:
        raise PluginUnavailableError(self.plugin, self.gate.closed_reason)

    def withdraw(self) -> None:
        with self._lock:
            self.obj = None
            for cell in self.cells.values():
                cell[0] = self._closed


class _Probe:
    """Counts the exporter's service calls in flight on other threads."""

    tether_services = True

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def __call__(self) -> int:
        return _frames_in(self.gate)


def _public(obj: object, hidden: frozenset[str]) -> list[str]:
    return [n for n in dir(obj) if not n.startswith("_") and n not in hidden]


def _is_method(obj: object, name: str) -> bool:
    """Callable and not a data descriptor (properties are read on use, never at export)."""
    try:
        static = inspect.getattr_static(obj, name)
    except AttributeError:
        return False
    if inspect.isdatadescriptor(static) and not callable(static):
        return False
    try:
        return callable(getattr(obj, name))
    except Exception:
        return False


def _signature_key(fn: Callable[..., object]) -> object:
    try:
        return (str(inspect.signature(fn)), inspect.iscoroutinefunction(fn))
    except (TypeError, ValueError):
        return None


def _has_methods(obj: object) -> bool:
    return any(not n.startswith("_") and callable(getattr(obj, n, None)) for n in dir(type(obj)))


class ServiceRegistry:
    """Every exported service, by (plugin, name)."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self._exports: dict[tuple[str, str], _Export] = {}
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str, str]] = set()

    def export(
        self,
        plugin: str,
        gate: Gate,
        name: str,
        obj: object,
        *,
        manifest: Manifest | None = None,
        hidden: frozenset[str] = frozenset(),
    ) -> None:
        """Publish ``obj`` as ``plugin``'s service ``name``; again under the name swaps it."""
        if not name or not isinstance(name, str):
            raise ServiceError("a service needs a non-empty name", plugin=plugin)
        if obj is None:
            raise ServiceError(f"plugin '{plugin}' exported None as '{name}'", plugin=plugin)
        if manifest is not None and name not in {e.name for e in manifest.exports}:
            self._undeclared(plugin, name)
        with self._lock:
            export = self._exports.get((plugin, name))
            if export is None or export.gate is not gate:
                export = self._adopt(plugin, name, gate, export)
        export.hidden = hidden
        export.set(obj)
        log.debug("plugin %s exported %s", plugin, name)

    def _adopt(self, plugin: str, name: str, gate: Gate, old: _Export | None) -> _Export:
        export = _Export(plugin, name, gate)
        if old is not None:  # a reload: keep the proxy importers already hold
            export.proxy = old.proxy
            export.cells, export.wrappers, export.signatures = (
                old.cells,
                old.wrappers,
                old.signatures,
            )
            with _codes_lock:
                for wrapper in old.wrappers.values():
                    _CODES[wrapper.__code__] = gate
                    space = wrapper.__globals__
                    for key, value in list(space.items()):
                        if value is old.gate:
                            space[key] = gate
                        elif getattr(value, "__self__", None) is old:
                            space[key] = export._record  # noqa: SLF001 - same module
            if isinstance(export.proxy, ServiceProxy):
                object.__setattr__(export.proxy, "_export", export)
            old.gate.state_listeners.remove(old.on_gate)
        gate.state_listeners.append(export.on_gate)
        if not any(getattr(p, "tether_services", False) for p in gate.probes):
            probe = _Probe(gate)
            gate.probes.append(probe)
        self._exports[(plugin, name)] = export
        return export

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
        """A proxy for ``plugin``'s service ``name``."""
        export = self._exports.get((plugin, name))
        if export is None or export.obj is None:
            available = tuple(
                sorted(n for (p, n), e in self._exports.items() if p == plugin and e.obj)
            )
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
        if export.proxy is None:  # pragma: no cover - set() always builds one
            raise ServiceNotFoundError(plugin, name)
        return export.proxy

    def withdraw_plugin(self, plugin: str) -> int:
        """The plugin unloaded: its proxies now refuse calls until it exports again."""
        count = 0
        for (owner, _), export in list(self._exports.items()):
            if owner == plugin:
                export.withdraw()
                count += 1
        return count

    def exports_of(self, plugin: str) -> list[str]:
        return sorted(n for (p, n), e in self._exports.items() if p == plugin and e.obj)
