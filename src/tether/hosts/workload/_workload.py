"""Loading a workload plugin and calling into it through its gate.

A workload is any plugin whose manifest says ``provides: [workload]``. This module
loads one into a fresh :class:`tether.PluginManager`, initializes it with its
``plugin_config``, and decides which kind of connection its clients get: if
``execute_operation`` (looked up after ``initialize``) is ``async def``, an asyncpg
connection; otherwise a psycopg connection, one thread per client.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tether import PluginConfig, PluginManager, TetherConfig
from tether.errors import ConfigError, TetherError
from tether.hosts.workload._errors import WorkloadConfigError
from tether.hosts.workload._weights import check_default_weights, resolve_weights

__all__ = ["GateLike", "LoadedWorkload", "WorkloadSpec", "open_workload"]


class GateLike(Protocol):
    """What the runner uses of a plugin's gate (``PluginManager.get_gate``)."""

    @property
    def is_open(self) -> bool: ...
    @property
    def calls(self) -> _Calls: ...
    def enter(self) -> None: ...
    def exit(self) -> None: ...
    async def enter_async(self) -> None: ...
    def record_error(self, error: BaseException, *, source: str = ...) -> None: ...


class _Calls(Protocol):
    def append(self, item: None, /) -> None: ...
    def pop(self) -> None: ...


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
    """A loaded, initialized workload plugin, with its gate and resolved weights."""

    spec: WorkloadSpec
    manager: PluginManager
    instance: object
    gate: GateLike
    version: str
    description: str
    location: str | None
    is_async: bool
    weights: dict[str, int]
    default_weights: dict[str, int]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def driver(self) -> str:
        return "asyncpg" if self.is_async else "psycopg"

    async def call(self, method: str, *args: object, blocking: bool = False) -> object:
        """Call an optional or required plugin method through the gate; await its result.

        ``blocking`` sync methods (those given a sync connection) run in a thread.
        A method the plugin does not have returns ``None``.
        """
        fn = getattr(self.instance, method, None)
        if fn is None:
            return None
        await self.gate.enter_async()
        try:
            if blocking and not inspect.iscoroutinefunction(fn):
                result = await asyncio.to_thread(fn, *args)
            else:
                result = fn(*args)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            if isinstance(exc, Exception):
                self.gate.record_error(exc, source=method)
            raise
        finally:
            self.gate.exit()
        return result

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
    spec: WorkloadSpec, *, framework_config: TetherConfig | None = None
) -> LoadedWorkload:
    """Load and initialize the workload plugin ``spec`` names; resolve its weights."""
    manager = PluginManager(config=framework_config or TetherConfig())
    try:
        return await _open(manager, spec)
    except BaseException:
        await manager.aclose()
        raise


async def _open(manager: PluginManager, spec: WorkloadSpec) -> LoadedWorkload:
    settings = PluginConfig(name=spec.name, config=dict(spec.config))
    try:
        if spec.path is not None:
            await manager.load_plugin(spec.path, settings)
        else:
            listed = TetherConfig.model_validate(
                {"plugins": {"plugins": [settings.model_dump(exclude_none=True)]}}
            )
            await manager.load_plugins_from_config(listed)
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
    instance = manager.get_plugin(spec.name)
    gate: GateLike = manager.get_gate(spec.name)
    execute = getattr(instance, "execute_operation", None)
    workload = LoadedWorkload(
        spec=spec,
        manager=manager,
        instance=instance,
        gate=gate,
        version=manifest.version,
        description=manifest.description,
        location=manager.get_info(spec.name).path,
        is_async=inspect.iscoroutinefunction(execute),
        weights={},
        default_weights={},
    )
    defaults = check_default_weights(spec.name, await workload.call("get_operation_types"))
    workload.default_weights = defaults
    workload.weights = resolve_weights(
        spec.name, defaults, spec.config.get("operation_weights"), source=spec.config_source
    )
    return workload
