"""Loading a workload plugin and calling into it through its handle.

A workload is any plugin whose manifest says ``provides: [workload]``: the contract
this host registers (:data:`WORKLOAD_CONTRACT`). This module loads one into a fresh
:class:`tether.PluginManager`, initializes it with its ``plugin_config``, and decides
which kind of connection its clients get: if ``execute_operation`` (looked up after
``initialize``) is ``async def``, an asyncpg connection; otherwise a psycopg
connection, one thread per client. An async workload whose optional
``get_connection_type()`` returns ``"psycopg"`` gets psycopg ``AsyncConnection``
objects instead (the ``psycopg-async`` driver). Every call into the plugin goes through its
:class:`tether.PluginHandle`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from tether import (
    Contract,
    FailedPlugin,
    Operation,
    PluginConfig,
    PluginHandle,
    PluginManager,
    TetherConfig,
)
from tether.errors import ConfigError, TetherError
from tether.hosts.workload._errors import WorkloadConfigError
from tether.hosts.workload._weights import check_default_weights, resolve_weights

__all__ = [
    "REFERENCE_NAMES",
    "WORKLOAD_CONTRACT",
    "WORKLOAD_METHODS",
    "LoadedWorkload",
    "WorkloadProtocol",
    "WorkloadSpec",
    "connection_driver",
    "open_workload",
    "with_workload",
    "without_failed",
]

REFERENCE_NAMES: Mapping[str, str] = {
    "imdb_plugin": "imdb",
    "ecommerce_plugin": "ecommerce",
    "vector_plugin": "vector",
    "realworld_plugin": "realworld",
}
"""The reference's (001's) names of the built-in workloads, by the names tether gives them:
``tether bench --workload imdb_plugin`` and ``workload.plugin_name: imdb_plugin`` run the
built-in ``imdb`` unless a plugin is really called ``imdb_plugin``."""

WORKLOAD_METHODS = ("initialize", "setup", "cleanup", "execute_operation", "get_operation_types")

WORKLOAD_CONTRACT = Contract(
    "workload",
    "a load-test workload for tether bench: initialize(config), setup(db), cleanup(db), "
    "execute_operation(db, op), get_operation_types(); optionally get_info(), get_metrics(), "
    "get_connection_type(), reload_setup(db), and get_statements() with "
    "statement_parameters(op, count) for the multiplexed engine",
    required=WORKLOAD_METHODS,
    optional=(
        "get_info",
        "get_metrics",
        "get_connection_type",
        "reload_setup",
        "start",
        "stop",
        "get_statements",
        "statement_parameters",
    ),
    initialize_with="config",
    managed=("initialize", "start", "stop"),  # cleanup(db) is the host's to call
    host="tether bench",
    config_keys=("operation_weights",),  # the host resolves the weights, declared or not
)
"""The contract of ``provides: [workload]`` (the reference's WorkloadPlugin, in Python)."""


@runtime_checkable
class WorkloadProtocol(Protocol):
    """A workload plugin for ``tether bench`` (the reference's WorkloadPlugin, in Python).

    ``initialize`` receives the plugin's config (the ``plugin_config`` of the bench
    config, checked against the manifest's schema). ``db`` is a database connection
    the host owns. Every method may be ``async def``. ``get_info`` and
    ``get_metrics`` are optional, and so are ``get_statements()`` and
    ``statement_parameters(operation_type, count)`` (plain methods): a workload that
    declares its statements with them is run by the multiplexed engine, which sends
    the statements itself (``docs/workloads.md``).
    """

    def initialize(self, config: dict[str, object], /) -> Awaitable[None] | None: ...
    def setup(self, db: object, /) -> Awaitable[None] | None: ...
    def cleanup(self, db: object, /) -> Awaitable[None] | None: ...
    def execute_operation(self, db: object, operation_type: str, /) -> object: ...
    def get_operation_types(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """Which workload to run and its ``plugin_config``.

    ``path`` is the plugin's directory (or manifest); without one, the plugin is
    found by ``name`` through the search paths of ``framework_config``.
    ``config_source`` names where ``plugin_config`` came from, for error messages.
    """

    name: str
    path: Path | None = None
    config: Mapping[str, object] = field(default_factory=dict)
    origin: str = ""
    config_source: str | None = None


@dataclass(slots=True)
class LoadedWorkload:
    """A loaded, initialized workload plugin, with its handle and resolved weights."""

    spec: WorkloadSpec
    manager: PluginManager
    handle: PluginHandle
    operation: Operation
    version: str
    description: str
    location: str | None
    is_async: bool
    weights: dict[str, int]
    default_weights: dict[str, int]
    driver: str = "asyncpg"  # the clients' connections: one of _database.DRIVERS

    @property
    def name(self) -> str:
        return self.spec.name

    async def call(self, method: str, *args: object, blocking: bool = False) -> object:
        """Call an optional or required plugin method through its handle; await the result.

        ``blocking`` sync methods (those given a sync connection) run in a thread.
        A method the plugin does not have returns ``None``.
        """
        handle = self.handle
        if not handle.has(method):
            return None
        if blocking and not handle.entry(method).is_async:
            return await asyncio.to_thread(handle.call, method, *args)
        return await handle.acall(method, *args)

    async def info(self) -> dict[str, object]:
        """``get_info()`` (optional) as plain JSON data."""
        return _plain(await self.call("get_info"), self.name, "get_info")

    async def metrics(self) -> dict[str, object]:
        """``get_metrics()`` (optional) as plain JSON data."""
        return _plain(await self.call("get_metrics"), self.name, "get_metrics")

    async def aclose(self) -> None:
        await self.manager.aclose()


def _plain(value: object, plugin: str, method: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TetherError(
            f"workload '{plugin}': {method}() must return a dict, got {type(value).__name__}",
            plugin=plugin,
            hint=f"return a dict of JSON-able values from {method}()",
        )
    plain: dict[str, object] = json.loads(json.dumps(dict(value), default=str))
    return plain


async def open_workload(
    spec: WorkloadSpec,
    *,
    framework_config: TetherConfig | None = None,
    retry_attempts: int | None = None,
) -> LoadedWorkload:
    """Load and initialize the workload plugin ``spec`` names, beside the framework
    config's other plugins; resolve its weights.

    The workload is required whatever its entry says; another plugin whose entry says
    ``required: false`` and that fails to come up is left out
    (``workload.manager.failed_plugins()``). ``retry_attempts`` replaces every
    plugin's ``retries.attempts``.
    """
    config = with_workload(framework_config or TetherConfig(), spec)
    manager = PluginManager(config=config, retry_attempts=retry_attempts)
    manager.contracts.register(WORKLOAD_CONTRACT)
    try:
        return await _open(manager, spec)
    except BaseException:
        await manager.aclose()
        raise


def with_workload(framework: TetherConfig, spec: WorkloadSpec) -> TetherConfig:
    """``framework`` whose plugin entries are the bench's: its own (those it enables),
    and the workload's, with ``spec``'s path and ``plugin_config`` (over the config the
    workload's own entry gives, if it has one), required."""
    section = framework.plugins
    own = section.plugins if section.enabled else ()
    entry = next((e for e in own if _is_entry_of(framework, e, spec)), None)
    given = entry.config if entry is not None else {}
    update: dict[str, object] = {
        "name": spec.name,
        "config": {**given, **spec.config},
        "enabled": True,
        "required": True,
    }
    if spec.path is not None:
        update["path"] = str(Path(spec.path).resolve())
    workload = (entry or PluginConfig()).model_copy(update=update)
    entries = (*(e for e in own if e is not entry), workload)
    plugins = section.model_copy(update={"enabled": True, "plugins": entries})
    return framework.model_copy(update={"plugins": plugins})


def without_failed(framework: TetherConfig, failed: Iterable[FailedPlugin]) -> TetherConfig:
    """``framework`` with the entries of plugins that failed (by name or path) disabled."""
    names = {f.name for f in failed}
    places = {Path(f.path).resolve() for f in failed if f.path is not None}

    def is_failed(entry: PluginConfig) -> bool:
        if entry.name is not None:
            return entry.name in names
        place = (framework.base_directory / (entry.path or "")).resolve()
        return place in places or place.parent in places

    entries = tuple(
        e.model_copy(update={"enabled": False}) if is_failed(e) else e
        for e in framework.plugins.plugins
    )
    plugins = framework.plugins.model_copy(update={"plugins": entries})
    return framework.model_copy(update={"plugins": plugins})


def _is_entry_of(framework: TetherConfig, entry: PluginConfig, spec: WorkloadSpec) -> bool:
    if entry.name == spec.name:
        return True
    if entry.path is None or spec.path is None:
        return False
    place = (framework.base_directory / entry.path).resolve()
    return spec.path.resolve() in {place, place.parent}


async def _open(manager: PluginManager, spec: WorkloadSpec) -> LoadedWorkload:
    try:
        await manager.load_plugins_from_config()
    except ConfigError as exc:
        if exc.plugin != spec.name or isinstance(exc, WorkloadConfigError):
            raise
        where = f" in {spec.config_source}" if spec.config_source else ""
        raise WorkloadConfigError(
            str(exc),
            plugin=spec.name,
            problems=list(exc.problems),
            hint=f"fix workload.plugin_config{where}; `tether plugins info {spec.name}` "
            "lists each key, its type and default",
        ) from exc
    manifest = manager.get_manifest(spec.name)
    if "workload" not in manifest.provides:
        raise TetherError(
            f"plugin '{spec.name}' is not a workload plugin: its manifest does not say "
            "`provides: [workload]`",
            plugin=spec.name,
            path=manifest.source,
            hint="`tether workloads list` shows the workload plugins",
        )
    await manager.initialize_all()
    await manager.start_all()  # the contract's optional start(); stop() comes at close
    handle = manager.get_handle(spec.name)
    operation = handle.operation("execute_operation")
    workload = LoadedWorkload(
        spec=spec,
        manager=manager,
        handle=handle,
        operation=operation,
        version=manifest.version,
        description=manifest.description,
        location=manager.get_info(spec.name).path,
        is_async=operation.is_async,
        weights={},
        default_weights={},
    )
    wanted = await workload.call("get_connection_type")
    workload.driver = connection_driver(spec.name, is_async=operation.is_async, wanted=wanted)
    defaults = check_default_weights(spec.name, await workload.call("get_operation_types"))
    workload.default_weights = defaults
    workload.weights = resolve_weights(
        spec.name, defaults, spec.config.get("operation_weights"), source=spec.config_source
    )
    return workload


_CONNECTION_TYPES = ("asyncpg", "psycopg")


def connection_driver(plugin: str, *, is_async: bool, wanted: object) -> str:
    """The clients' driver: what ``get_connection_type()`` returned (``None``: not defined)
    with the kind of ``execute_operation``."""
    if wanted is None:
        return "asyncpg" if is_async else "psycopg"
    if wanted not in _CONNECTION_TYPES:
        raise TetherError(
            f"workload '{plugin}': get_connection_type() must return 'asyncpg' or 'psycopg', "
            f"got {wanted!r}",
            plugin=plugin,
            hint="return 'asyncpg' or 'psycopg' from get_connection_type(), or remove it",
        )
    if wanted == "psycopg":
        return "psycopg-async" if is_async else "psycopg"
    if not is_async:
        raise TetherError(
            f"workload '{plugin}': get_connection_type() returned 'asyncpg', but "
            "execute_operation is a plain function (asyncpg connections are async only)",
            plugin=plugin,
            hint="make execute_operation `async def`, or return 'psycopg'",
        )
    return "asyncpg"
