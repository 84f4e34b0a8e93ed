"""A process plugin, from the host's side: a stand-in object in the plugin's slot.

:func:`load_remote` starts the plugin's worker, has it import the plugin, and returns
the code the manager stages like any other: its ``instance`` is a :class:`RemotePlugin`
whose class has exactly the methods the real plugin object has (so contract checks,
``validate_config``, ``health_check``, ``execute``... work unchanged), each forwarding
to the worker. ``initialize(ctx)`` hands the worker what its context needs and keeps
the real, host-side ``ctx``: the worker's context calls come back as requests that
:class:`Bridge` serves with it, so a hook, a subscription or a service the plugin
registers is registered here, through its own door, and the host's hook registry,
event bus, service proxies, gate, metrics and thresholds see an ordinary plugin whose
handlers happen to send a message.

Where the bridge serves a request: on the host's event loop, unless that loop is the
one blocked in a synchronous call into this worker (a sync hook run from a route, say),
in which case it runs on the channel's reader thread in its stead (the loop is parked
in the call, so nothing else touches what the request touches).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import shutil
import threading
import time
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from tether._loader import LoadedCode
from tether._remote_mark import is_remote, mark_remote
from tether.errors import (
    CallTimeoutError,
    PluginCrashedError,
    PluginLoadError,
    TetherError,
    WorkerProtocolError,
)
from tether.isolation._process import WorkerProcess, start_worker
from tether.isolation._protocol import ChannelClosedError, Request
from tether.isolation._venv import plugin_python

if TYPE_CHECKING:
    from tether._manifest import Manifest
    from tether.types import Event, PluginContext

__all__ = [
    "WORKER_EVENT",
    "Bridge",
    "RemotePlugin",
    "RemoteState",
    "is_remote",
    "load_remote",
    "renew_remote",
]


log = logging.getLogger("tether.isolation")

# Steps the manager awaits: forwarded as ``async`` whatever the plugin wrote.
_STEPS = frozenset(
    {"start", "stop", "cleanup", "health_check", "export_state", "import_state", "validate_config"}
)
_TARGETS: dict[str, str] = {
    "ctx.register_hook": "_ctx_register_hook",
    "ctx.subscribe_event": "_ctx_subscribe_event",
    "ctx.remove": "_ctx_remove",
    "ctx.publish_event": "_ctx_publish_event",
    "ctx.publish_event_nowait": "_ctx_publish_event_nowait",
    "ctx.export_service": "_ctx_export_service",
    "ctx.import_service": "_ctx_import_service",
    "ctx.service_call": "_ctx_service_call",
    "ctx.router": "_ctx_router",
    "ctx.register_middleware": "_ctx_register_middleware",
    "ctx.call_next": "_ctx_call_next",
    "ctx.unregister_middleware": "_ctx_unregister_middleware",
    "ctx.storage": "_ctx_storage",
    "ctx.cache": "_ctx_cache",
    "ctx.database": "_ctx_database",
    "ctx.config": "_ctx_config",
    "ctx.metrics": "_ctx_metrics",
    "ctx.log": "_ctx_log",
}
"""Every request a worker may make, and the bridge's method that serves it (nothing
else of the bridge is reachable by name)."""
_ROUTE_METHODS = frozenset({"get", "post", "put", "patch", "delete"})
# Requests that touch the loop's structures: served on the host loop.
_ON_LOOP = frozenset(
    {
        "ctx.publish_event",
        "ctx.publish_event_nowait",
        "ctx.service_call",
        "ctx.register_hook",
        "ctx.subscribe_event",
        "ctx.export_service",
        "ctx.import_service",
        "ctx.remove",
        "ctx.router",
        "ctx.register_middleware",
        "ctx.unregister_middleware",
        "ctx.call_next",
    }
)


def _event_data(event: Event) -> dict[str, object]:
    return {
        "id": event.id,
        "name": event.name,
        "data": event.data,
        "source": event.source,
        "time": event.time.timestamp(),
    }


class Bridge:
    """Serves one worker's context requests with the plugin's real, host-side context."""

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self.worker: WorkerProcess | None = None
        self.context: PluginContext | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None
        self.blocked = 0  # sync calls the host loop is parked in
        self.call_timeout: float | None = None
        self.worker_crashed: Callable[[WorkerProcess, str], None] | None = None
        self._known: dict[tuple[object, ...], object] = {}  # registrations, for restarts
        self._objects: dict[int, object] = {}
        self._ids = itertools.count(1)
        self._inline_loop: asyncio.AbstractEventLoop | None = None

    def on_worker_crash(self, worker: WorkerProcess, detail: str) -> None:
        if self.worker_crashed is not None:
            self.worker_crashed(worker, detail)

    def _once(self, key: tuple[object, ...], register: Callable[[], object]) -> object:
        """``register()`` the first time ``key`` is asked for; after a restart the
        worker asks again, and gets what is in place (its handlers' names are the same)."""
        if key not in self._known:
            self._known[key] = register()
        return self._known[key]

    # ------------------------------------------------------------------ dispatch

    def on_request(self, request: Request) -> None:
        """Called on the channel's reader thread."""
        method = _TARGETS.get(request.target)
        handler = getattr(self, method) if method is not None else None
        worker = self.worker
        if worker is None:
            return
        if handler is None or self.context is None:
            worker.channel.fail(request.id, LookupError(f"the host has no {request.target!r}"))
            return
        loop = self.loop
        if request.target in _ON_LOOP and loop is not None and not self.blocked:
            try:
                loop.call_soon_threadsafe(self._serve_on_loop, request, handler)
            except RuntimeError:  # the loop closed: the host is going away
                worker.channel.fail(request.id, RuntimeError("the host is shutting down"))
            return
        self._serve_inline(request, handler)

    def _serve_inline(self, request: Request, handler: Callable[..., object]) -> None:
        assert self.worker is not None
        with contextlib.suppress(ChannelClosedError):  # the worker went meanwhile
            self._serve_now(request, handler)

    def _serve_now(self, request: Request, handler: Callable[..., object]) -> None:
        assert self.worker is not None
        try:
            result = handler(*request.args, **request.kwargs)
            if inspect.isawaitable(result):
                if self._inline_loop is None:
                    self._inline_loop = asyncio.new_event_loop()
                result = self._inline_loop.run_until_complete(_awaited(result))
        except Exception as exc:
            self.worker.channel.fail(request.id, exc)
        else:
            self.worker.channel.answer(request.id, result)

    def _serve_on_loop(self, request: Request, handler: Callable[..., object]) -> None:
        assert self.worker is not None
        channel = self.worker.channel
        try:
            result = handler(*request.args, **request.kwargs)
        except Exception as exc:
            with contextlib.suppress(ChannelClosedError):  # the worker went meanwhile
                channel.fail(request.id, exc)
            return
        if not inspect.isawaitable(result):
            with contextlib.suppress(ChannelClosedError):
                channel.answer(request.id, result)
            return
        task = asyncio.ensure_future(result)

        def done(finished: asyncio.Future[object]) -> None:
            with contextlib.suppress(ChannelClosedError):  # the worker went meanwhile
                if finished.cancelled():
                    channel.fail(request.id, asyncio.CancelledError("cancelled"))
                elif finished.exception() is not None:
                    channel.fail(request.id, finished.exception())  # type: ignore[arg-type]
                else:
                    channel.answer(request.id, finished.result())

        task.add_done_callback(done)

    def _keep(self, obj: object) -> int:
        ident = next(self._ids)
        self._objects[ident] = obj
        return ident

    @property
    def _ctx(self) -> PluginContext:
        assert self.context is not None
        return self.context

    # ------------------------------------------------------------------ calls back into it

    def forwarder(self, target: str, *, is_async: bool, label: str) -> Callable[..., Any]:
        """A host-side callable that calls ``target`` in the worker."""
        if is_async:

            async def acall(*args: object, **kwargs: object) -> object:
                assert self.worker is not None
                return await self.worker.acall(target, args, kwargs)

            acall.__name__ = label
            return acall

        def call(*args: object, **kwargs: object) -> object:
            return self.call(target, args, kwargs)

        call.__name__ = label
        return call

    def call(
        self,
        target: str,
        args: tuple[object, ...],
        kwargs: Mapping[str, object],
        *,
        timeout: float | None = None,
    ) -> object:
        """A blocking call into the worker, bounded by ``timeout`` (``timeouts.call`` by
        default); while the host's loop waits in it, the worker's requests are served
        in its stead."""
        worker = self.worker
        assert worker is not None
        limit = self.call_timeout if timeout is None else timeout
        parked = threading.get_ident() == self.loop_thread
        if parked:
            self.blocked += 1
        try:
            return worker.call(target, args, kwargs, timeout=limit)
        except TimeoutError:
            raise CallTimeoutError(self.plugin, target, f"{limit:g}s") from None
        finally:
            if parked:
                self.blocked -= 1

    # ------------------------------------------------------------------ the context's requests

    def _ctx_register_hook(
        self, point: str, priority: int, target: str, is_async: bool, timeout: float | None
    ) -> int:
        def register() -> int:
            handler = self.forwarder(target, is_async=is_async, label=f"{self.plugin}:{point}")
            return self._keep(self._ctx.register_hook(point, priority, handler, timeout=timeout))

        return _as_id(self._once(("hook", point, priority, target), register))

    def _ctx_subscribe_event(self, pattern: str, target: str, is_async: bool) -> int:
        key = ("subscription", pattern, target)
        return _as_id(self._once(key, lambda: self._subscribe(pattern, target, is_async)))

    def _subscribe(self, pattern: str, target: str, is_async: bool) -> int:
        send = self.forwarder(target, is_async=is_async, label=f"{self.plugin}:{pattern}")
        if is_async:

            async def adeliver(event: Event) -> object:
                return await send(_event_data(event))

            handler: Callable[[Event], object] = adeliver
        else:

            def deliver(event: Event) -> object:
                return send(_event_data(event))

            handler = deliver
        return self._keep(self._ctx.subscribe_event(pattern, handler))

    def _ctx_remove(self, ident: int) -> None:
        self._known = {k: v for k, v in self._known.items() if v != ident}
        registration = self._objects.pop(ident, None)
        remove = getattr(registration, "remove", None)
        if callable(remove):
            remove()

    async def _ctx_publish_event(self, name: str, data: object) -> dict[str, object]:
        return _event_data(await self._ctx.publish_event(name, data))

    def _ctx_publish_event_nowait(self, name: str, data: object) -> dict[str, object]:
        return _event_data(self._ctx.publish_event_nowait(name, data))

    def _ctx_export_service(self, name: str, methods: Mapping[str, bool]) -> None:
        key = ("service", name, tuple(sorted(methods.items())))
        self._once(key, lambda: self._export(name, methods))

    def _export(self, name: str, methods: Mapping[str, bool]) -> None:
        attributes = {
            method: _unbound(
                self.forwarder(f"s.{name}.{method}", is_async=is_async, label=f"{name}.{method}")
            )
            for method, is_async in methods.items()
        }
        service = type(name, (), {"__slots__": (), **attributes})()
        self._ctx.export_service(name, service)

    def _ctx_import_service(self, plugin: str, name: str) -> dict[str, object]:
        proxy = self._ctx.import_service(plugin, name)
        methods = {
            attribute: inspect.iscoroutinefunction(getattr(proxy, attribute))
            for attribute in dir(proxy)
            if not attribute.startswith("_") and callable(getattr(proxy, attribute, None))
        }
        return {"id": self._keep(proxy), "methods": methods}

    def _ctx_service_call(
        self, ident: int, method: str, args: list[object], kwargs: Mapping[str, object]
    ) -> object:
        proxy = self._objects[ident]
        return getattr(proxy, method)(*args, **kwargs)

    def _ctx_router(self, op: str, args: list[object], kwargs: Mapping[str, object]) -> None:
        if op == "check":  # whether the plugin may have one, and this host serves HTTP
            _ = self._ctx.router
            return
        if op not in _ROUTE_METHODS:
            raise AttributeError(f"the router has no {op!r}")
        path, target = args

        def add() -> None:
            handler = self.forwarder(str(target), is_async=True, label=f"{self.plugin}:{path}")
            mark_remote(handler)
            _family(self._ctx.router, op)(path, handler, **kwargs)

        self._once(("route", op, path, target), add)

    def _ctx_register_middleware(
        self, name: str, target: str, priority: int, routes: list[str] | None
    ) -> int:
        """A middleware of the worker: called with the request as the host's adapter
        makes it, and a ``call_next`` the worker reaches through a token."""
        forward = self.forwarder(target, is_async=True, label=f"{self.plugin}:{name}")

        async def middleware(request: object, call_next: Callable[..., Any]) -> object:
            token = self._keep(call_next)
            try:
                return await forward(request, token)
            finally:
                self._objects.pop(token, None)

        mark_remote(middleware)

        def register() -> int:
            return self._keep(self._ctx.register_middleware(name, middleware, priority, routes))

        return _as_id(self._once(("middleware", name, target), register))

    async def _ctx_call_next(self, token: int, request: object) -> object:
        call_next = self._objects.get(token)
        if not callable(call_next):
            raise TypeError("that request has been answered already")
        return await call_next(request)

    def _ctx_unregister_middleware(self, name: str) -> None:
        self._known = {k: v for k, v in self._known.items() if k[:2] != ("middleware", name)}
        self._ctx.unregister_middleware(name)

    def _ctx_storage(self, op: str, args: list[object], kwargs: Mapping[str, object]) -> object:
        return _family(self._ctx.plugin_storage, op)(*args, **kwargs)

    def _ctx_cache(self, op: str, args: list[object], kwargs: Mapping[str, object]) -> object:
        return _family(self._ctx.cache, op)(*args, **kwargs)

    def _ctx_database(self, op: str, args: list[object], kwargs: Mapping[str, object]) -> object:
        return _family(self._ctx.database, op)(*args, **kwargs)

    def _ctx_config(self, op: str, args: list[object], kwargs: Mapping[str, object]) -> object:
        return _family(self._ctx.config, op)(*args, **kwargs)

    def _ctx_metrics(self, op: str, args: list[object], kwargs: Mapping[str, object]) -> object:
        return _family(self._ctx.metrics, op)(*args, **kwargs)

    def _ctx_log(self, level: int, text: str, fields: Mapping[str, object]) -> None:
        logger = self._ctx.logger
        (logger.with_fields(**fields) if fields else logger).log(level, "%s", text)


def _as_id(value: object) -> int:
    if not isinstance(value, int):  # pragma: no cover - _once returns what register gave
        raise TypeError(f"not a registration id: {value!r}")
    return value


def _family(service: object, op: str) -> Callable[..., object]:
    if op.startswith("_"):
        raise AttributeError(f"no operation {op!r}")
    fn = getattr(service, op)
    if not callable(fn):
        raise TypeError(f"{op!r} is not an operation")
    return fn  # type: ignore[no-any-return]


async def _awaited(awaitable: Awaitable[object]) -> object:
    return await awaitable


def _unbound(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as a method of a class that ignores its instance."""
    if inspect.iscoroutinefunction(fn):

        async def amethod(_self: object, *args: object, **kwargs: object) -> object:
            return await fn(*args, **kwargs)

        amethod.__name__ = fn.__name__
        return amethod

    def method(_self: object, *args: object, **kwargs: object) -> object:
        return fn(*args, **kwargs)

    method.__name__ = fn.__name__
    return method


# --------------------------------------------------------------------------- the stand-in


WORKER_EVENT = "plugin.worker_given_up"
"""Published when a process plugin crashed too often and was disabled."""
CRASHES_ALLOWED = 3  # crashes within CRASH_WINDOW before the plugin is given up on
CRASH_WINDOW = 3600.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 30.0


class RemoteState:
    """What the host keeps for one process plugin's stand-in (``stand_in.tether_worker``):
    its worker, bridge and restart bookkeeping, out of the way of the plugin's own
    method names.

    A worker that dies is restarted with exponential backoff (0.5 s, 1 s, 2 s... up to
    30 s): a fresh worker imports the plugin, is initialized with the same context (the
    registrations it makes again are the ones already in place, which now reach it),
    and started if the plugin was running. A restart that fails counts as a crash. After
    ``CRASHES_ALLOWED`` crashes within ``CRASH_WINDOW`` seconds it is given up on. Each
    step is told to :attr:`listeners` as ``(kind, detail)``: ``crashed``, ``restarted``,
    ``gave_up``.
    """

    def __init__(
        self, bridge: Bridge, manifest: Manifest, private: bool, timeouts: Mapping[str, float]
    ) -> None:
        self.bridge, self.manifest, self.private = bridge, manifest, private
        self.timeouts = dict(timeouts)
        self.listeners: list[Callable[[str, str], None]] = []
        self.crashes: list[float] = []
        self.restarts = 0
        self.state = "running"  # running, restarting, given up, closed, replaced
        self.running = False  # start() succeeded and stop() did not follow
        self.has_start = False
        self.info: dict[str, object] | None = None
        bridge.worker_crashed = self._crashed

    @property
    def worker(self) -> WorkerProcess:
        worker = self.bridge.worker
        assert worker is not None  # set at load
        return worker

    def release(self) -> None:
        """The version is going: the worker runs its ``on_release`` callbacks (the worker
        itself ends when the code is unloaded, after ``cleanup``)."""
        if self.state == "replaced":  # its worker serves a revived object now
            return
        worker = self.worker
        if worker.ended is None and worker.channel.closed is None:
            with contextlib.suppress(PluginCrashedError, TimeoutError, OSError):
                self.bridge.call("release", (), {}, timeout=self.timeouts.get("stop", 10.0))

    def close(self) -> None:
        """End the worker for good (the code is unloaded): no restart follows."""
        replaced = self.state == "replaced"
        self.state = "closed"
        if not replaced:
            self.worker.terminate()

    def describe(self) -> dict[str, object]:
        """The worker's state for health and metrics."""
        worker = self.worker
        return {"state": self.state, "pid": worker.pid, "restarts": self.restarts,
                "crashes": len(self.crashes), **worker.usage()}  # fmt: skip

    # ------------------------------------------------------------------ crashes

    def _tell(self, kind: str, detail: str) -> None:
        """Tell the listeners, on the host's loop (the crash is heard on a reader thread)."""
        loop = self.bridge.loop
        if loop is not None and threading.get_ident() != self.bridge.loop_thread:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens
                loop.call_soon_threadsafe(self._tell_now, kind, detail)
            return
        self._tell_now(kind, detail)

    def _tell_now(self, kind: str, detail: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(kind, detail)
            except Exception:
                log.exception("plugin %s: a worker listener failed", self.bridge.plugin)

    def _crashed(self, worker: WorkerProcess, detail: str) -> None:
        """The channel of ``worker`` closed without the host asking (its reader thread)."""
        if self.state in ("closed", "replaced") or worker is not self.bridge.worker:
            return
        self._count_crash(detail)

    def _count_crash(self, detail: str) -> None:
        now = time.monotonic()
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW] + [now]
        self._tell("crashed", detail)
        if len(self.crashes) >= CRASHES_ALLOWED:
            self.state = "given up"
            self._tell("gave_up", f"its worker crashed {len(self.crashes)} times within "
                       f"{CRASH_WINDOW:g}s (last: {detail})")  # fmt: skip
            return
        self.state = "restarting"
        loop = self.bridge.loop
        if loop is None or self.info is None:  # not initialized yet: nothing to restart
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the host is going away
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._restart()))

    async def _restart(self) -> None:
        delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** min(len(self.crashes) - 1, 16))
        await asyncio.sleep(delay)
        if self.state != "restarting":
            return
        name = self.bridge.plugin
        started: WorkerProcess | None = None
        try:
            worker, _ = await asyncio.to_thread(
                _spawn, self.bridge, self.manifest, self.private, self.timeouts
            )
            started = worker
            if self.state != "restarting":  # closed while it started
                worker.terminate()
                return
            self.bridge.worker = worker
            await worker.acall("initialize", [self.info])
            if self.running and self.has_start:
                await worker.acall("plugin.start")
        except Exception as exc:
            log.warning("plugin %s: restarting its worker failed: %s", name, exc)
            if started is not None:
                started.stopping = True  # its end is this failure, counted below
                started.terminate()
            self._count_crash(f"its restart failed: {exc}")
            return
        self.state = "running"
        self.restarts += 1
        log.warning("plugin %s: its worker was restarted (pid %d, restart %d)", name,
                    worker.pid, self.restarts)  # fmt: skip
        self._tell("restarted", f"pid {worker.pid}")


class RemotePlugin:
    """The host-side stand-in of a process plugin: one subclass per plugin, with the real
    object's methods, each forwarding to the worker. Its one attribute of its own is
    :attr:`tether_worker` (:class:`RemoteState`)."""

    isolation = "process"
    tether_worker: RemoteState

    async def initialize(self, ctx: PluginContext) -> None:
        state = self.tether_worker
        bridge = state.bridge
        bridge.context = ctx
        bridge.loop = asyncio.get_running_loop()
        bridge.loop_thread = threading.get_ident()
        state.info = {
            "name": ctx.name,
            "version": ctx.version,
            "permissions": sorted(ctx.permissions),
            "config": ctx.plugin_config,
            "data_dir": str(ctx.data_dir),
            "log_level": logging.getLogger(f"tether.plugin.{ctx.name}").getEffectiveLevel(),
        }
        ctx.on_release(state.release)
        await state.worker.acall("initialize", [state.info])

    def __repr__(self) -> str:
        state = self.tether_worker
        return f"<process plugin {state.bridge.plugin} (worker pid {state.worker.pid})>"


def _ending_step(bridge: Bridge, method: str) -> Callable[..., Any]:
    """``stop``/``cleanup``: nothing to do once the worker is gone (its end was logged)."""
    forward = bridge.forwarder(f"plugin.{method}", is_async=True, label=method)

    async def step(self: RemotePlugin, *args: object, **kwargs: object) -> object:
        worker = bridge.worker
        state = self.tether_worker
        if method == "stop":
            state.running = False
        if state.state == "replaced":  # its worker serves a revived object now
            return None
        if worker is not None and (worker.ended is not None or worker.channel.closed):
            return None
        return await forward(*args, **kwargs)

    step.__name__ = method
    return step


def _health_step(bridge: Bridge, *, forwards: bool) -> Callable[..., Any]:
    """``health_check``: failing while the worker is down (restarting, given up), else the
    plugin's own check, if it has one."""
    forward = bridge.forwarder("plugin.health_check", is_async=True, label="health_check")

    async def health_check(self: RemotePlugin) -> object:
        state = self.tether_worker
        if state.state != "running":
            last = state.worker.ended or "unknown"
            raise PluginCrashedError(bridge.plugin, f"{last}; the worker is {state.state}")
        return await forward() if forwards else True

    return health_check


def _start_step(bridge: Bridge) -> Callable[..., Any]:
    forward = bridge.forwarder("plugin.start", is_async=True, label="start")

    async def start(self: RemotePlugin) -> object:
        result = await forward()
        self.tether_worker.running = True
        return result

    return start


def _remote_class(name: str, description: Mapping[str, Any], bridge: Bridge) -> type[RemotePlugin]:
    attributes: dict[str, object] = {}
    methods = dict(description["methods"])
    for method, is_async in methods.items():
        if method == "initialize" or method.startswith("_"):
            continue
        if method in ("stop", "cleanup"):
            attributes[method] = _ending_step(bridge, method)
            continue
        if method == "start":
            attributes[method] = _start_step(bridge)
            continue
        forward = bridge.forwarder(
            f"plugin.{method}", is_async=bool(is_async) or method in _STEPS, label=method
        )
        attributes[method] = _unbound(forward)
    attributes["health_check"] = _health_step(bridge, forwards="health_check" in methods)
    if description.get("config_schema") is not None:
        attributes["config_schema"] = description["config_schema"]
    return types.new_class(
        f"Remote{description.get('class', name)}",
        (RemotePlugin,),
        exec_body=lambda ns: ns.update(attributes),
    )


def _command(manifest: Manifest) -> list[str] | None:
    """The worker's program and arguments for a plugin not written in Python (the
    program is looked up on ``PATH``, or taken relative to the plugin's directory)."""
    if not manifest.command:
        return None
    program, *arguments = manifest.command
    directory = manifest.directory.absolute() if manifest.directory else None
    if directory is not None and ("/" in program) and not program.startswith("/"):
        program = str(directory / program)
    found = shutil.which(program)
    if found is None:
        raise PluginLoadError(
            f"plugin '{manifest.name}': its worker's program {program!r} was not found",
            plugin=manifest.name,
            path=manifest.source,
            hint=f"install {manifest.command[0]} or fix `command` in the manifest",
        )
    return [found, *arguments]


def _spawn(
    bridge: Bridge, manifest: Manifest, private: bool, timeouts: Mapping[str, float]
) -> tuple[WorkerProcess, object]:
    """Start a worker for ``manifest`` and have it import the plugin: the worker and the
    plugin object's description (blocking)."""
    limit = timeouts.get("initialize", 30.0)
    worker = start_worker(
        manifest.name,
        command=_command(manifest),
        on_request=bridge.on_request,
        limit=limit,
        cwd=str(manifest.directory.absolute()) if manifest.directory else None,
        python=None if manifest.command else plugin_python(manifest),
    )
    worker.on_crash.append(bridge.on_worker_crash)
    try:
        source = str(manifest.source.absolute()) if manifest.source is not None else None
        data = manifest.model_dump(mode="json")
        try:
            description = worker.call("load", [data, source, private], timeout=limit)
        except TetherError as exc:  # the worker's PluginImportError, InterfaceError...
            raise PluginLoadError(
                str(exc), plugin=manifest.name, path=exc.path, hint=exc.hint
            ) from exc
        except TimeoutError:
            raise PluginLoadError(
                f"plugin '{manifest.name}': its worker did not finish importing the plugin "
                f"within {limit:g}s (timeouts.initialize)",
                plugin=manifest.name,
                hint="make the plugin's module quicker to import, or raise its timeouts.initialize",
            ) from None
        except PluginCrashedError:
            raise
        except Exception as exc:
            raise PluginLoadError(
                f"plugin '{manifest.name}' could not be loaded in its worker: {exc}",
                plugin=manifest.name,
            ) from exc
    except BaseException:
        worker.stopping = True
        worker.terminate()
        raise
    return worker, description


def renew_remote(code: LoadedCode) -> LoadedCode:
    """A fresh plugin object in the worker of ``code`` (whose code is imported there
    already): what a rollback revives. Only once the worker made it does ``code``'s
    stand-in let go of the worker; a worker that cannot (one in another language that
    lacks ``renew``) fails with ``PluginLoadError`` and keeps its stand-in."""
    old_plugin = code.instance
    if not isinstance(old_plugin, RemotePlugin):
        raise TypeError(f"not a process plugin's code: {old_plugin!r}")
    old = old_plugin.tether_worker
    name = old.manifest.name
    worker = old.worker
    try:
        description = old.bridge.call("renew", (), {}, timeout=old.timeouts.get("initialize"))
    except TetherError as exc:
        raise PluginLoadError(str(exc), plugin=name, hint=exc.hint) from exc
    except Exception as exc:
        raise PluginLoadError(
            f"plugin '{name}': its worker could not make the previous version again: {exc}",
            plugin=name,
            hint="a worker in another language may not offer `renew`; reload the plugin instead",
        ) from exc
    instance = _stand_in(name, description, Bridge(name), old.manifest, old.private, old.timeouts)
    bridge = instance.tether_worker.bridge
    bridge.call_timeout = old.bridge.call_timeout
    bridge.worker = worker
    old.state = "replaced"
    old.bridge.worker_crashed = None
    worker.channel.on_request = bridge.on_request
    worker.on_crash[:] = [bridge.on_worker_crash]
    return LoadedCode(manifest=code.manifest, instance=instance, module=code.module,
                      namespace=None, closer=instance.tether_worker.close)  # fmt: skip


def _stand_in(
    name: str,
    description: object,
    bridge: Bridge,
    manifest: Manifest,
    private: bool,
    timeouts: Mapping[str, float],
) -> RemotePlugin:
    """The stand-in for a worker's plugin object, from the worker's description of it
    (a ``WorkerProtocolError`` when it is not the shape protocol.md gives)."""
    methods = description.get("methods") if isinstance(description, dict) else None
    schema = description.get("config_schema") if isinstance(description, dict) else None
    if (
        not isinstance(methods, dict)
        or not all(isinstance(k, str) and isinstance(v, bool) for k, v in methods.items())
        or not (schema is None or isinstance(schema, dict))
    ):
        raise WorkerProtocolError(
            name, f"its description of the plugin object is not {{methods: {{name: bool}}, "
            f"config_schema: map or null}}: {str(description)[:200]}"
        )  # fmt: skip
    assert isinstance(description, dict)
    instance = _remote_class(name, description, bridge)()
    instance.tether_worker = RemoteState(bridge, manifest, private, timeouts)
    instance.tether_worker.has_start = "start" in methods
    return instance


def load_remote(manifest: Manifest, *, private: bool, timeouts: Mapping[str, float]) -> LoadedCode:
    """Start ``manifest``'s worker, import the plugin there, return its stand-in's code.

    Blocking (the manager runs it within ``timeouts.initialize``, in a thread)."""
    bridge = Bridge(manifest.name)
    bridge.call_timeout = timeouts.get("call")
    worker, description = _spawn(bridge, manifest, private, timeouts)
    bridge.worker = worker
    try:
        instance = _stand_in(manifest.name, description, bridge, manifest, private, timeouts)
    except BaseException:
        worker.terminate()
        raise
    module = types.ModuleType(f"_tether_process.{manifest.name}")
    return LoadedCode(manifest=manifest, instance=instance, module=module, namespace=None,
                      closer=instance.tether_worker.close)  # fmt: skip
