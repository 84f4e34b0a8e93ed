"""Serving: plugins up, then uvicorn; on SIGINT/SIGTERM, the same steps in reverse.

Startup: bind the socket, load the config's plugins (the web app's router is installed
first), initialize and start every plugin, serve. A taken port fails before any plugin
starts; a plugin that fails to load or start (after its ``retries``) stops the server
before it serves, unless its entry says ``required: false``: then the server serves
without it, and reports it failed (``/admin/health``, status ``degraded``).

Shutdown, on SIGINT or SIGTERM (or ``WebServer.stop()``): uvicorn stops accepting
connections, closes idle ones and waits for the requests in flight to finish (up to
``graceful_timeout``); then the plugins are stopped in reverse dependency order and
unloaded (``PluginManager.aclose``). The process then exits 0.

With ``watch`` (``tether serve --watch``) a :class:`tether.PluginWatcher` runs beside the
server once the plugins are up: a save in a plugin's directory reloads that plugin, and a
save that breaks it rolls back while the running version keeps serving.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn

from tether import (
    PluginManager,
    PluginWatcher,
    TetherConfig,
    TetherError,
    load_config,
    run_host,
)
from tether.errors import ConfigError
from tether.hosts.web._app import WebApp
from tether.observability import observe

__all__ = ["ServeInfo", "WebServer", "bind_socket", "serve"]

log = logging.getLogger("tether")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class ServeInfo:
    """What a started server reports: where it listens and what it serves."""

    url: str
    host: str
    port: int
    plugins: tuple[str, ...]
    routes: tuple[tuple[str, str, str], ...]  # (method, path, plugin)
    failed: tuple[tuple[str, str], ...] = ()  # (plugin, why): not required, served without
    watching: tuple[tuple[str, str], ...] = ()  # (plugin, directory): --watch reloads on save


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 picks a free one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise _cannot_listen(host, port, exc) from exc
    sock.setblocking(False)  # noqa: FBT003 - socket API
    return sock


def _cannot_listen(host: str, port: int, exc: OSError) -> TetherError:
    return TetherError(
        f"cannot listen on {host}:{port}: {exc.strerror or exc}",
        hint="pick another --port (0 takes any free one) or stop what is using it",
    )


class WebServer:
    """A plugin manager behind a :class:`WebApp`, served by uvicorn.

    ``run()`` does everything (start plugins, serve until told to stop, stop plugins);
    ``stop()`` asks it to stop, from any thread or a signal handler. With
    ``persist_state`` (the default) the plugins' state is written to the state store
    while serving and at shutdown, for ``tether plugins health``. ``retry_attempts``
    replaces every plugin's ``retries.attempts`` (``tether serve --retries N``).
    """

    def __init__(
        self,
        config: TetherConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        admin_token: str | None = None,
        graceful_timeout: float | None = 30.0,
        state_directory: str | Path | None = None,
        persist_state: bool = True,
        retry_attempts: int | None = None,
        watch: bool = False,
        watch_debounce: float | None = None,
    ) -> None:
        self.config = config
        self.persist_state = persist_state
        self.host = host
        self.port = port
        self.graceful_timeout = graceful_timeout
        self.manager = PluginManager(
            config=config, state_directory=state_directory, retry_attempts=retry_attempts
        )
        self.hub = observe(
            self.manager
        )  # from the start: it records every error for the state store
        self.app = WebApp(self.manager, admin_token=admin_token)
        self.stopped_order: list[str] = []
        self.watch = watch
        self.watch_debounce = watch_debounce
        self.watcher: PluginWatcher | None = None
        self._server: uvicorn.Server | None = None
        self._stop_requested = False

    async def start_plugins(self) -> None:
        """Load, initialize and start the config's plugins, then their observability
        (health checks, error-threshold cooldowns, state store writes)."""
        manager = self.manager
        await manager.load_plugins_from_config(self.config)
        await manager.initialize_all()
        await manager.start_all()
        await self.hub.start(persist=self.persist_state)
        if self.watch:
            await self._start_watching()

    async def _start_watching(self) -> None:
        """Watch the plugins' directories; with none to watch, serve on and say so."""
        try:
            self.watcher = await self.manager.watch(debounce=self.watch_debounce)
        except ConfigError:  # a debounce out of range: the caller's mistake, said as such
            raise
        except TetherError as exc:
            hint = f" ({exc.hint})" if exc.hint else ""
            log.warning("--watch: %s%s; serving without watching", exc, hint)

    async def run(self, on_ready: Callable[[ServeInfo], None] | None = None) -> None:
        """Bind, start the plugins, serve until ``stop()``, then stop and unload the plugins.

        The socket is bound first, so a taken port fails before any plugin starts;
        connections made while plugins start wait until the server accepts them.
        """
        sock = bind_socket(self.host, self.port)
        try:
            await self.start_plugins()
            server = self._server = uvicorn.Server(self._uvicorn_config())
            if self._stop_requested:
                server.should_exit = True
            if on_ready is not None:
                on_ready(self.info(sock))
            await server.serve(sockets=[sock])
        finally:
            sock.close()
            if self.watcher is not None:
                await self.watcher.stop()  # no reload starts while the plugins stop
            self.stopped_order = [info.name for info in reversed(self.manager.list_plugins())]
            await self.manager.aclose()
            await self.hub.aclose()  # the last state-store write

    def _uvicorn_config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            log_config=None,  # tether's logging setup stays in charge
            access_log=False,  # access logs are a plugin's job (post_response hooks)
            lifespan="on",
            timeout_graceful_shutdown=_whole_seconds(self.graceful_timeout),
            server_header=False,
        )

    def info(self, sock: socket.socket) -> ServeInfo:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        routes = tuple((r.method, r.path, r.plugin) for r in self.app.routes())
        plugins = tuple(info.name for info in self.manager.list_plugins())
        failed = tuple((f.name, f.reason) for f in self.manager.failed_plugins().values())
        watched = self.watcher.directories if self.watcher is not None else {}
        watching = tuple((name, str(path)) for name, path in watched.items())
        return ServeInfo(f"http://{shown}:{port}", host, port, plugins, routes, failed, watching)

    def stop(self) -> None:
        """Stop accepting, finish the requests in flight, then stop the plugins."""
        self._stop_requested = True
        if self._server is not None:
            self._server.should_exit = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested


def _whole_seconds(seconds: float | None) -> int | None:
    return None if seconds is None else max(1, math.ceil(seconds))


@contextlib.contextmanager
def _stop_on_signals(server: WebServer) -> Iterator[None]:
    """SIGINT/SIGTERM stop ``server`` gracefully instead of ending the process.

    uvicorn installs its own handlers while it serves and, when it has shut down because
    of a signal, raises that signal again against the handlers it found: these. A second
    SIGINT (Ctrl+C twice) gives up waiting and interrupts whatever is running.
    """
    interrupts = 0

    def handle(signum: int, _frame: FrameType | None) -> None:
        nonlocal interrupts
        server.stop()
        if signum == signal.SIGINT:
            interrupts += 1
            if interrupts > 1:
                raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handle) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    config: TetherConfig | Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    admin_token: str | None = None,
    graceful_timeout: float | None = 30.0,
    on_ready: Callable[[ServeInfo], None] | None = None,
    retry_attempts: int | None = None,
    watch: bool = False,
    watch_debounce: float | None = None,
) -> WebServer:
    """Serve a config's plugins until SIGINT/SIGTERM; return the stopped server.

    Blocks. Must run in the main thread (signals); use :class:`WebServer` elsewhere.
    """
    if not isinstance(config, TetherConfig):
        config = load_config(config)
    server = WebServer(
        config,
        host=host,
        port=port,
        admin_token=admin_token,
        graceful_timeout=graceful_timeout,
        retry_attempts=retry_attempts,
        watch=watch,
        watch_debounce=watch_debounce,
    )
    with _stop_on_signals(server):
        run_host(server.run(on_ready))
    return server
