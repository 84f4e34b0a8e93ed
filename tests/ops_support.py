"""Support for the observability and admin tests: controllable plugins, a served app.

``write_plugin`` writes a plugin whose behaviour the test flips at run time through
its instance (``manager.get_plugin(name)``): ``fail_hooks`` makes its ``pre_request``
hook raise ``ValueError``, ``healthy = False`` makes its ``health_check()`` raise
``ConnectionError`` (``"false"`` makes it return ``False``).

``Served`` runs an ASGI app with uvicorn on 127.0.0.1 and a free port, in a thread with
its own event loop; ``served.call(coro_fn)`` runs a coroutine there, where the
manager lives.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self, TypeVar

import uvicorn

from helpers import PluginWriter
from tether import PluginManager

T = TypeVar("T")

PLUGIN = """\
class Plugin:
    fail_hooks = False
    healthy = True

    def initialize(self, ctx):
        self.ctx = ctx
        ctx.register_hook("pre_request", 100, self.on_request)

    def on_request(self, arg):
        if self.fail_hooks:
            raise ValueError(f"{self.ctx.name} refuses {arg!r}")
        return self.ctx.name

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass

    def health_check(self):
        if self.healthy == "false":
            return False
        if not self.healthy:
            raise ConnectionError("database unreachable")
        return True
"""

ASYNC_CHECK_PLUGIN = """\
import asyncio


class Plugin:
    healthy = True

    def initialize(self, ctx):
        self.ctx = ctx

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass

    async def health_check(self):
        await asyncio.sleep(0)
        if self.healthy == "hang":
            await asyncio.sleep(60)
        if not self.healthy:
            raise RuntimeError("cache cold")
"""


def write_plugin(
    root: Path, name: str, *, depends_on: tuple[str, ...] = (), code: str = PLUGIN
) -> Path:
    return PluginWriter(root)(
        name, code, dependencies=[{"name": d, "version": "^1.0.0"} for d in depends_on]
    )


async def start_plugins(manager: PluginManager, *paths: Path) -> None:
    for path in paths:
        await manager.load_plugin(path)
    await manager.initialize_all()
    await manager.start_all()


class Served:
    """An ASGI app served by uvicorn on a free loopback port, in a thread of its own."""

    def __init__(self, app: Any, manager: PluginManager, *, timeout: float = 30.0) -> None:
        self.manager = manager
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="served-app", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.01)
        self._ready.set()
        try:
            await task
        finally:
            await self.manager.aclose()

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(self.timeout) or self._error is not None:
            raise RuntimeError(f"the server did not start: {self._error!r}")
        return self

    def call(self, function: Callable[[], Awaitable[T]]) -> T:
        if self._loop is None:
            raise RuntimeError("not started")

        async def run() -> T:
            return await function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(self.timeout)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(self.timeout)
        self._sock.close()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
