"""The worker process: runs one plugin's unchanged code and carries its context's calls
to the host (docs/reference/protocol.md).

Started by the host as ``python -I -c <boot>`` with the channel's socket inherited as
file descriptor ``TETHER_WORKER_FD``; stdout and stderr are pipes the host logs, so
nothing the plugin prints can reach the protocol. The main thread reads the socket
(:class:`~tether.isolation._protocol.Channel`); synchronous plugin code runs there, in
place, and ``async def`` code on an event loop in a second thread. The worker ends when
the host says ``shutdown``, or when the socket closes (the host went away).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import inspect
import itertools
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from tether.isolation._protocol import (
    CODECS,
    PROTOCOL_VERSION,
    Channel,
    ChannelClosedError,
    Request,
    codec_named,
    describe_exception,
    read_frame,
    write_frame,
)

__all__ = ["main", "rebuild_error"]

# results that are never awaitable: no ABC check for them on the hot path
_PLAIN = frozenset({type(None), bool, int, float, str, bytes, dict, list, tuple})

FD_VARIABLE = "TETHER_WORKER_FD"
log = logging.getLogger("tether.worker")


def rebuild_error(error: Mapping[str, object], *, plugin: str) -> BaseException:
    """The exception a failure dict stands for, on this side: a builtin exception as its
    own class, a tether error as its class, anything else a ``RemoteError``."""
    from tether import errors

    kind = str(error.get("type", "Exception"))
    message = str(error.get("message", ""))
    trace = str(error.get("traceback", "") or "")
    found: BaseException | None = None
    if "." not in kind:
        cls = getattr(builtins, kind, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                found = cls(message)
            except Exception:
                found = None
    elif kind.startswith("tether.errors."):
        cls = getattr(errors, kind.rpartition(".")[2], None)
        if isinstance(cls, type) and issubclass(cls, errors.TetherError):
            found = cls.__new__(cls)
            hint, path = error.get("hint"), error.get("path")
            errors.TetherError.__init__(
                found,
                message,
                plugin=plugin,
                hint=str(hint) if hint is not None else None,
                path=str(path) if path is not None else None,
            )
    if found is None:
        found = errors.RemoteError(plugin, kind, message, trace)
    if trace:
        found.add_note(f"in the worker of plugin '{plugin}':\n{trace.rstrip()}")
    return found


# --------------------------------------------------------------------------- context


class _Remote:
    """Calls one family of host services (``ctx.storage``, ``ctx.config``...) by name."""

    __slots__ = ("_channel", "_target")

    def __init__(self, channel: Channel, target: str) -> None:
        self._channel = channel
        self._target = target

    def __getattr__(self, op: str) -> Callable[..., object]:
        if op.startswith("_"):
            raise AttributeError(op)
        channel, target = self._channel, self._target

        def call(*args: object, **kwargs: object) -> object:
            return channel.call(target, [op, list(args), kwargs])

        return call


class _Registration:
    """What ``register_hook``/``subscribe_event`` return in a worker."""

    def __init__(
        self, channel: Channel, ident: int, plugin: str, label: str, extra: dict[str, object]
    ) -> None:
        self._channel = channel
        self._ident = ident
        self.plugin = plugin
        self.is_active = True
        self.__dict__.update(extra)
        self._label = label

    def remove(self) -> None:
        if self.is_active:
            self._channel.call("ctx.remove", [self._ident])
            self.is_active = False

    def __repr__(self) -> str:
        return f"<{self._label} of {self.plugin}>"


class _ServiceProxy:
    """Another plugin's service, seen from a worker: each method a call to the host."""

    def __init__(self, channel: Channel, ident: int, methods: Mapping[str, bool]) -> None:
        for name, is_async in methods.items():
            setattr(self, name, _service_method(channel, ident, name, is_async=is_async))


def _service_method(
    channel: Channel, ident: int, name: str, *, is_async: bool
) -> Callable[..., Any]:
    if is_async:

        async def acall(*args: object, **kwargs: object) -> object:
            return await channel.acall("ctx.service_call", [ident, name, list(args), kwargs])

        return acall

    def call(*args: object, **kwargs: object) -> object:
        return channel.call("ctx.service_call", [ident, name, list(args), kwargs])

    return call


class _Logger(logging.LoggerAdapter[logging.Logger]):
    """``ctx.logger`` in a worker: records go to the host, which logs them as the plugin's."""

    def __init__(self, channel: Channel, plugin: str, fields: Mapping[str, object]) -> None:
        super().__init__(logging.getLogger(f"tether.plugin.{plugin}"), {"fields": dict(fields)})
        self._channel = channel
        self._plugin = plugin

    def with_fields(self, **fields: object) -> _Logger:
        merged = {**dict((self.extra or {}).get("fields", {})), **fields}  # type: ignore[call-overload]
        return _Logger(self._channel, self._plugin, merged)

    def set_level(self, level: str | int) -> None:
        self.logger.setLevel(level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:  # noqa: ANN401 - LoggerAdapter.log's signature
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        fields = dict((self.extra or {}).get("fields", {}))  # type: ignore[call-overload]
        extra = kwargs.get("extra")
        if isinstance(extra, Mapping):
            fields.update(extra)
        if kwargs.get("exc_info"):
            import traceback

            text += "\n" + traceback.format_exc().rstrip()
        self._channel.notify("ctx.log", [level, text, _plain(fields)])


def _plain(fields: Mapping[str, object]) -> dict[str, object]:
    plain: dict[str, object] = {}
    for key, value in fields.items():
        plain[str(key)] = (
            value if isinstance(value, str | int | float | bool | type(None)) else repr(value)
        )
    return plain


class _RemoteRouter:
    """``ctx.router`` in a worker: each route's handler gets a Starlette ``Request`` made
    from the request map the host sends (``tether.isolation._http``)."""

    def __init__(self, worker: Worker, prefix: str) -> None:
        self._worker = worker
        self._prefix = prefix

    def _add(self, op: str, path: str, handler: Callable[..., object]) -> None:
        target = self._worker.add_handler(_route_handler(handler))
        full = self._prefix.rstrip("/") + path if self._prefix else path
        self._worker.channel.call("ctx.router", [op, [full, target], {}])

    def get(self, path: str, handler: Callable[..., object]) -> None:
        self._add("get", path, handler)

    def post(self, path: str, handler: Callable[..., object]) -> None:
        self._add("post", path, handler)

    def put(self, path: str, handler: Callable[..., object]) -> None:
        self._add("put", path, handler)

    def patch(self, path: str, handler: Callable[..., object]) -> None:
        self._add("patch", path, handler)

    def delete(self, path: str, handler: Callable[..., object]) -> None:
        self._add("delete", path, handler)

    def group(self, prefix: str) -> _RemoteRouter:
        return _RemoteRouter(self._worker, self._prefix.rstrip("/") + prefix)


def _route_handler(handler: Callable[..., object]) -> Callable[..., object]:
    from tether.isolation._http import request_from_wire, response_to_wire

    async def serve(data: dict[str, Any]) -> object:
        result = handler(request_from_wire(data))
        if inspect.isawaitable(result):
            result = await result
        return response_to_wire(result)

    return serve


def _middleware_handler(channel: Channel, handler: Callable[..., object]) -> Callable[..., object]:
    """The worker's side of a middleware: a Starlette request in, ``call_next`` across
    to the host (the request goes on as it came: a worker's middleware cannot change
    it), the response back."""
    from tether.isolation._http import request_from_wire, response_from_map, response_to_wire

    async def serve(data: dict[str, Any], token: int) -> object:
        async def call_next(_request: object) -> object:
            return response_from_map(await channel.acall("ctx.call_next", [token, data]))

        result = handler(request_from_wire(data), call_next)
        if inspect.isawaitable(result):
            result = await result
        return response_to_wire(result)

    return serve


class WorkerContext:
    """The plugin's ``ctx`` in a worker: the same API as in-process, over the channel."""

    def __init__(self, worker: Worker, info: Mapping[str, Any]) -> None:
        self._worker = worker
        self._channel = worker.channel
        self._info = info
        self._release: list[Callable[[], object]] = []
        self.name: str = info["name"]
        self.version: str = info["version"]
        self.permissions = frozenset(info["permissions"])
        self.plugin_config: dict[str, object] = dict(info["config"])
        self.data_dir = Path(info["data_dir"]) if info.get("data_dir") else None
        self.logger = _Logger(self._channel, self.name, {})
        self.logger.set_level(int(info.get("log_level", logging.INFO)))
        self.plugin_storage = _Remote(self._channel, "ctx.storage")
        self.metrics = _Remote(self._channel, "ctx.metrics")

    @property
    def manifest(self) -> object:
        return self._worker.manifest

    def has_permission(self, permission: str) -> bool:
        return permission in self.permissions

    def _gated(self, permission: str, target: str) -> _Remote:
        if permission not in self.permissions:
            from tether.errors import PermissionDeniedError

            raise PermissionDeniedError(self.name, permission)
        return _Remote(self._channel, target)

    @property
    def database(self) -> _Remote:
        return self._gated("database", "ctx.database")

    @property
    def cache(self) -> _Remote:
        return self._gated("cache", "ctx.cache")

    @property
    def config(self) -> _Remote:
        return self._gated("config", "ctx.config")

    @property
    def router(self) -> _RemoteRouter:
        if "router" not in self.permissions:
            from tether.errors import PermissionDeniedError

            raise PermissionDeniedError(self.name, "router")
        # as in-process: a host that serves no HTTP fails the access, not the first route
        self._channel.call("ctx.router", ["check", [], {}])
        return _RemoteRouter(self._worker, "")

    # ------------------------------------------------------------------ hooks and events

    def register_hook(
        self,
        hook: object,
        priority: int,
        handler: Callable[..., object],
        *,
        timeout: float | None = None,
    ) -> _Registration:
        point = getattr(hook, "name", hook)
        target = self._worker.add_handler(handler)
        ident = self._channel.call(
            "ctx.register_hook", [str(point), priority, target, _is_async(handler), timeout]
        )
        return _Registration(
            self._channel,
            _ident(ident),
            self.name,
            "hook registration",
            {"hook_type": str(point), "priority": priority},
        )

    async def publish_event(self, event: str, data: object = None) -> object:
        return _event(await self._channel.acall("ctx.publish_event", [event, data]))

    def publish_event_nowait(self, event: str, data: object = None) -> object:
        return _event(self._channel.call("ctx.publish_event_nowait", [event, data]))

    def subscribe_event(self, event: str, handler: Callable[..., object]) -> _Registration:
        target = self._worker.add_handler(handler, takes_event=True)
        ident = self._channel.call("ctx.subscribe_event", [event, target, _is_async(handler)])
        return _Registration(
            self._channel,
            _ident(ident),
            self.name,
            "subscription",
            {"pattern": event},
        )

    # ------------------------------------------------------------------ services

    def export_service(self, name: str, service: object) -> None:
        lifecycle = {"initialize", "start", "stop"}
        hide = lifecycle if all(callable(getattr(service, m, None)) for m in lifecycle) else set()
        methods: dict[str, bool] = {}
        for attribute in dir(service):
            if attribute.startswith("_") or attribute in hide:
                continue
            value = getattr(service, attribute, None)
            if callable(value) and value is not self:
                methods[attribute] = _is_async(value)
                self._worker.targets[f"s.{name}.{attribute}"] = value
        self._channel.call("ctx.export_service", [name, methods])

    def import_service(self, plugin: str, name: str, kind: object = None) -> object:
        del kind
        found = self._channel.call("ctx.import_service", [plugin, name])
        assert isinstance(found, dict)
        return _ServiceProxy(self._channel, int(found["id"]), found["methods"])

    def register_middleware(
        self,
        name: str,
        handler: Callable[..., object],
        priority: int = 100,
        routes: list[str] | None = None,
    ) -> _Registration:
        target = self._worker.add_handler(_middleware_handler(self._channel, handler))
        ident = self._channel.call(
            "ctx.register_middleware", [name, target, priority, list(routes) if routes else None]
        )
        return _Registration(self._channel, _ident(ident), self.name, "middleware",
                             {"name": name, "priority": priority})  # fmt: skip

    def unregister_middleware(self, name: str) -> None:
        self._channel.call("ctx.unregister_middleware", [name])

    def on_release(self, callback: Callable[[], object]) -> None:
        self._release.append(callback)

    async def release(self) -> None:
        """Run the ``on_release`` callbacks, last first, on the worker's loop (so the
        reader stays free to carry what they ask of the host)."""
        callbacks, self._release = list(reversed(self._release)), []
        for callback in callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("plugin %s: a release callback failed", self.name)

    def __repr__(self) -> str:
        return f"<PluginContext {self.name} {self.version} (process)>"


def _ident(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"the host answered {value!r}, not an id")
    return value


def _is_async(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(type(fn).__call__)


def _event(data: object) -> object:
    from tether.types import Event

    assert isinstance(data, dict)
    return Event(
        id=data["id"],
        name=data["name"],
        data=data["data"],
        source=data["source"],
        time=datetime.fromtimestamp(data["time"], UTC),
    )


# --------------------------------------------------------------------------- the worker


class Worker:
    """The worker's state: the channel, the plugin, the callables the host may call."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.instance: object = None
        self.code: Any = None
        self.manifest: object = None
        self.context: WorkerContext | None = None
        self.directory: str | None = None
        self.targets: dict[str, Callable[..., object]] = {
            "load": self.load,
            "renew": self.renew,
            "initialize": self.initialize,
            "release": self.release,
            "ping": lambda payload=None: payload,
        }
        self._handlers = itertools.count(1)
        self._running: dict[int, asyncio.Task[object]] = {}
        self._due: list[tuple[int, Awaitable[object]]] = []
        self._due_lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(
            target=self._loop.run_forever, name="tether-worker-loop", daemon=True
        )
        self._loop_thread.start()

    # ------------------------------------------------------------------ requests

    def on_request(self, request: Request) -> None:
        fn = self.targets.get(request.target)
        if fn is None:
            self.channel.fail(
                request.id, LookupError(f"no target {request.target!r} in this worker")
            )
            return
        try:
            result = fn(*request.args, **request.kwargs)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            self.channel.fail(request.id, describe_exception(exc, directory=self.directory))
            return
        if type(result) not in _PLAIN and inspect.isawaitable(result):
            self._schedule(request, cast("Awaitable[object]", result))
        else:
            self.channel.answer(request.id, result)

    def _schedule(self, request: Request, awaitable: Awaitable[object]) -> None:
        """Queue ``awaitable`` for the loop: the requests of one read start in one
        callback there (one wake of the loop, not one each)."""
        with self._due_lock:
            self._due.append((request.id, awaitable))
            first = len(self._due) == 1
        if first:
            self._loop.call_soon_threadsafe(self._start_due)

    def _start_due(self) -> None:
        """On the loop: a task for each queued request."""
        with self._due_lock:
            due, self._due = self._due, []
        for ident, awaitable in due:
            task = self._loop.create_task(_awaited(awaitable))
            if ident:
                self._running[ident] = task
            task.add_done_callback(functools.partial(self._settle, ident))

    def _settle(self, ident: int, done: asyncio.Future[object]) -> None:
        self._running.pop(ident, None)
        try:
            if done.cancelled():
                self.channel.fail(
                    ident,
                    {
                        "type": "CancelledError",
                        "message": "cancelled",
                        "traceback": "",
                        "file": None,
                        "line": None,
                    },
                )
                return
            error = done.exception()
            if error is not None:
                self.channel.fail(ident, describe_exception(error, directory=self.directory))
            else:
                self.channel.answer(ident, done.result())
        except ChannelClosedError:
            pass

    def on_cancel(self, ident: int) -> None:
        # after the request's _start_due: the loop runs its callbacks in order
        with contextlib.suppress(RuntimeError):  # the loop is gone
            self._loop.call_soon_threadsafe(self._cancel_on_loop, ident)

    def _cancel_on_loop(self, ident: int) -> None:
        task = self._running.get(ident)
        if task is not None:
            task.cancel()

    def run_on_loop(self, awaitable: Awaitable[object]) -> object:
        async def run() -> object:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def add_handler(self, handler: Callable[..., object], *, takes_event: bool = False) -> str:
        target = f"h.{next(self._handlers)}"
        if takes_event:
            self.targets[target] = _event_handler(handler)
        else:
            self.targets[target] = handler
        return target

    # ------------------------------------------------------------------ lifecycle

    def load(
        self, manifest: dict[str, Any], source: str | None, private: bool
    ) -> dict[str, object]:
        from tether._loader import load_code
        from tether._manifest import Manifest

        found = Manifest.model_validate(manifest)
        if source is not None:
            found = found.model_copy(update={"source": Path(source)})
        code = load_code(found, private_namespace=private)
        self.code = code
        self.manifest = code.manifest
        self.directory = str(found.directory) if found.directory else None
        return self._take(code.instance)

    async def renew(self) -> dict[str, object]:
        """A fresh plugin object from the code already imported (a rollback revives the
        previous version in its own worker): what ``load`` answers, for it."""
        from tether._loader import renew_code

        if self.context is not None:
            await self.context.release()
        self.code = renew_code(self.code)
        self.context = None
        stale = ("plugin.", "h.", "s.")
        self.targets = {k: v for k, v in self.targets.items() if not k.startswith(stale)}
        return self._take(self.code.instance)

    def _take(self, instance: object) -> dict[str, object]:
        self.instance = instance
        methods: dict[str, bool] = {}
        for name in dir(instance):
            if name.startswith("_"):
                continue
            value = getattr(instance, name, None)
            if callable(value) and not isinstance(value, type):
                methods[name] = _is_async(value)
                self.targets[f"plugin.{name}"] = value
        schema = getattr(instance, "config_schema", None)
        return {
            "methods": methods,
            "config_schema": schema if isinstance(schema, dict) else None,
            "class": type(instance).__qualname__,
        }

    def initialize(self, info: dict[str, Any]) -> object:
        self.context = WorkerContext(self, info)
        initialize = getattr(self.instance, "initialize", None)
        return initialize(self.context) if callable(initialize) else None

    async def release(self) -> None:
        if self.context is not None:
            await self.context.release()


async def _awaited(awaitable: Awaitable[object]) -> object:
    return await awaitable


def _event_handler(handler: Callable[..., object]) -> Callable[..., object]:
    if _is_async(handler):

        async def adeliver(data: dict[str, Any]) -> object:
            return await handler(_event(data))  # type: ignore[misc]

        return adeliver

    def deliver(data: dict[str, Any]) -> object:
        return handler(_event(data))

    return deliver


def _heartbeats(channel: Channel, interval: float) -> None:
    """Beat until the socket fails; then the host is gone (or closed it): end now, even
    when the main thread is deep in a plugin call that would keep the process alive."""
    for sequence in itertools.count(1):
        time.sleep(interval)
        try:
            channel.heartbeat(sequence)
        except (ChannelClosedError, OSError):
            time.sleep(interval)  # a normal close: the main thread exits first, cleanly
            os._exit(0)


def _handshake(sock: socket.socket) -> tuple[str, float]:
    hello = {
        "type": "hello",
        "protocols": [PROTOCOL_VERSION],
        "codecs": list(CODECS),
        "language": "python",
        "runtime": sys.version.split()[0],
        "pid": os.getpid(),
    }
    write_frame(sock, json.dumps(hello).encode())
    welcome = json.loads(read_frame(sock))
    if welcome.get("type") != "welcome":
        raise SystemExit(f"tether worker: the host refused the handshake: {welcome.get('reason')}")
    return str(welcome["codec"]), float(welcome.get("heartbeat", 1.0))


def main() -> None:
    """The worker's entry point (the host starts it; nobody else should)."""
    fd = int(os.environ.pop(FD_VARIABLE))
    sock = socket.socket(fileno=fd)
    codec_name, interval = _handshake(sock)

    def to_error(error: dict[str, object]) -> BaseException:
        name = getattr(worker.manifest, "name", "plugin")
        return rebuild_error(error, plugin=str(name))

    def on_request(request: Request) -> None:
        worker.on_request(request)

    channel = Channel(
        sock, codec_named(codec_name), name="worker", on_request=on_request, to_error=to_error
    )
    worker = Worker(channel)
    channel.on_cancel = worker.on_cancel
    threading.Thread(
        target=_heartbeats, args=(channel, interval), name="tether-heartbeat", daemon=True
    ).start()
    channel.run()
    with contextlib.suppress(Exception):  # the host is gone: nobody to tell
        worker.run_on_loop(worker.release())
    sys.stdout.flush()
    os._exit(0)
