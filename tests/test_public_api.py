"""The public surface: the blocking facade matches the manager, public methods return
public types, typed hook points type-check, process isolation loads a worker, and the
optional plugin interfaces (Configurable, HealthCheckable, lifecycle hooks) work."""

from __future__ import annotations

import ast
import asyncio
import collections.abc
import functools
import inspect
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

import tether
import tether.errors
import tether.observability
import tether.types
from helpers import PluginWriter, line_of
from tether import (
    ContractRegistry,
    EventBus,
    HookRegistry,
    MiddlewareRegistry,
    PluginHandle,
    PluginManager,
    PluginScope,
    Runtime,
    ServiceRegistry,
    SyncPluginManager,
)
from tether.errors import ConfigError


def asynctest(fn):
    """Run an ``async def`` test in a fresh event loop (there is no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


@pytest.fixture
def plugin(tmp_path: Path) -> PluginWriter:
    return PluginWriter(tmp_path / "plugins")


# --------------------------------------------------------------------------- (a) the sync facade


def _public(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    }


ASYNC_API = _public(PluginManager)
SYNC_NAME = {"aclose": "close"}


def _parameters(fn: object) -> list[tuple[str, inspect._ParameterKind]]:
    return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]


def test_the_manager_has_the_public_methods_this_test_expects():
    assert {"load_plugin", "initialize_all", "check_health", "get_handle", "aclose"} <= set(
        ASYNC_API
    )


@pytest.mark.parametrize("name", sorted(ASYNC_API))
def test_the_sync_facade_offers_each_public_method_of_the_manager(name):
    member = ASYNC_API[name]
    sync_name = SYNC_NAME.get(name, name)
    assert sync_name in _public(SyncPluginManager), f"SyncPluginManager has no {sync_name}"
    mirrored = inspect.getattr_static(SyncPluginManager, sync_name)

    if isinstance(member, property):
        assert isinstance(mirrored, property)
        return
    assert _parameters(mirrored) == _parameters(member)
    assert not inspect.iscoroutinefunction(mirrored)  # blocking, whatever the manager's is


def test_the_sync_facade_blocks_where_the_manager_awaits(plugin, tmp_path):
    path = plugin("checked", HEALTHY)
    with SyncPluginManager(state_directory=tmp_path / "state") as manager:
        info = manager.load_plugin(path)
        manager.initialize_all()
        manager.start_all()
        results = manager.check_health()

        assert info.name == "checked"
        assert manager.get_status("checked") is tether.PluginStatus.RUNNING
        assert results["checked"].ok is True


# --------------------------------------------------------------------------- (b) public types

PUBLIC_CLASSES = [
    PluginManager,
    SyncPluginManager,
    PluginHandle,
    PluginScope,
    Runtime,
    HookRegistry,
    EventBus,
    ServiceRegistry,
    MiddlewareRegistry,
    ContractRegistry,
    tether.types.PluginContext,
]

EXPORTED = {
    id(obj)
    for module in (tether, tether.types, tether.errors, tether.observability)
    for name in module.__all__
    if isinstance(obj := getattr(module, name), type)
}
_LANGUAGE = {"builtins", "typing", "typing_extensions", "collections.abc", "types"}


def _is_public(kind: object) -> bool:
    if id(kind) in EXPORTED or kind in (None, type(None), Ellipsis):
        return True
    if isinstance(kind, typing.TypeVar) or kind in (typing.Any, typing.Self, typing.Union):
        return True
    module = getattr(kind, "__module__", None) or ""
    if module in _LANGUAGE:
        return True
    top = module.partition(".")[0]
    return not top.startswith("tether") and top in sys.stdlib_module_names


def _leaves(annotation: object) -> typing.Iterator[object]:
    """Every type an annotation names (``dict[str, X] | None``: dict, str, X, None)."""
    origin = typing.get_origin(annotation)
    if origin is None:
        if isinstance(annotation, list | tuple):  # Callable's argument list
            for item in annotation:
                yield from _leaves(item)
        else:
            yield annotation
        return
    if origin not in (typing.Union, types.UnionType):
        yield origin
    for argument in typing.get_args(annotation):
        yield from _leaves(argument)


@functools.cache
def _type_checking_names(module_name: str) -> dict[str, object]:
    """What a module imports under ``if TYPE_CHECKING:`` (what its annotations refer to)."""
    module = sys.modules[module_name]
    namespace: dict[str, object] = {}
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            block = ast.Module(body=node.body, type_ignores=[])
            exec(compile(block, module_name, "exec"), namespace)  # the imports of that block
    namespace.pop("__builtins__", None)
    return namespace


def _returns(fn: collections.abc.Callable[..., object]) -> object:
    namespace = {**vars(sys.modules[fn.__module__]), **_type_checking_names(fn.__module__)}
    return typing.get_type_hints(fn, globalns=namespace).get("return")


def _return_types(cls: type) -> typing.Iterator[tuple[str, object]]:
    for name, member in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        if isinstance(member, property) and member.fget is not None:
            functions = [member.fget]
        elif inspect.isfunction(member):
            functions = list(typing.get_overloads(member)) or [member]
        else:
            continue
        for fn in functions:
            for kind in _leaves(_returns(fn)):
                yield name, kind


def test_return_types_are_read_from_annotations_even_those_imported_for_type_checking():
    handle = dict(_return_types(PluginHandle))
    manager = set(_return_types(SyncPluginManager))  # its names come from TYPE_CHECKING imports
    assert handle["metrics"] is tether.CallMetrics  # dict[str, CallMetrics]: the last leaf
    assert ("get_handle", PluginHandle) in manager
    assert ("get_history", tether.SlotEvent) in manager


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=lambda cls: cls.__name__)
def test_public_methods_return_only_types_tether_exports(cls):
    private = sorted(
        {
            f"{cls.__name__}.{name} -> {getattr(kind, '__module__', '?')}."
            f"{getattr(kind, '__qualname__', kind)}"
            for name, kind in _return_types(cls)
            if not _is_public(kind)
        }
    )
    assert private == []


# --------------------------------------------------------------------------- (c) typed hook points

TYPED = """\
from tether.hosts.web import PRE_REQUEST, RequestContext
from tether.types import PluginContext


def wrong(x: int) -> None:
    del x


def right(request: RequestContext) -> None:
    del request


async def right_async(request: RequestContext) -> None:
    del request


def setup(ctx: PluginContext) -> None:
    ctx.register_hook(PRE_REQUEST, 100, wrong)  # the wrong one
    ctx.register_hook(PRE_REQUEST, 100, right)
    ctx.register_hook(PRE_REQUEST, 100, right_async)
    ctx.register_hook("pre_request", 100, wrong)  # an untyped name checks nothing
"""


@pytest.mark.slow
def test_mypy_flags_a_handler_of_the_wrong_type_at_a_typed_hook_point(tmp_path):
    module = tmp_path / "typed_hooks.py"
    module.write_text(TYPED, encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--show-error-codes",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            module.name,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    line = line_of(module, "# the wrong one")
    assert len(errors) == 1, done.stdout + done.stderr
    [error] = errors
    assert error.startswith(f"{module.name}:{line}: error:")
    assert error.endswith("[arg-type]")
    assert "Callable[[int], None]" in error
    assert "RequestContext" in error


# --------------------------------------------------------------------------- (d) isolation

PLAIN = """\
class Plugin:
    def initialize(self, ctx):
        pass

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""


@pytest.mark.parametrize(
    ("manifest", "settings"),
    [({"isolation": "process"}, None), ({}, {"isolation": "process"})],
    ids=["manifest", "config"],
)
@asynctest
async def test_process_isolation_runs_the_plugin_in_a_worker(plugin, tmp_path, manifest, settings):
    path = plugin("isolated", PLAIN, **manifest)
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        info = await manager.load_plugin(path, settings)
        assert info.isolation == "process"
        worker = manager.get_plugin("isolated").tether_worker.worker
        assert worker.pid != os.getpid()
        assert worker.process.poll() is None  # running


@asynctest
async def test_a_config_entry_may_run_a_process_plugin_in_process(plugin, tmp_path):
    path = plugin("isolated", PLAIN, isolation="process")
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        info = await manager.load_plugin(path, {"isolation": "inprocess"})
        assert info.isolation == "inprocess"


# ------------------------------------------------------------------------ (e) optional interfaces

CONFIGURABLE = """\
class Plugin:
    def __init__(self):
        self.changes = []

    def validate_config(self, config):
        if config["limit"] < 0:
            raise ValueError(f"limit must not be negative, got {config['limit']}")

    def initialize(self, ctx):
        self.ctx = ctx

    def on_config_change(self, config):
        self.changes.append(dict(config))

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""

LIMIT = {"limit": {"type": "integer", "default": 1}}


@asynctest
async def test_validate_config_refusing_at_load_is_a_config_error_naming_the_plugin(
    plugin, tmp_path
):
    path = plugin("limited", CONFIGURABLE, config=LIMIT)
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        with pytest.raises(ConfigError) as caught:
            await manager.load_plugin(path, {"config": {"limit": -1}})
        assert not manager.is_loaded("limited")

    error = caught.value
    assert error.plugin == "limited"
    assert str(error) == ("invalid config for plugin 'limited': limit must not be negative, got -1")
    assert "validate_config()" in error.hint


@asynctest
async def test_validate_config_refusing_an_update_keeps_the_old_config(plugin, tmp_path):
    path = plugin("limited", CONFIGURABLE, config=LIMIT)
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        await manager.load_plugin(path, {"config": {"limit": 3}})
        await manager.initialize_all()
        await manager.start_all()
        instance = manager.get_plugin("limited")
        assert isinstance(instance, tether.Configurable)

        with pytest.raises(ConfigError, match=r"invalid config for plugin 'limited'") as caught:
            await manager.update_plugin_config("limited", {"limit": -5})

        assert caught.value.plugin == "limited"
        assert manager.get_context("limited").plugin_config == {"limit": 3}
        assert instance.changes == []  # refused before on_config_change

        await manager.update_plugin_config("limited", {"limit": 7})
        assert manager.get_context("limited").plugin_config == {"limit": 7}
        assert instance.changes == [{"limit": 7}]


HEALTHY = """\
class Plugin:
    def __init__(self):
        self.healthy = True
        self.checks = 0

    def health_check(self):
        self.checks += 1
        return self.healthy

    def initialize(self, ctx):
        pass

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""


@asynctest
async def test_check_health_polls_health_checkable_plugins(plugin, tmp_path):
    checked = plugin("checked", HEALTHY)
    unchecked = plugin("unchecked", PLAIN)
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        await manager.load_plugin(checked)
        await manager.load_plugin(unchecked)
        await manager.initialize_all()
        await manager.start_all()
        instance = manager.get_plugin("checked")
        assert isinstance(instance, tether.HealthCheckable)
        assert not isinstance(manager.get_plugin("unchecked"), tether.HealthCheckable)

        passing = await manager.check_health()
        instance.healthy = False
        failing = await manager.check_health("checked")

        assert set(passing) == {"checked"}  # only plugins with a check report
        assert passing["checked"].ok is True
        assert failing["checked"].ok is False
        assert instance.checks == 2
        assert manager.is_degraded("checked")


LIFECYCLE_HOOKS = """\
from tether import SHUTDOWN, STARTUP


class Plugin:
    received = []

    def initialize(self, ctx):
        ctx.register_hook(STARTUP, 1, self.on_startup)
        ctx.register_hook("shutdown", 1, self.on_shutdown)

    def on_startup(self, names):
        self.received.append(("startup", names))

    def on_shutdown(self, names):
        self.received.append(("shutdown", names))

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""


@asynctest
async def test_startup_and_shutdown_hooks_receive_the_plugin_names(plugin, tmp_path):
    first = plugin("first", PLAIN)
    watcher = plugin("watcher", LIFECYCLE_HOOKS, dependencies=[{"name": "first"}])
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        await manager.load_plugin(first)
        await manager.load_plugin(watcher)
        await manager.initialize_all()
        instance = manager.get_plugin("watcher")
        await manager.start_all()
        await manager.stop_all()

        assert instance.received == [
            ("startup", ("first", "watcher")),
            ("shutdown", ("first", "watcher")),
        ]
        for _, names in instance.received:
            assert type(names) is tuple
            assert not any(isinstance(n, PluginManager) for n in names)


def test_lifecycle_hook_points_are_typed_with_a_tuple_of_names():
    hints = typing.get_type_hints(tether.types, include_extras=False)
    assert hints["STARTUP"] == tether.HookPoint[tuple[str, ...], None]
    assert hints["SHUTDOWN"] == tether.HookPoint[tuple[str, ...], None]
