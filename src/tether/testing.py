"""Test support for plugin authors: run a plugin's lifecycle without a host.

``PluginHarness`` loads a plugin (and any dependencies you name) into a private
manager whose state lives in a temporary directory, and lets a plain, synchronous
pytest test drive it::

    from tether.testing import PluginHarness

    def test_greets(tmp_path):
        with PluginHarness("plugins/greeter", config={"greeting": "hi"}) as harness:
            assert harness.plugin.greet("ada") == "hi, ada"
            harness.fire_hook("pre_request", {"path": "/"})
            harness.publish("user.created", {"id": 1})
            assert harness.published("user.welcomed")
            assert harness.storage() == {"greeted": 1}

``make_context`` gives a real :class:`~tether.PluginContext` for unit-testing a
plugin's methods without any lifecycle at all.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from tether._chain import NO_CHAIN, CallChain
from tether._config import PluginConfig, TetherConfig
from tether._context import PluginScope
from tether._event_model import Event
from tether._gate import Door, Gate
from tether._hooks import HookMetrics, HookOutcome
from tether._manager import PluginManager
from tether._manifest import Manifest
from tether._runtime import Runtime
from tether._sync import SyncPluginManager
from tether.types import PluginContext

__all__ = ["PluginHarness", "host_door", "make_context", "make_scope"]

T = TypeVar("T")
_OBSERVER = "tether.testing"


def host_door(name: str, *, runtime: Runtime | None = None) -> Door:
    """A door for registrations a test (or a host) makes itself, outside any plugin.

    Committed and open, with no call chain: an observer's subscription, say.
    """
    gate = Gate(name)
    door = gate.add_door("host", chain=NO_CHAIN)
    door.committed = True
    gate.open(door)
    del runtime
    return door


def _directory(given: str | Path | None) -> Path:
    """``given`` as a path, or a new temporary directory when not given."""
    return Path(given) if given is not None else Path(tempfile.mkdtemp(prefix="tether-test-"))


def make_scope(
    name: str = "test-plugin",
    *,
    config: Mapping[str, object] | None = None,
    permissions: Sequence[str] = (),
    state_directory: str | Path | None = None,
    framework_config: TetherConfig | None = None,
    runtime: Runtime | None = None,
    version: str = "0.0.0",
    chain: CallChain | None = None,
    call_chain: Sequence[str] | None = None,
    call_timeout: float = 30.0,
    committed: bool = True,
) -> PluginScope:
    """The host-side scope of a plugin named ``name``, its gate open: what a manager makes.

    Several scopes can share one ``runtime`` (plugins of one manager). ``call_chain``
    and ``call_timeout`` are the config's ``call_chain`` and ``timeouts.call`` (or pass a
    ready ``chain``). Storage, the
    database and the cache are SQLite files / memory under ``state_directory`` (a new
    temporary directory when not given).
    """
    manifest = Manifest.model_validate(
        {
            "name": name,
            "version": version,
            "description": "test plugin",
            "author": "tests",
            "entry": "test:Plugin",
            "permissions": dict.fromkeys(permissions, True),
        }
    )
    if runtime is None:
        directory = _directory(state_directory)
        runtime = Runtime(config=framework_config, state_directory=directory)
    if chain is None:
        chain = CallChain.parse(
            call_chain, plugin=name, timeout=call_timeout, policy=runtime.errors
        )
    gate = Gate(name)
    door = gate.add_door(version, chain=chain)
    scope = PluginScope(
        manifest=manifest,
        config=dict(config or {}),
        permissions=frozenset(permissions),
        runtime=runtime,
        door=door,
    )
    if committed:
        door.committed = True
        gate.open(door)
    return scope


def make_context(
    name: str = "test-plugin",
    *,
    config: Mapping[str, object] | None = None,
    permissions: Sequence[str] = (),
    state_directory: str | Path | None = None,
    framework_config: TetherConfig | None = None,
) -> PluginContext:
    """A real context for a plugin named ``name``, with its own runtime, its gate open.

    Storage, the database and the cache are SQLite files / memory under
    ``state_directory`` (a new temporary directory when not given).
    """
    return make_scope(
        name,
        config=config,
        permissions=permissions,
        state_directory=state_directory,
        framework_config=framework_config,
    ).context


class PluginHarness:
    """Load, initialize and start one plugin; inspect what it does; stop and unload it."""

    def __init__(
        self,
        path: str | Path,
        *,
        config: Mapping[str, object] | None = None,
        permissions: Mapping[str, bool] | None = None,
        dependencies: Sequence[str | Path | tuple[str | Path, Mapping[str, object]]] = (),
        framework_config: TetherConfig | None = None,
        state_directory: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        self._settings = PluginConfig(config=dict(config or {}), permissions=permissions)
        self._dependencies = list(dependencies)
        self._own_directory = state_directory is None
        self.state_directory = _directory(state_directory)
        manager = PluginManager(
            config=framework_config, state_directory=self.state_directory, stop_timeout=5.0
        )
        self._sync = SyncPluginManager(manager)
        self.manager = manager
        self.name = ""
        self._events: list[Event] = []

    # ------------------------------------------------------------------ lifecycle

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the harness's event loop (where the plugin lives)."""
        return self._sync.run(coro)

    def start(self) -> object:
        """Load the dependencies and the plugin, initialize and start them; return the plugin."""
        for dependency in self._dependencies:
            path, values = (
                dependency if isinstance(dependency, tuple) else (dependency, {})
            )  # fmt: skip
            self._sync.load_plugin(path, {"config": dict(values)})
        self.name = self._sync.load_plugin(self.path, self._settings).name
        self._observe()
        self._sync.initialize_all()
        self._sync.start_all()
        return self.plugin

    def _observe(self) -> None:
        door = host_door(_OBSERVER)
        self.manager.runtime.events.subscribe(door, "*", self._events.append)

    def stop(self) -> None:
        self._sync.stop_all()

    def close(self) -> None:
        """Stop and unload everything, and remove the temporary state directory."""
        try:
            self._sync.close()
        finally:
            if self._own_directory:
                shutil.rmtree(self.state_directory, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ inspection

    @property
    def plugin(self) -> Any:  # noqa: ANN401 - the object under test, whatever its class
        return self.manager.get_plugin(self.name)

    @property
    def context(self) -> PluginContext:
        return self.manager.get_context(self.name)

    @property
    def status(self) -> str:
        return self.manager.get_status(self.name).value

    def fire_hook(self, hook_type: str, arg: object = None) -> HookOutcome[object]:
        """Run every handler registered at ``hook_type`` (sync and async) and return the outcome."""
        return self.run(self.manager.runtime.hooks.run(hook_type, arg))

    def publish(self, name: str, data: object = None, *, timeout: float = 5.0) -> Event:
        """Publish an event as the test and wait until every subscriber has handled it."""
        event = self.run(self.manager.runtime.events.publish(name, data, source=_OBSERVER))
        self.wait_for_events(timeout=timeout)
        return event

    def wait_for_events(self, *, timeout: float = 5.0) -> None:
        """Wait until no subscriber has events queued."""

        async def idle() -> None:
            deadline = time.monotonic() + timeout
            while any(s.pending for s in self.manager.runtime.events.subscriptions()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"events still queued after {timeout}s")
                await asyncio.sleep(0.005)
            await asyncio.sleep(0)

        self.run(idle())

    def published(self, name: str | None = None) -> list[Event]:
        """Events the plugin published (all of them, or those named ``name``)."""
        self.wait_for_events()
        return [
            e for e in self._events if e.source == self.name and (name is None or e.name == name)
        ]

    def storage(self) -> dict[str, object]:
        """Everything in the plugin's storage."""
        store = self.context.plugin_storage
        return {key: store.get(key) for key in store.list()}

    def hook_metrics(self) -> dict[str, HookMetrics]:
        return dict(self.manager.runtime.hooks.metrics(self.name))
