"""The capability boundary of a plugin's context, tested the way a hostile reviewer would.

The claim
---------
Start from any object a plugin receives:

- its context (``initialize(ctx)``), and what the context's properties and methods
  return, with every permission granted and with none (``logger``, ``metrics``,
  ``plugin_config``, ``plugin_storage``, ``database``, ``cache``, ``config``,
  ``router`` and ``router.group()``, the handles ``register_hook``,
  ``subscribe_event`` and ``register_middleware`` return, the events
  ``publish_event`` returns, and the errors a refused property raises);
- service proxies of other plugins (an exported object and an exported function);
- the events it is delivered;
- the arguments hosts pass to its hooks and handlers: ``startup``/``shutdown`` (the
  plugins' names), the web host's ``RequestContext`` (``pre_request``,
  ``post_request``, ``pre_response``, ``post_response``, ``error``), a route
  handler's request, a middleware's ``request`` and ``call_next``, and the workload
  host's database connection.

From there, no chain of *ordinary* attribute access reaches host machinery or
another plugin's objects. Host machinery: the manager, the runtime, every registry
(hooks, events, services, middleware, the web host's route table, contracts, call
statistics), every gate, door, slot, version and handle, every scope (the plugin's
own included), the state store and its SQL connection, the database manager (for a
plugin without the ``database`` permission), every cache manager and its entries,
the metrics store, the observability hub, the web app and the server. Another
plugin's objects: its instance, its context, and the objects it exports (the
exporter's service object and what its exported function is bound to).

Ordinary access (what :class:`Reach` follows, and nothing more)
---------------------------------------------------------------
- every name ``dir()`` lists, public, ``_private`` and dunder, read with ``getattr``
  (so property values are read), except the names listed under "Not covered";
- instance ``__dict__`` and ``__slots__`` values; ``__class__`` and class attributes
  (``vars(cls)`` and everything ``dir(cls)`` lists);
- ``__self__`` and ``__func__`` of bound methods, ``__wrapped__``, the contents of
  ``__closure__`` cells, ``__defaults__`` and ``__kwdefaults__``;
- ``functools.partial``'s ``func``, ``args`` and ``keywords``;
- iteration over containers found that way (mappings: keys and values; sequences and
  sets; deques; weak sets);
- calling zero-argument public methods whose names say they only read: ``get_*``,
  ``list``, ``keys``, ``values``, ``items``, ``as_dict``, ``to_dict``, ``routes``,
  ``subscriptions``, ``samples`` (never ``async`` ones).

Bounds: depth 8 from each root, 20,000 objects per walk. Not walked into: modules,
classes of the standard library, and values (``None``, numbers, strings, bytes,
paths, dates). A walk that hits its node limit is reported as truncated (and its
"nothing reached" is not a proof).

Not covered, by design
----------------------
``__globals__``, ``__code__`` (and code objects), ``__builtins__``, frames
(``f_back``, ``f_locals``, ``gi_frame``, ``cr_frame``, ``ag_frame``, ``tb_frame``),
``gc``, ``sys.modules``, importing ``tether._*``. In one process these reach
everything: a seam entry's ``__globals__`` holds the plugin callable it calls (a
service proxy method's ``__globals__["_t_F"]`` is the exporter's bound method), any
plugin function's ``__globals__`` reaches ``sys.modules``. Process isolation (a later
issue) is the boundary for code that is not trusted; this one keeps honest plugins
from reaching in by accident or by the obvious paths. The standard library's
process-wide state (``logging``'s logger tree, ``os.environ``) is every module's
anyway and is not host machinery.

A service method's *return value* is the exporter's choice: an exporter whose method
returns ``self`` hands its object out (``test_a_service_that_returns_self_hands_itself_out``).

How a failure reads: each walk test prints every forbidden object it reached and the
exact attribute path to it (``RequestContext.request._receive.__self__...``), so a
failing test names the open door. Tests marked ``beyond the rules`` are paths found
by attacking past the walker's rules (writes, weak references, class mutation).

Doors this module found, and how they were closed (its tests keep them closed):

- a web request led to the server: the Starlette ``Request`` kept uvicorn's ``receive``
  (a bound method of the connection, whose ``__self__`` reaches the ``WebApp`` and the
  manager). The web host now builds requests around a ``receive`` bound to the
  request's scope, which finds the server's in the context of the serving task.
- ``ctx.__weakref__.__callback__._registry`` (``weakref.finalize``'s class-wide registry)
  led to every sealed view alive. ``tether._sealed.seal`` now keeps a plain
  ``weakref.ref`` whose callback holds only a key.
- classes shared between plugins were writable (``type(ctx)``, view classes, a proxy's
  class) and one proxy served every importer. Sealed classes now refuse
  ``setattr``/``delattr``, and each importer has its own proxy class and entry functions.
- ``ctx.database`` was the runtime's ``DatabaseManager`` (whose ``close()`` is every
  plugin's); it is a sealed view now, and its ``transaction()`` yields the view.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import decimal
import functools
import inspect
import os
import pathlib
import re
import secrets
import shutil
import sys
import threading
import types
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import yaml

import tether
from helpers import PluginWriter
from tether._context import Context
from tether._sealed import Sealed, inner
from tether.errors import PermissionDeniedError
from tether.hosts.web import RequestContext
from tether.hosts.web.testing import LiveServer

# =========================================================================== the walker

VALUES: tuple[type, ...] = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    bytearray,
    memoryview,
    range,
    slice,
    type(Ellipsis),
    type(NotImplemented),
    pathlib.PurePath,
    dt.date,
    dt.time,
    dt.timedelta,
    dt.tzinfo,
    decimal.Decimal,
    uuid.UUID,
    re.Pattern,
)
NOT_FOLLOWED = frozenset(
    {
        "__globals__",
        "__code__",
        "__builtins__",
        "f_back",
        "f_builtins",
        "f_code",
        "f_globals",
        "f_locals",
        "f_trace",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "tb_frame",
    }
)
READ_METHODS = frozenset(
    {"list", "keys", "values", "items", "as_dict", "to_dict", "routes", "subscriptions", "samples"}
)
_STDLIB = frozenset(sys.stdlib_module_names) | {"builtins"}
_DESCRIPTORS = (
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MemberDescriptorType,
    types.GetSetDescriptorType,
    types.ClassMethodDescriptorType,
)
_BOUND_BUILTINS = (types.BuiltinMethodType, types.MethodWrapperType)
_CONTAINERS = (dict, list, tuple, set, frozenset, collections.deque)


_MODULE_OF = type.__dict__["__module__"]  # a class's own module, whatever it defines


def module_of(klass: type) -> str:
    module = _MODULE_OF.__get__(klass)
    return module if isinstance(module, str) else ""


def is_stdlib_class(obj: object) -> bool:
    return isinstance(obj, type) and module_of(obj).partition(".")[0] in _STDLIB


def is_skipped(obj: object) -> bool:
    """Values, modules, classes of the standard library, frames and code: not walked into;
    nor the process's environment (every module's anyway: a console a logging handler
    keeps holds ``os.environ``, where the auth example's key is set)."""
    return (
        isinstance(obj, (*VALUES, types.ModuleType, types.FrameType, types.CodeType))
        or obj is os.environ
        or is_stdlib_class(obj)
    )


def is_read_method(name: str) -> bool:
    return name in READ_METHODS or name.startswith("get_")


Edge = tuple[str, object]


def edges(obj: object) -> Iterator[Edge]:
    """Every (step, object) one ordinary access away from ``obj``."""
    yield from _container_edges(obj)
    if isinstance(obj, functools.partial):
        yield from ((".func", obj.func), (".args", obj.args), (".keywords", obj.keywords))
    if isinstance(obj, types.FunctionType):
        for n, cell in enumerate(obj.__closure__ or ()):
            try:
                yield f".__closure__[{n}].cell_contents", cell.cell_contents
            except ValueError:  # an empty cell
                continue
    yield from _dict_edges(obj)
    for name in _names(obj):
        yield from _attribute_edges(obj, name)


def _container_edges(obj: object) -> Iterator[Edge]:
    if isinstance(obj, type):
        return
    try:
        if isinstance(obj, Mapping):
            for n, (key, value) in enumerate(list(obj.items())):
                yield f"[key {n}]", key
                shown = repr(key) if isinstance(key, str | int) else f"value {n}"
                yield f"[{shown}]", value
        elif isinstance(obj, collections.abc.Set | collections.abc.Sequence | collections.deque):
            if isinstance(obj, str | bytes | bytearray | range | memoryview):
                return
            for n, value in enumerate(list(obj)):
                yield f"[{n}]", value
    except Exception:  # a container that cannot be listed has no edges
        return


def _dict_edges(obj: object) -> Iterator[Edge]:
    try:
        namespace = vars(obj)
    except TypeError:
        return
    except Exception:  # a __getattr__ that raises something else
        return
    for key, value in list(namespace.items()):
        yield f".__dict__[{key!r}]", value


def _names(obj: object) -> list[str]:
    try:
        names = set(dir(obj))
    except Exception:
        return []
    return sorted(names - NOT_FOLLOWED)


def _attribute_edges(obj: object, name: str) -> Iterator[Edge]:
    try:
        value = getattr(obj, name)
    except Exception:
        return
    if isinstance(value, types.MethodType):  # a bound method: its function and its object
        if value.__self__ is obj and is_read_method(name):
            yield from _read(name, value)
        yield f".{name}.__func__", value.__func__
        yield f".{name}.__self__", value.__self__
    elif isinstance(value, _BOUND_BUILTINS):  # a bound builtin leads only to its object
        bound = getattr(value, "__self__", None)
        if bound is obj and is_read_method(name) and not isinstance(obj, _CONTAINERS):
            yield from _read(name, value)
        yield f".{name}.__self__", bound
    elif isinstance(value, _DESCRIPTORS):  # a C slot's descriptor leads only to its class
        yield f".{name}.__objclass__", getattr(value, "__objclass__", None)
    else:
        yield f".{name}", value


def _read(name: str, method: Callable[..., object]) -> Iterator[Edge]:
    """The result of a zero-argument read method (none for ``async def`` ones)."""
    if inspect.iscoroutinefunction(method):
        return
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return
    required = (
        p
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind not in {p.VAR_POSITIONAL, p.VAR_KEYWORD}
    )
    if next(required, None) is not None:
        return
    try:
        result = method()
    except Exception:
        return
    # Never close or advance what a read returns: ``task.get_coro()`` is the task's own
    # coroutine. Only a generator that has not started (a fresh one) is listed.
    if inspect.isgenerator(result) and inspect.getgeneratorstate(result) == "GEN_CREATED":
        result = list(result)
    yield f".{name}()", result


@dataclasses.dataclass(frozen=True)
class Hit:
    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.what}\n        via {self.path}"


class Forbidden:
    """Objects no plugin-received object may lead to, by identity, each with a label."""

    def __init__(self) -> None:
        self._objects: dict[int, tuple[object, str]] = {}

    def add(self, obj: object, label: str) -> None:
        if obj is not None and not is_skipped(obj):
            self._objects.setdefault(id(obj), (obj, label))

    def allow(self, *objects: object) -> Forbidden:
        """A copy without ``objects`` (what one plugin may hold: its own instance...)."""
        copy = Forbidden()
        allowed = {id(o) for o in objects}
        copy._objects = {k: v for k, v in self._objects.items() if k not in allowed}
        return copy

    def label_of(self, obj: object) -> str | None:
        found = self._objects.get(id(obj))
        return found[1] if found is not None and found[0] is obj else None

    def __contains__(self, obj: object) -> bool:
        return self.label_of(obj) is not None

    def __len__(self) -> int:
        return len(self._objects)


class Reach:
    """A bounded breadth-first walk of ordinary attribute access from some roots.

    Records the path to every object it reaches; a forbidden object is a :class:`Hit`
    (and is not walked further); a string or bytes containing one of ``secrets`` is a
    hit as well.
    """

    def __init__(
        self,
        forbidden: Forbidden,
        *,
        secrets: Mapping[str, str] | None = None,
        max_depth: int = 8,
        max_nodes: int = 20_000,
    ) -> None:
        self.forbidden = forbidden
        self.secrets = dict(secrets or {})
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.hits: list[Hit] = []
        self.truncated = False
        self._nodes: list[tuple[object, int | None, str]] = []
        self._seen: dict[int, object] = {}  # keeps what it saw alive: ids stay unique

    def walk(self, roots: Mapping[str, object]) -> Reach:
        queue: collections.deque[tuple[int, int]] = collections.deque()
        for label, root in roots.items():
            self._visit(root, None, label, 0, queue)
        while queue and not self.truncated:
            index, depth = queue.popleft()
            if depth >= self.max_depth:
                continue
            for step, child in edges(self._nodes[index][0]):
                self._visit(child, index, step, depth + 1, queue)
                if self.truncated:
                    break
        return self

    @property
    def count(self) -> int:
        return len(self._nodes)

    def path_of(self, obj: object) -> str | None:
        for index, (node, _, _) in enumerate(self._nodes):
            if node is obj:
                return self._path(index)
        return None

    def _path(self, index: int | None, last: str = "") -> str:
        steps = [last] if last else []
        while index is not None:
            _, parent, step = self._nodes[index]
            steps.append(step)
            index = parent
        return "".join(reversed(steps))

    def _visit(
        self, obj: object, parent: int | None, step: str, depth: int, queue: collections.deque
    ) -> None:
        if isinstance(obj, str | bytes):
            self._check_secret(obj, parent, step)
        if is_skipped(obj) or id(obj) in self._seen:
            return
        if len(self._nodes) >= self.max_nodes:
            self.truncated = True
            return
        self._seen[id(obj)] = obj
        self._nodes.append((obj, parent, step))
        index = len(self._nodes) - 1
        label = self.forbidden.label_of(obj)
        if label is not None:
            self.hits.append(Hit(self._path(index), label))
            return
        queue.append((index, depth))

    def _check_secret(self, value: str | bytes, parent: int | None, step: str) -> None:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        for label, secret in self.secrets.items():
            if secret in text:
                self.hits.append(Hit(self._path(parent, step), label))

    def report(self) -> str:
        lines = [f"{len(self.hits)} forbidden object(s) reached ({self.count} objects walked):"]
        lines += [f"  - {hit}" for hit in self.hits]
        return "\n".join(lines)


def assert_sealed(reach: Reach) -> None:
    """No forbidden object reached, and the walk was complete."""
    assert not reach.hits, reach.report()
    assert not reach.truncated, f"the walk stopped at {reach.count} objects: not a proof"


# --------------------------------------------------------------------------- the walker itself


class _Inner:
    def __init__(self, target: object) -> None:
        self._target = target

    @property
    def target(self) -> object:
        return self._target


def test_the_walker_follows_each_rule():
    """Each ordinary access the docstring lists leads the walker to a planted object."""
    planted = {name: object() for name in ("slot", "closure", "default", "kwdefault",
                                          "partial", "wrapped", "property", "class", "read",
                                          "self", "container")}  # fmt: skip

    class Slotted:
        __slots__ = ("value",)

    class Holder:
        attribute = planted["class"]

        def __init__(self) -> None:
            self.slotted = Slotted()
            self.slotted.value = planted["slot"]
            secret = planted["closure"]
            self.fn = lambda: secret
            self.with_defaults = _with_defaults(planted["default"], planted["kwdefault"])
            self.partial = functools.partial(print, planted["partial"])
            self.wrapper = functools.wraps(_target_of(planted["wrapped"]))(lambda: None)
            self.prop = _Inner(planted["property"])
            self.reader = _Reader(planted["read"])
            self.method = _Inner(planted["self"]).__init__
            self.nested = {"a": [({planted["container"]},)]}

    forbidden = Forbidden()
    for name, obj in planted.items():
        forbidden.add(obj, name)
    reach = Reach(forbidden).walk({"holder": Holder()})
    assert {hit.what for hit in reach.hits} == set(planted), reach.report()


def _with_defaults(default: object, kwdefault: object) -> Callable[..., object]:
    def fn(a: object = default, *, b: object = kwdefault) -> object:
        return a, b

    return fn


def _target_of(obj: object) -> Callable[[], object]:
    def target() -> object:
        return obj

    return target


class _Reader:
    __slots__ = ("_hidden",)

    def __init__(self, value: object) -> None:
        self._hidden = [value]

    def __dir__(self) -> list[str]:
        return ["get_value"]  # only the reader is visible

    def get_value(self) -> object:
        return self._hidden[0]


def test_the_walker_stays_outside_what_the_rules_exclude():
    """``__globals__``, code objects and frames are not followed; values are not walked."""
    marker = object()
    namespace = {"__builtins__": __builtins__, "MARK": marker}
    fn = types.FunctionType(compile("def f(): return MARK", "<x>", "exec").co_consts[0], namespace)
    forbidden = Forbidden()
    forbidden.add(marker, "marker")
    reach = Reach(forbidden).walk({"fn": fn, "frame": sys._getframe()})
    assert not reach.hits, reach.report()


def test_the_walker_reports_strings_that_hold_a_secret():
    reach = Reach(Forbidden(), secrets={"the key": "k3y"}).walk({"x": {"a": ["..k3y.."]}})
    assert [hit.path for hit in reach.hits] == ["x['a'][0]"]


# =========================================================================== the plugins

EXPORTER = """
    import hashlib

    import tether


    class Vault:
        \"\"\"The exporter's service object: a secret in a private attribute, and methods.\"\"\"

        def __init__(self, secret):
            self._secret = secret

        def length(self):
            return len(self._secret)

        def myself(self):
            return self  # the exporter's choice: hands its object out

        def greet(self, name, *, greeting="hello"):
            return f"{greeting}, {name}"


    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            self.vault = Vault(ctx.plugin_config["secret"])
            ctx.export_service("Vault", self.vault)
            ctx.export_service("Digest", self.digest)

        def digest(self):
            return hashlib.sha256(self.vault._secret.encode()).hexdigest()
"""

# Every catcher keeps what it receives in ``self.got`` (label -> object, or a list of
# them). A plugin with the router serves /<name>/ok, /<name>/boom (fails) and
# /<name>/hold, which
# holds its request open until the test releases it, so that what a request carries
# is walked while the request is in flight.
CATCHER = """
    import asyncio
    import threading

    import tether

    HOOKS = ("startup", "shutdown", "pre_request", "post_request", "pre_response",
             "post_response", "error")
    GUARDED = ("database", "cache", "config", "router")


    class Plugin(tether.Plugin):
        def initialize(self, ctx):
            super().initialize(ctx)
            self.inside = threading.Event()
            self.release = threading.Event()
            self.exporters_choice = {}
            got = self.got = {"ctx": ctx}
            for name in ("manifest", "permissions", "logger", "metrics", "plugin_config",
                         "plugin_storage", *GUARDED):
                try:
                    got[f"ctx.{name}"] = getattr(ctx, name)
                except tether.TetherError as exc:
                    got[f"ctx.{name} (the error)"] = exc
            got["ctx.logger.with_fields()"] = ctx.logger.with_fields(probe=True)
            for hook in HOOKS:
                got[f"register_hook({hook})"] = ctx.register_hook(hook, 100, self.catch(hook))
            got["subscribe_event()"] = ctx.subscribe_event("probe.*", self.catch("event"))
            got["register_middleware()"] = ctx.register_middleware(
                "probe-" + ctx.name, self.middleware
            )
            got["import_service(Vault)"] = ctx.import_service("exporter", "Vault")
            got["import_service(Digest)"] = ctx.import_service("exporter", "Digest")
            got["ctx.publish_event_nowait()"] = ctx.publish_event_nowait("probe.loaded", ctx.name)
            refused = (
                ("import_service(missing)", lambda: ctx.import_service("exporter", "Missing")),
                ("register_middleware(twice)",
                 lambda: ctx.register_middleware("probe-" + ctx.name, self.middleware)),
                ("publish_event_nowait(bad name)", lambda: ctx.publish_event_nowait("bad*")),
            )
            for label, attempt in refused:
                try:
                    attempt()
                except tether.TetherError as exc:
                    got[f"{label} (the error)"] = exc
            if "ctx.router" in got:
                group = got["ctx.router.group()"] = got["ctx.router"].group("/" + ctx.name)
                group.get("/hold", self.hold)
                group.get("/ok", self.ok)
                group.get("/boom", self.boom)

        def catch(self, label):
            def record(argument):
                self.got.setdefault(f"{label} argument", []).append(argument)

            return record

        async def middleware(self, request, call_next):
            self.got.setdefault("middleware request", []).append(request)
            self.got.setdefault("middleware call_next", []).append(call_next)
            return await call_next(request)

        async def ok(self, request):
            return {"ok": True}

        async def boom(self, request):
            raise RuntimeError("boom")

        async def hold(self, request):
            self.got["route handler request"] = request
            self.got["ctx.publish_event()"] = await self.ctx.publish_event("probe.held", 1)
            vault = self.got["import_service(Vault)"]
            self.got["Vault.length() result"] = vault.length()
            self.got["Digest() result"] = self.got["import_service(Digest)"]()
            self.exporters_choice["Vault.myself() result"] = vault.myself()
            self.inside.set()
            await asyncio.to_thread(self.release.wait, 900)  # HOLD_FOR
            return {"held": True}
"""

HOLD_FOR = 900  # seconds: longer than the module's tests can take

EVERY_PERMISSION = ("database", "cache", "router", "config", "filesystem", "network", "exec")
EVENTS = {"publishes": ["probe.loaded", "probe.held"], "subscribes": ["probe.*"]}
CATCHERS = {
    # name: permissions granted
    "importer": ("cache",),
    "bare": (),
    "full": EVERY_PERMISSION,
}
PLUGINS = ("exporter", *CATCHERS)
ADMIN_TOKEN = "admin-" + secrets.token_hex(16)


def write_plugins(root: pathlib.Path, secret: str) -> pathlib.Path:
    """The four plugins and their config (``app.yaml``) under ``root``; the config's path."""
    write = PluginWriter(root / "plugins")
    entries: list[dict[str, object]] = []
    exporter = write(
        "exporter",
        EXPORTER,
        config={"secret": {"type": "string", "required": True, "secret": True}},
        exports=[{"name": "Vault"}, {"name": "Digest"}],
    )
    entries.append({"path": str(exporter), "config": {"secret": secret}})
    for name, permissions in CATCHERS.items():
        directory = write(
            name,
            CATCHER,
            dependencies=[{"name": "exporter"}],
            events=EVENTS,
            permissions=dict.fromkeys(permissions, True),
        )
        entries.append({"path": str(directory)})
    config = root / "app.yaml"
    # /full/hold stays open while the module's tests run, however slow the machine:
    # neither the call's time limit nor the client's may end it first.
    timeouts = {"call": HOLD_FOR}
    document = {
        "plugins": {"plugins": entries, "timeouts": timeouts},
        "admin": {"token": ADMIN_TOKEN},
    }
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    return config


def wait_for(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# =========================================================================== the forbidden objects


def host_machinery(manager: tether.PluginManager) -> Forbidden:
    """The manager's machinery, every plugin's host-side objects, instance and context."""
    forbidden = Forbidden()
    runtime = manager.runtime
    forbidden.add(manager, "the plugin manager")
    forbidden.add(runtime, "the runtime")
    for attribute, label in (
        ("hooks", "the hook registry"),
        ("events", "the event bus"),
        ("services", "the service registry"),
        ("middleware", "the middleware registry"),
        ("metrics", "the metrics store"),
        ("errors", "the error policy"),
    ):
        forbidden.add(getattr(runtime, attribute), label)
    forbidden.add(manager.contracts, "the contract registry")
    forbidden.add(manager._stats, "the call statistics")
    for registrar in runtime._registrars:
        forbidden.add(registrar, "a host registrar (the route table)")
    _add_store(forbidden, runtime._state_store, "the state store")
    _add_store(forbidden, runtime._database, "the database manager")
    for plugin, cache in runtime._caches.items():
        forbidden.add(cache, f"the cache manager of {plugin}")
        for name, value in vars(cache).items():
            if isinstance(value, types.BuiltinFunctionType):
                continue  # time.monotonic and the like: everyone's, not the cache's
            forbidden.add(value, f"the cache manager of {plugin}: {name}")
    for name, slot in manager._slots.items():
        _add_slot(forbidden, name, slot)
    _add_exports(forbidden, runtime)
    return forbidden


def _add_exports(forbidden: Forbidden, runtime: tether.Runtime) -> None:
    for (plugin, name), export in runtime.services._exports.items():
        forbidden.add(export, f"the export record of {plugin}.{name}")
        for obj, _, _ in export.impls.values():
            forbidden.add(obj, f"{plugin}'s exported object {name}")
            forbidden.add(getattr(obj, "__self__", None), f"what {plugin}'s {name} is bound to")
        for importer, view in export.views.items():
            forbidden.add(view, f"{importer}'s proxy record of {plugin}.{name}")
            for entries in view.entries.values():
                for entry in entries.values():
                    forbidden.add(entry, f"a seam entry of {plugin}.{name}")


def _add_store(forbidden: Forbidden, store: object, label: str) -> None:
    if store is None:
        return
    forbidden.add(store, label)
    sql = getattr(store, "_sql", None)
    if sql is not None:
        forbidden.add(sql, f"{label}'s SQL connection")
        forbidden.add(getattr(sql, "_conn", None), f"{label}'s driver connection")


def _add_slot(forbidden: Forbidden, name: str, slot: Any) -> None:
    forbidden.add(slot, f"the slot of {name}")
    forbidden.add(slot.gate, f"the gate of {name}")
    forbidden.add(slot.handle, f"the handle of {name}")
    for door in slot.gate.doors:
        forbidden.add(door, f"a door of {name}")
    for version in slot.versions:
        scope = version.scope
        forbidden.add(version, f"the version record of {name}")
        forbidden.add(version.code, f"the loaded code of {name}")
        forbidden.add(scope, f"the scope of {name}")
        forbidden.add(scope.door, f"the door of {name}")
        forbidden.add(scope.metrics, f"the metrics collector of {name}")
        forbidden.add(scope._storage, f"the plugin storage (host side) of {name}")
        forbidden.add(scope.context, f"the context of {name}")
        forbidden.add(version.instance, f"the plugin instance of {name}")


def add_host_sides(forbidden: Forbidden, name: str, received: Mapping[str, object]) -> None:
    """What stands behind the sealed views a plugin received (their host-side objects)."""
    for label, value in received.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Sealed):
                forbidden.add(inner(item), f"the host side of {name}'s {label}")


def forbidden_for(
    forbidden: Forbidden, manager: tether.PluginManager, name: str, *, exports: bool = False
) -> Forbidden:
    """What plugin ``name`` must not reach: everything but its own instance and context
    (and its own exported objects, and the database manager when it may use it)."""
    scope = manager.get_scope(name)
    allowed: list[object] = [manager.get_plugin(name), scope.context]
    if exports:
        for export in manager.runtime.services._exports.values():
            if export.plugin == name:
                for obj, _, _ in export.impls.values():
                    allowed += [obj, getattr(obj, "__self__", None)]
    database = manager.runtime._database
    if "database" in scope.permissions and database is not None:
        allowed += [database, database._sql, database._sql._conn]
    return forbidden.allow(*allowed)


def roots_of(received: Mapping[str, object]) -> dict[str, object]:
    roots: dict[str, object] = {}
    for label, value in received.items():
        if isinstance(value, list):
            roots.update({f"{label}[{n}]": item for n, item in enumerate(value)})
        else:
            roots[label] = value
    return roots


# =========================================================================== the served world


@dataclasses.dataclass
class World:
    """A LiveServer with the four plugins, a request to /full/hold held open."""

    server: LiveServer
    secret: str
    forbidden: Forbidden

    @property
    def manager(self) -> tether.PluginManager:
        return self.server.manager

    def plugin(self, name: str) -> Any:
        return self.manager.get_plugin(name)

    def received(self, name: str) -> dict[str, object]:
        return dict(self.plugin(name).got)

    def on_loop(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the server's loop (which does nothing else meanwhile)."""

        async def run() -> Any:
            return fn()

        return self.server.call(run)

    def reach(self, name: str, roots: Mapping[str, object] | None = None) -> Reach:
        """Walk (on the server's loop) from what ``name`` received, or from ``roots``."""
        forbidden = forbidden_for(self.forbidden, self.manager, name, exports=name == "exporter")
        secrets = {"the admin token": ADMIN_TOKEN}
        if name != "exporter":
            secrets["the exporter's secret"] = self.secret
        start = roots if roots is not None else roots_of(self.received(name))
        return self.on_loop(lambda: Reach(forbidden, secrets=secrets).walk(start))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("boundary")
    secret = "vault-" + secrets.token_hex(16)
    with pytest.MonkeyPatch.context() as patch:
        _isolate(patch, root)
        server = LiveServer(write_plugins(root, secret), state_directory=root / "state")
        with (
            server,
            httpx.Client(base_url=server.url, timeout=30) as client,
            ThreadPoolExecutor(1) as pool,
        ):
            assert client.get("/full/ok").json() == {"ok": True}
            assert client.get("/full/boom").status_code == 500
            full = server.manager.get_plugin("full")
            held: Future[httpx.Response] = pool.submit(
                client.get, "/full/hold", timeout=HOLD_FOR + 30
            )
            try:
                assert full.inside.wait(30), "the held request never reached its handler"
                for name in CATCHERS:
                    got = server.manager.get_plugin(name).got
                    wait_for(lambda got=got: _has_event(got, "probe.held"), "the held event")
                forbidden = host_machinery(server.manager)
                _add_servers(forbidden, server)
                for name in CATCHERS:
                    add_host_sides(forbidden, name, server.manager.get_plugin(name).got)
                yield World(server, secret, forbidden)
            finally:
                full.release.set()
                assert held.result(30).json() == {"held": True}


def _has_event(got: Mapping[str, Any], name: str) -> bool:
    return any(event.name == name for event in got.get("event argument", ()))


def _isolate(patch: pytest.MonkeyPatch, root: pathlib.Path) -> None:
    """What conftest's autouse fixture does per test, for this module's one server."""
    patch.setenv("HOME", str(root / "home"))
    patch.setenv("TETHER_CACHE_DIR", str(root / "home" / ".cache" / "tether"))
    for name in ("XDG_CACHE_HOME", "TETHER_PLUGIN_PATH", "TETHER_CONFIG", "TETHER_DSN"):
        patch.delenv(name, raising=False)


def _add_servers(forbidden: Forbidden, server: LiveServer) -> None:
    forbidden.add(server, "the LiveServer")
    forbidden.add(server.server, "the WebServer")
    forbidden.add(server.server._server, "the uvicorn server")
    forbidden.add(server.app, "the web app (WebApp)")
    forbidden.add(server.app.table, "the route table")
    forbidden.add(server.server.hub, "the observability hub")


# =========================================================================== walking the world


def test_the_fixture_collected_the_forbidden_objects(world):
    """The forbidden set is not empty by accident: each kind the docstring names is in it."""
    manager = world.manager
    runtime = manager.runtime
    expected = [
        manager,
        runtime,
        runtime.hooks,
        runtime.events,
        runtime.services,
        runtime.middleware,
        runtime.metrics,
        runtime._state_store,
        runtime._state_store._sql._conn,
        runtime._database,
        world.server.app.table,
        world.server.server.hub,
        world.plugin("exporter").vault,
        *(runtime._caches[name] for name in ("importer", "full")),
    ]
    for name in PLUGINS:
        slot = manager._slot(name)
        expected += [slot, slot.gate, slot.handle, *slot.gate.doors, manager.get_scope(name)]
        expected += [manager.get_context(name), manager.get_plugin(name)]
    missing = [obj for obj in expected if obj not in world.forbidden]
    assert not missing
    assert len(world.forbidden) > 60


@pytest.mark.parametrize("name", list(CATCHERS))
def test_everything_a_plugin_received_is_recorded(world, name):
    """The roots of the walks below: the context, its properties, handles, proxies,
    events, every hook argument, and (for the plugin with routes) what a request brings."""
    got = world.received(name)
    expected = {
        "ctx",
        "ctx.manifest",
        "ctx.logger",
        "ctx.metrics",
        "ctx.plugin_storage",
        "register_hook(startup)",
        "subscribe_event()",
        "register_middleware()",
        "import_service(Vault)",
        "import_service(Digest)",
        "startup argument",
        "pre_request argument",
        "middleware request",
        "middleware call_next",
        "event argument",
    }
    if name == "full":
        expected |= {
            "ctx.database",
            "ctx.cache",
            "ctx.config",
            "ctx.router",
            "route handler request",
        }
        expected |= {"post_request argument", "pre_response argument", "error argument"}
    else:
        expected |= {"ctx.database (the error)", "ctx.config (the error)"}
    expected |= {"import_service(missing) (the error)", "register_middleware(twice) (the error)"}
    expected |= {"publish_event_nowait(bad name) (the error)"}
    assert expected <= set(got), sorted(expected - set(got))


# Each walk starts from one kind of object a plugin receives, so a failure names the door.
KINDS: dict[str, Callable[[str], bool]] = {
    "the context": lambda label: label == "ctx",
    "context properties": lambda label: (
        label.startswith("ctx.") and "publish" not in label and not label.endswith("(the error)")
    ),
    "registration handles": lambda label: label.startswith(("register_", "subscribe_")),
    "service proxies": lambda label: label.startswith("import_service"),
    "events": lambda label: label.startswith(("event argument", "ctx.publish")),
    "startup hook arguments": lambda label: label.startswith("startup argument"),
    "request hook arguments (RequestContext)": lambda label: (
        label.split(" ")[0]
        in {"pre_request", "post_request", "pre_response", "post_response", "error"}
    ),
    "middleware arguments": lambda label: label.startswith("middleware"),
    "route handler request": lambda label: label == "route handler request",
    "service results": lambda label: label.endswith("result"),
    "errors the host raises": lambda label: label.endswith("(the error)"),
}


ONLY_WITH_ROUTES = {"route handler request", "service results"}  # the full plugin's /hold


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        pytest.param(name, kind, id=f"{name}: {kind}")
        for name in CATCHERS
        for kind in KINDS
        if name == "full" or kind not in ONLY_WITH_ROUTES
    ],
)
def test_nothing_forbidden_is_reachable(world, name, kind):
    roots = {
        k: v for k, v in roots_of(world.received(name)).items() if KINDS[kind](k.split("[")[0])
    }
    assert roots, f"{name} received no {kind}"
    assert_sealed(world.reach(name, roots))


def test_nothing_forbidden_is_reachable_from_the_exporter(world):
    """The exporter may reach its own objects, not the other plugins' or the host's."""
    exporter = world.plugin("exporter")
    assert_sealed(world.reach("exporter", {"ctx": exporter.ctx}))


# --------------------------------------------------------------------------- first tries


@pytest.fixture
def full(world) -> dict[str, Any]:
    return world.received("full")


@pytest.fixture
def bare(world) -> dict[str, Any]:
    return world.received("bare")


@pytest.mark.parametrize(
    "attribute", ["runtime", "_runtime", "gate", "_gate", "door", "_scope", "scope", "_inner"]
)
def test_the_context_has_no_way_back(full, attribute):
    with pytest.raises(AttributeError):
        getattr(full["ctx"], attribute)


def test_the_context_has_no_instance_dict(full):
    ctx = full["ctx"]
    with pytest.raises(TypeError):
        vars(ctx)
    with pytest.raises(AttributeError):
        ctx.__dict__  # noqa: B018 - the access is the test


@pytest.mark.parametrize("method", ["greet", "length", "myself"])
@pytest.mark.parametrize("attribute", ["__wrapped__", "__self__", "__func__", "__closure__"])
def test_a_proxy_method_leads_nowhere(full, method, attribute):
    bound = getattr(full["import_service(Vault)"], method)
    assert getattr(bound, attribute, None) in {None, ()}


def test_a_proxy_has_no_instance_dict_and_its_class_holds_only_entries(world, full):
    proxy = full["import_service(Vault)"]
    with pytest.raises(AttributeError):
        proxy.__dict__  # noqa: B018 - the access is the test
    public = sorted(n for n in vars(type(proxy)) if not n.startswith("_"))
    assert public == ["greet", "length", "myself"]
    values = {f"type(proxy).__dict__[{k!r}]": v for k, v in vars(type(proxy)).items()}
    assert_sealed(world.reach("full", values))


def test_an_exported_function_proxy_leads_nowhere(world, full):
    digest = full["import_service(Digest)"]
    assert digest() == full["Digest() result"]
    assert_sealed(world.reach("full", {"Digest proxy": digest, "its __call__": digest.__call__}))


@pytest.mark.parametrize(
    ("label", "attribute"),
    [
        ("ctx.plugin_storage", "_store"),
        ("ctx.plugin_storage", "_plugin"),
        ("ctx.metrics", "_store"),
        ("ctx.cache", "_client"),
        ("ctx.cache", "_entries"),
        ("ctx.router", "_table"),
        ("ctx.router", "_scope"),
        ("ctx.router.group()", "_table"),
        ("register_hook(startup)", "_registry"),
        ("register_hook(startup)", "_entry"),
        ("subscribe_event()", "_bus"),
        ("subscribe_event()", "door"),
        ("register_middleware()", "entry"),
        ("register_middleware()", "handler"),
    ],
)
def test_views_hide_their_host_side(full, label, attribute):
    with pytest.raises(AttributeError):
        getattr(full[label], attribute)


@pytest.mark.parametrize(
    "label", ["ctx", "import_service(Vault)", "import_service(Digest)", "ctx.plugin_storage"]
)
def test_setting_attributes_is_refused(full, label):
    target = full[label]
    with pytest.raises(AttributeError, match="read-only"):
        target.injected = 1
    with pytest.raises(AttributeError):
        object.__setattr__(target, "injected", 1)
    assert not hasattr(target, "injected")


@pytest.mark.parametrize("permission", ["database", "cache", "config", "router"])
def test_a_guarded_property_without_permission_is_refused(bare, permission):
    error = bare[f"ctx.{permission} (the error)"]
    assert isinstance(error, PermissionDeniedError)
    assert str(error).startswith(
        f"permission denied: plugin 'bare' attempted {permission} access without permission"
    )
    with pytest.raises(PermissionDeniedError, match=f"attempted {permission} access"):
        getattr(bare["ctx"], permission)


def test_without_the_database_permission_the_database_is_unreachable(world):
    """The database was opened (the full plugin uses it) and the bare plugin cannot find it."""
    database = world.manager.runtime._database
    assert database is not None
    assert database in world.forbidden
    assert world.reach("bare").path_of(database) is None


def test_startup_hooks_receive_names_not_the_manager(world):
    for name in CATCHERS:
        (argument,) = world.received(name)["startup argument"]
        assert argument == PLUGINS
        assert argument is not world.manager


def test_events_are_plain_values(full):
    for event in full["event argument"]:
        assert isinstance(event, tether.Event)
        assert {f.name for f in dataclasses.fields(event)} == {
            "id",
            "name",
            "data",
            "source",
            "time",
            "trace",
        }
        assert isinstance(event.data, str | int)


def test_the_request_context_is_the_same_object_for_every_plugin(world):
    """One ``RequestContext`` per request, shared by the plugins' hooks (its ``data`` is
    the plugins' shared dict for that request)."""
    contexts = [world.received(name)["pre_request argument"][-1] for name in CATCHERS]
    assert all(isinstance(c, RequestContext) for c in contexts)
    assert len({id(c) for c in contexts}) == 1


@pytest.mark.parametrize(
    "label",
    ["route handler request", "middleware request", "pre_request argument", "error argument"],
)
def test_a_request_does_not_lead_to_the_web_app(world, full, label):
    """The door a reviewer tries first on a web request (a ``RequestContext`` or the
    Starlette request itself): the ASGI ``receive`` callable a Starlette request keeps is
    the server's. From there: the connection, the server, the app, the manager."""
    found = full[label]
    request = found[-1] if isinstance(found, list) else found
    app = world.server.app
    reach = world.reach("full", {label: request})
    path = reach.path_of(app) or next((h.path for h in reach.hits), None)
    assert path is None, f"{request!r} reaches the host: {path}\n{reach.report()}"


def test_a_service_that_returns_self_hands_itself_out(world, full):
    """A proxy is sealed; what the exporter's methods return is the exporter's to decide.
    ``Vault.myself()`` returns the Vault itself, and so the importer has it (and its
    ``_secret``): allowed, and not a door of tether's."""
    returned = world.plugin("full").exporters_choice["Vault.myself() result"]
    assert returned is world.plugin("exporter").vault
    assert returned._secret == world.secret


# --------------------------------------------------------------------------- beyond the rules


def test_beyond_the_rules_weak_references_do_not_lead_to_other_plugins(world, bare):
    """Beyond the rules (a weak reference's callback, and ``peek()``, a zero-argument
    read): every sealed view's ``__weakref__`` is the reference its ``weakref.finalize``
    holds (``tether._sealed.seal``); ``__callback__`` is that finalizer, and
    ``_registry``, a class attribute ``dir()`` of the finalizer lists, holds every
    finalizer in the process, each of which ``peek()``s to its object: every sealed view
    alive, other plugins' contexts among them. With another plugin's context comes its
    permissions: here the bare plugin (no permissions) opens the full plugin's database.
    """
    ctx = bare["ctx"]
    callback = getattr(ctx.__weakref__, "__callback__", None)
    registry = getattr(callback, "_registry", {})
    reached: dict[str, object] = {}
    for finalizer in list(registry):
        found = finalizer.peek()
        for item in found or ():
            label = world.forbidden.label_of(item)
            if label is not None:
                reached[label] = item
            elif isinstance(item, Sealed) and item is not ctx:
                reached.setdefault(f"a sealed view of another object: {item!r}", item)
    others = [c for c in reached.values() if isinstance(c, Context)]
    escalation = ""
    if others:
        full_ctx = world.manager.get_context("full")
        if full_ctx in others:
            escalation = f"; bare then reads full's ctx.database: {full_ctx.database!r}"
    named = sorted(label for label in reached if not label.startswith("a sealed view"))
    assert not reached, (
        "ctx.__weakref__.__callback__._registry[<finalizer>].peek()[0] reaches "
        f"{len(reached)} object(s): {', '.join(named)} and {len(reached) - len(named)} "
        f"other sealed views (other plugins' storage, caches, handles){escalation}"
    )


@pytest.mark.parametrize(
    ("label", "what"),
    [
        ("ctx", "the context class (shared by every plugin's context)"),
        ("ctx.plugin_storage", "the storage view class (shared by every plugin)"),
        ("import_service(Vault)", "the proxy class (one per export, shared by every importer)"),
    ],
)
def test_beyond_the_rules_shared_classes_refuse_new_attributes(full, label, what):
    """Beyond the rules: a plugin that sets an attribute on ``type(view)`` changes the
    class of every other plugin's view: replacing ``type(proxy).length`` intercepts
    every importer's calls (and their arguments); replacing a ``Context`` property
    runs the attacker's code with each other plugin's context as ``self``."""
    klass = type(full[label])
    try:
        with pytest.raises((AttributeError, TypeError)):
            klass.tether_boundary_probe = 1
    finally:
        if "tether_boundary_probe" in vars(klass):
            delattr(klass, "tether_boundary_probe")


def test_beyond_the_rules_a_proxy_class_swap_does_not_intercept_another_importer(world):
    """What the open class door above allows, shown without leaving it open: the
    importer replaces the method on the shared proxy class, and the bare plugin's next
    call (through its own import of the same service) runs the importer's code."""
    mine = world.received("importer")["import_service(Vault)"]
    theirs = world.received("bare")["import_service(Vault)"]
    klass = type(mine)
    original = vars(klass)["length"]
    seen: list[object] = []
    try:
        try:
            klass.length = staticmethod(lambda: seen.append("intercepted") or 0)
        except (AttributeError, TypeError):
            return  # refused: the door is shut
        world.on_loop(theirs.length)
    finally:
        type.__setattr__(klass, "length", original)
    assert not seen, "type(proxy).length = ... replaced the method for every importer"


def test_beyond_the_rules_proxy_methods_are_not_shared_mutable_functions(world):
    """Beyond the rules (a write through a name the rules list): every importer of a
    service holds the same proxy object, and its methods are the same function objects,
    whose ``__kwdefaults__`` dict (and ``__defaults__``, ``__code__``) can be changed in
    place. The importer changes ``greet``'s default greeting; the bare plugin's next
    call, which passes none, sends the importer's value to the exporter."""
    mine = world.received("importer")["import_service(Vault)"]
    theirs = world.received("bare")["import_service(Vault)"]
    defaults = mine.greet.__kwdefaults__
    try:
        if defaults is not None:
            defaults["greeting"] = "tampered"
        answer = world.on_loop(lambda: theirs.greet("bare"))
    finally:
        if defaults is not None:
            defaults["greeting"] = "hello"
    assert answer == "hello, bare", (
        f"importer's proxy.greet.__kwdefaults__['greeting'] = ... changed bare's call: "
        f"{answer!r} (shared proxy: {mine is theirs}, shared method: {mine.greet is theirs.greet})"
    )


def test_the_database_is_a_sealed_view(world, full):
    """``tether.types.Database`` is a Protocol like the others, but ``ctx.database`` hands
    out the runtime's ``DatabaseManager`` itself, shared by every plugin that has the
    permission: its ``close()`` closes the database for all of them, and its ``_sql``
    is the SQL layer's connection (``_sql._conn``, the driver's)."""
    database = full["ctx.database"]
    exposed = [n for n in ("close", "_sql", "__enter__") if hasattr(database, n)]
    assert isinstance(database, Sealed), (
        f"ctx.database is {database!r}, not a sealed view; it offers {', '.join(exposed)}"
    )


# =========================================================================== without a web host


def test_without_a_web_host_router_is_refused_and_shutdown_gets_names(tmp_path):
    """A manager of its own (no web host): ``ctx.router`` is refused even with the
    permission, and ``shutdown`` hooks receive the names, never the manager."""
    config = write_plugins(tmp_path, "vault-" + secrets.token_hex(8))

    async def scenario() -> tuple[dict[str, Any], tether.PluginManager, Forbidden]:
        manager = tether.PluginManager(
            config=tether.load_config(config), state_directory=tmp_path / "state"
        )
        await manager.load_plugins_from_config(manager.config)
        await manager.initialize_all()
        await manager.start_all()
        forbidden = host_machinery(manager)
        received = manager.get_plugin("full").got
        add_host_sides(forbidden, "full", received)
        await manager.stop_all()
        return dict(received), manager, forbidden

    received, manager, forbidden = asyncio.run(scenario())
    try:
        error = received["ctx.router (the error)"]
        assert "serves no HTTP routes" in str(error)
        (shutdown,) = received["shutdown argument"]
        assert isinstance(shutdown, tuple)
        assert set(shutdown) == set(PLUGINS)
        reach = Reach(forbidden_for(forbidden, manager, "full")).walk(roots_of(received))
        assert_sealed(reach)
    finally:
        asyncio.run(manager.aclose())


# =========================================================================== the examples

PROBE = """
    import asyncio
    import threading

    import tether


    class Plugin(tether.Plugin):
        \"\"\"Holds GET /users/me at pre_request, after auth-plugin's hook has run.\"\"\"

        def initialize(self, ctx):
            super().initialize(ctx)
            self.inside = threading.Event()
            self.release = threading.Event()
            self.contexts = []
            ctx.register_hook("pre_request", 1, self.hold)

        async def hold(self, context):
            if context.path == "/users/me":
                self.contexts.append(context)
                self.inside.set()
                await asyncio.to_thread(self.release.wait, 60)
"""


@dataclasses.dataclass
class Examples:
    server: LiveServer
    key: str
    probe: Any


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Examples]:
    """examples/web.yaml served, with a probe plugin holding one GET /users/me open."""
    root = tmp_path_factory.mktemp("examples")
    source = pathlib.Path(__file__).resolve().parent.parent / "examples"
    shutil.copytree(source / "plugins", root / "plugins")
    config = yaml.safe_load((source / "web.yaml").read_text(encoding="utf-8"))
    probe = PluginWriter(root / "plugins")("probe", PROBE)
    config["plugins"]["plugins"].append({"path": str(probe)})
    (root / "web.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    key = "example-key-" + secrets.token_hex(16)
    with pytest.MonkeyPatch.context() as patch:
        _isolate(patch, root)
        patch.setenv("TETHER_EXAMPLE_SECRET", key)
        server = LiveServer(root / "web.yaml", state_directory=root / "state")
        with (
            server,
            httpx.Client(base_url=server.url, timeout=30) as client,
            ThreadPoolExecutor(1) as pool,
        ):
            login = client.post("/users/login", json={"user": "ada"})
            assert login.status_code == 200, login.text
            token = login.json()["token"]
            plugin = server.manager.get_plugin("probe")
            headers = {"Authorization": f"Bearer {token}"}
            held = pool.submit(client.get, "/users/me", headers=headers)
            try:
                assert plugin.inside.wait(30), "the held request never reached the probe"
                yield Examples(server, key, plugin)
            finally:
                plugin.release.set()
                assert held.result(30).json()["user"] == "ada"


def _walk_examples(examples: Examples, roots: Mapping[str, object]) -> Reach:
    manager = examples.server.manager
    forbidden = host_machinery(manager)
    _add_servers(forbidden, examples.server)
    auth = manager.get_plugin("auth-plugin")
    forbidden.add(auth, "the auth plugin (its signing key is auth._key)")
    mine = forbidden_for(forbidden, manager, "user-plugin")
    secrets = {"the auth plugin's signing key": examples.key}

    async def walk() -> Reach:
        return Reach(mine, secrets=secrets).walk(roots)

    return examples.server.call(walk)


def test_examples_the_signing_key_is_where_the_test_expects(examples):
    auth = examples.server.manager.get_plugin("auth-plugin")
    assert auth._key == examples.key.encode()


def test_examples_the_signing_key_is_unreachable_from_the_user_plugin(examples):
    """The previous review's door: ``proxy.verify.__wrapped__.__self__._key``. Now
    neither the user plugin's context, nor its ``AuthService`` proxy, nor anything else
    the user plugin holds leads to the auth plugin or its key."""
    user = examples.server.manager.get_plugin("user-plugin")
    proxy = user.auth
    for attribute in ("__wrapped__", "__self__", "__func__"):
        assert not hasattr(proxy.verify, attribute)
    roots = {"ctx": user.ctx, "AuthService proxy": proxy, "AuthService.verify": proxy.verify}
    roots |= {"the user plugin's instance": user}
    assert_sealed(_walk_examples(examples, roots))


def test_examples_the_signing_key_is_unreachable_from_a_request(examples):
    """The request context every request hook receives (here, GET /users/me after
    auth-plugin's hook has accepted the token) must not lead to the auth plugin."""
    (context,) = examples.probe.contexts
    assert context.data["user"] == "ada"
    assert_sealed(_walk_examples(examples, {"RequestContext": context}))


# =========================================================================== the workload host

WORKLOAD = """
    import boundary_probe


    class Plugin:
        \"\"\"An async workload: its clients get asyncpg connections from the host.\"\"\"

        async def initialize(self, config):
            boundary_probe.received["initialize argument"] = config

        async def setup(self, db):
            boundary_probe.received["setup connection"] = db

        async def cleanup(self, db):
            return None

        def get_operation_types(self):
            return {"probe": 1}

        async def execute_operation(self, db, operation):
            if "operation connection" not in boundary_probe.received:
                boundary_probe.received["operation connection"] = db
                boundary_probe.received["operation argument"] = operation
                await boundary_probe.hold()
"""

# The host-side classes of a workload run, found (test-side) by the garbage collector:
# the plugin is handed none of them.
WORKLOAD_MACHINERY = frozenset(
    {
        "PluginManager", "Runtime", "PluginSlot", "PluginVersion", "PluginScope", "Context",
        "Gate", "Door", "PluginHandle", "Operation", "Entry", "LoadedWorkload", "Engine",
        "HookRegistry", "EventBus", "ServiceRegistry", "MiddlewareRegistry", "MetricsStore",
        "CallStats", "ContractRegistry", "OperationStats",
    }
)  # fmt: skip


class _Probe:
    """The module the workload plugin imports as ``boundary_probe``."""

    def __init__(self) -> None:
        self.received: dict[str, object] = {}
        self.inside = threading.Event()
        self.release = threading.Event()

    async def hold(self) -> None:
        self.inside.set()
        await asyncio.to_thread(self.release.wait, 60)


def _workload_machinery() -> Forbidden:
    import gc

    forbidden = Forbidden()
    for obj in gc.get_objects():
        kind = type(obj)
        if module_of(kind).startswith("tether.") and kind.__name__ in WORKLOAD_MACHINERY:
            forbidden.add(obj, f"the workload host's {kind.__name__}")
    return forbidden


pytest_plugins = ["pg"]


@pytest.mark.slow
def test_the_workload_hosts_connection_leads_nowhere(tmp_path, pg_url, monkeypatch):
    """A workload plugin gets its config and the host's database connections (asyncpg
    for an async workload); walked while an operation is in flight, neither leads to the
    manager, the plugin's handle or the engine."""
    from tether.hosts.workload import BenchSettings, WorkloadSpec, run_bench

    probe = _Probe()
    module = types.ModuleType("boundary_probe")
    module.__dict__.update(received=probe.received, hold=probe.hold)
    monkeypatch.setitem(sys.modules, "boundary_probe", module)
    directory = PluginWriter(tmp_path)("probe-workload", WORKLOAD, provides=["workload"])
    spec = WorkloadSpec("probe-workload", path=directory)
    settings = BenchSettings(clients=1, transactions=2, dsn=pg_url, tick=0.05)
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(asyncio.run, run_bench(spec, settings))
        try:
            assert probe.inside.wait(60), "the workload's operation never ran"
            connection: Any = probe.received["operation connection"]
            forbidden = _workload_machinery()
            assert len(forbidden) > 5

            async def walk() -> Reach:
                return Reach(forbidden).walk(dict(probe.received))

            reach = asyncio.run_coroutine_threadsafe(walk(), connection._loop).result(60)
        finally:
            probe.release.set()
        assert run.result(60).operations
    assert {"setup connection", "operation connection"} <= set(probe.received)
    assert reach.path_of(connection._loop) is not None  # the walk went through the event loop
    assert_sealed(reach)
