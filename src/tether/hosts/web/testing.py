"""Run the web host in a background thread, for tests (ours and plugin authors').

::

    from tether.hosts.web.testing import LiveServer

    def test_hello(tmp_path):
        with LiveServer(tmp_path / "app.yaml") as server:
            response = httpx.get(server.url + "/hello")
            assert response.json() == {"hello": "world"}

The server listens on a free loopback port. ``call`` runs a coroutine on the server's
event loop (where the plugin manager lives): ``server.call(lambda:
server.manager.unload_plugin("greeter"))``. Leaving the ``with`` block stops it the
way SIGTERM does: in-flight requests finish, then plugins stop in reverse order.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from tether import PluginManager, TetherConfig, load_config
from tether.hosts.web._app import WebApp
from tether.hosts.web._server import ServeInfo, WebServer

__all__ = ["LiveServer"]

T = TypeVar("T")


class LiveServer:
    """A :class:`WebServer` on ``127.0.0.1`` and a free port, run in a thread."""

    def __init__(
        self,
        config: TetherConfig | Path | str,
        *,
        admin_token: str | None = None,
        state_directory: str | Path | None = None,
        graceful_timeout: float = 10.0,
        timeout: float = 30.0,
    ) -> None:
        if not isinstance(config, TetherConfig):
            config = load_config(config)
        self.timeout = timeout
        self.server = WebServer(
            config,
            host="127.0.0.1",
            port=0,
            admin_token=admin_token,
            graceful_timeout=graceful_timeout,
            state_directory=state_directory,
        )
        self._info: ServeInfo | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="tether-live-server", daemon=True)

    # ------------------------------------------------------------------ running

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(self.timeout):
            self.server.stop()
            raise TimeoutError(f"the web server did not start within {self.timeout:g}s")
        if self._error is not None:
            self._thread.join(self.timeout)
            raise self._error
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self.server.run(self._on_ready))
        except BaseException as exc:  # handed to the thread that waits for it
            self._error = exc
        finally:
            self._ready.set()

    def _on_ready(self, info: ServeInfo) -> None:
        self._info = info
        self._loop = asyncio.get_running_loop()
        self._ready.set()

    def stop(self) -> None:
        """Stop as SIGTERM does; raise what went wrong in the server thread, if anything."""
        self.server.stop()
        self._thread.join(self.timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the web server did not stop within {self.timeout:g}s")
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ using

    @property
    def info(self) -> ServeInfo:
        if self._info is None:
            raise RuntimeError("the server is not running; call start() first")
        return self._info

    @property
    def url(self) -> str:
        return self.info.url

    @property
    def manager(self) -> PluginManager:
        return self.server.manager

    @property
    def app(self) -> WebApp:
        return self.server.app

    @property
    def stopped_order(self) -> list[str]:
        """The plugins in the order they were stopped (after ``stop``)."""
        return self.server.stopped_order

    def call(self, function: Callable[[], Awaitable[T]]) -> T:
        """Run ``function()`` (a coroutine function) on the server's loop; return its result."""
        if self._loop is None:
            raise RuntimeError("the server is not running; call start() first")

        async def run() -> T:
            return await function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(self.timeout)
