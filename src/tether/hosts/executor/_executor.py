"""``Executor``: runs ``execute(input)`` of executor plugins through their handles."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from tether import Contract, PluginConfig, PluginManager, TetherConfig, describe_error
from tether.errors import CallError, ContractError

__all__ = ["EXECUTOR_CONTRACT", "Execution", "Executor", "ExecutorProtocol", "execute_once"]

EXECUTOR_CONTRACT = Contract(
    "executor",
    "an Execute-style plugin: initialize(ctx), then execute(input) -> output, sync or async",
    required=("initialize", "execute"),
    optional=("start", "stop", "cleanup"),
    host="tether plugins exec (tether.hosts.executor)",
)
"""The contract of ``provides: [executor]``."""


@runtime_checkable
class ExecutorProtocol(Protocol):
    """An executor plugin: ``execute`` takes the input and returns the output."""

    def execute(self, data: object, /) -> object | Awaitable[object]: ...


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution: the plugin, its version, what it returned and how long it took."""

    plugin: str
    version: str
    output: object
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {"plugin": self.plugin, "version": self.version, "output": self.output,
                "seconds": self.seconds}  # fmt: skip


class Executor:
    """The host of executor plugins: one per manager."""

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager
        manager.contracts.register(EXECUTOR_CONTRACT)

    def _check(self, name: str) -> None:
        if "executor" not in self.manager.get_manifest(name).provides:
            raise ContractError(
                f"plugin '{name}' is not an executor plugin: its manifest does not say "
                "`provides: [executor]`",
                plugin=name,
                hint="add `provides: [executor]` and an execute(input) method to the plugin",
            )

    async def execute(self, name: str, data: object) -> Execution:
        """Run ``execute(data)`` of the live version of plugin ``name``.

        An ``Exception`` the plugin raises reaches the caller as it is; any other
        ``BaseException`` it raises (``SystemExit``, a ``BaseException`` subclass of its
        own, a ``CancelledError`` nobody asked for) is a ``CallError`` naming the plugin,
        with the original as its ``__cause__``, so it cannot end the host. A real
        interrupt (exactly ``KeyboardInterrupt``), a cancellation of the caller's task
        and ``GeneratorExit`` pass through.
        """
        self._check(name)
        handle = self.manager.get_handle(name)
        started = time.perf_counter()
        try:
            output = await handle.acall("execute", data)
        except Exception:
            raise
        except BaseException as exc:
            if _is_interruption(exc):
                raise
            raise CallError(
                f"plugin '{name}' failed: execute() raised {describe_error(exc)}",
                plugin=name,
                hint="a plugin reports a failure with an Exception; a BaseException "
                "such as SystemExit would end its host",
            ) from exc
        return Execution(name, handle.version or "", output, time.perf_counter() - started)


def _is_interruption(error: BaseException) -> bool:
    """Whether ``error`` is the interpreter's or the event loop's rather than a plugin's:
    a real Ctrl-C, this task being cancelled, a coroutine being closed."""
    if type(error) is KeyboardInterrupt or type(error) is GeneratorExit:
        return True
    if isinstance(error, asyncio.CancelledError):
        task = asyncio.current_task()
        return task is None or task.cancelling() > 0
    return False


async def execute_once(
    target: str | Path,
    data: object,
    *,
    config: TetherConfig | None = None,
    settings: PluginConfig | None = None,
    state_directory: str | Path | None = None,
) -> Execution:
    """Load one executor plugin (a directory, or a name found through the search paths
    and the config's entries), bring it up, run it once on ``data``, take it down."""
    framework = config or TetherConfig()
    path = _existing(target)
    manager = PluginManager(config=framework, state_directory=state_directory)
    executor = Executor(manager)
    try:
        if path is not None:
            name = (await manager.load_plugin(path, settings)).name
        else:
            name = str(target)
            await manager.load_plugins_from_config(_only(framework, name, settings))
        await manager.initialize_all()
        await manager.start_all()
        return await executor.execute(name, data)
    finally:
        await manager.aclose()


def _existing(target: str | Path) -> Path | None:
    path = Path(target)
    return path if path.exists() else None


def _only(config: TetherConfig, name: str, settings: PluginConfig | None) -> TetherConfig:
    """``config`` with one plugin entry: the config's own for ``name``, or a bare one."""
    entry = config.entry(name) or settings or PluginConfig(name=name)
    if entry.name is None:
        entry = entry.model_copy(update={"name": name})
    plugins = config.plugins.model_copy(update={"plugins": (entry,)})
    return config.model_copy(update={"plugins": plugins})
