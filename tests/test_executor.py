"""The executor host (``tether.hosts.executor``): ``execute(input)`` of executor plugins,
through their handles: one manager with ``Executor``, or one shot with ``execute_once``."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest

from helpers import PluginWriter
from tether import PluginConfig, PluginManager, TetherConfig, blame
from tether.errors import CallTimeoutError, ContractError, PluginNotFoundError
from tether.hosts.executor import EXECUTOR_CONTRACT, Execution, Executor, execute_once


def asynctest(fn):
    """Run an ``async def`` test in a fresh event loop (there is no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


# Each plugin appends its lifecycle to the file its config names (when it names one).
RECORDING = """\
from pathlib import Path


class Recording:
    def record(self, what):
        log = self.config.get("log")
        if log:
            with Path(log).open("a", encoding="utf-8") as handle:
                handle.write(what + "\\n")

    def start(self):
        self.record("start")

    def stop(self):
        self.record("stop")

    def cleanup(self):
        self.record("cleanup")
"""

UPPER = """\
from .recording import Recording


class Plugin(Recording):
    def initialize(self, ctx):
        self.config = ctx.plugin_config
        self.record("initialize")

    def execute(self, data):
        self.record("execute")
        if data == "fail":
            raise ValueError("cannot shout that")
        return data.upper()
"""

ECHO = """\
import asyncio

from .recording import Recording


class Plugin(Recording):
    def initialize(self, ctx):
        self.config = ctx.plugin_config
        self.started = asyncio.Event()

    async def execute(self, data):
        self.started.set()
        if data == "hang":
            await asyncio.Event().wait()
        await asyncio.sleep(0)
        return {"echo": data}
"""

NOT_AN_EXECUTOR = """\
class Plugin:
    def __init__(self):
        self.executed = 0

    def initialize(self, ctx):
        pass

    def execute(self, data):
        self.executed += 1
        return data

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""

LOG_CONFIG = {"log": {"type": "string", "default": ""}}


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    return tmp_path / "plugins"


@pytest.fixture
def executor_plugin(plugins):
    write = PluginWriter(plugins)

    def make(name: str, code: str, **fields: object) -> Path:
        return write(
            name,
            code,
            provides=["executor"],
            config=LOG_CONFIG,
            files={"recording.py": RECORDING},
            **fields,
        )

    return make


async def bring_up(manager: PluginManager, *paths: Path, settings=None) -> None:
    for path in paths:
        await manager.load_plugin(path, settings)
    await manager.initialize_all()
    await manager.start_all()


# --------------------------------------------------------------------------- Executor


@asynctest
async def test_execute_runs_a_sync_executor_plugin(executor_plugin, tmp_path):
    path = executor_plugin("upper", UPPER)
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        executor = Executor(manager)
        await bring_up(manager, path)

        execution = await executor.execute("upper", "hello")

        assert isinstance(execution, Execution)
        assert (execution.plugin, execution.version, execution.output) == (
            "upper",
            "1.0.0",
            "HELLO",
        )
        assert execution.to_dict()["output"] == "HELLO"
        assert manager.get_contract("upper") is EXECUTOR_CONTRACT


@asynctest
async def test_execute_awaits_an_async_executor_plugin(executor_plugin, tmp_path):
    path = executor_plugin("echo", ECHO)
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        executor = Executor(manager)
        await bring_up(manager, path)

        execution = await executor.execute("echo", [1, 2])

        assert execution.output == {"echo": [1, 2]}
        assert manager.get_plugin("echo").started.is_set()


@asynctest
async def test_a_plugin_that_does_not_provide_executor_is_refused(plugins, tmp_path):
    path = PluginWriter(plugins)("plain", NOT_AN_EXECUTOR)
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        executor = Executor(manager)
        await bring_up(manager, path)

        with pytest.raises(ContractError) as caught:
            await executor.execute("plain", "data")

        assert caught.value.plugin == "plain"
        assert str(caught.value) == (
            "plugin 'plain' is not an executor plugin: its manifest does not say "
            "`provides: [executor]`"
        )
        assert manager.get_plugin("plain").executed == 0


@asynctest
async def test_executions_are_counted_in_the_handles_metrics_as_call_execute(
    executor_plugin, tmp_path
):
    path = executor_plugin("upper", UPPER)
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        executor = Executor(manager)
        await bring_up(manager, path)

        await executor.execute("upper", "a")
        await executor.execute("upper", "b")
        with pytest.raises(ValueError, match="cannot shout that") as caught:
            await executor.execute("upper", "fail")

        handle = manager.get_handle("upper")
        metrics = handle.metrics()["call:execute"]
        assert (metrics.calls, metrics.errors, metrics.by_version) == (3, 1, {"1.0.0": 3})
        assert handle.error_count == 1
        assert blame(caught.value) == "upper"


@pytest.mark.parametrize(
    ("manifest", "settings", "limit"),
    [({"call": 0.1}, None, "100ms"), ({}, {"timeouts": {"call": "150ms"}}, "150ms")],
    ids=["manifest", "config"],
)
@asynctest
async def test_an_async_execute_past_timeouts_call_times_out(
    executor_plugin, tmp_path, manifest, settings, limit
):
    path = executor_plugin("echo", ECHO, timeouts=manifest)
    async with PluginManager(state_directory=tmp_path / "state") as manager:
        executor = Executor(manager)
        await bring_up(manager, path, settings=settings)

        with pytest.raises(CallTimeoutError) as caught:
            await executor.execute("echo", "hang")

        assert str(caught.value) == (
            f"plugin execution timeout: plugin 'echo' did not finish call:execute within {limit}"
        )
        handle = manager.get_handle("echo")
        assert handle.error_count == 1
        assert handle.in_flight == 0
        assert (await executor.execute("echo", "next")).output == {"echo": "next"}


# --------------------------------------------------------------------------- execute_once


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@asynctest
async def test_execute_once_by_path_brings_the_plugin_up_runs_it_and_takes_it_down(
    executor_plugin, tmp_path
):
    path = executor_plugin("upper", UPPER)
    log = tmp_path / "lifecycle.log"

    execution = await execute_once(
        path,
        "once",
        settings=PluginConfig(config={"log": str(log)}),
        state_directory=tmp_path / "state",
    )

    assert (execution.plugin, execution.output) == ("upper", "ONCE")
    assert lines(log) == ["initialize", "start", "execute", "stop", "cleanup"]


@pytest.mark.parametrize("found", ["search-path", "config-entry"])
@asynctest
async def test_execute_once_by_name(executor_plugin, plugins, tmp_path, found):
    path = executor_plugin("upper", UPPER)
    log = tmp_path / "lifecycle.log"
    values = {"log": str(log)}
    if found == "search-path":  # the name is discovered; the settings given are used
        section: dict[str, object] = {"directory": str(plugins)}
        settings = PluginConfig(config=values)
    else:  # the config's own entry for the name, with its settings
        section = {"plugins": [{"name": "upper", "path": str(path), "config": values}]}
        settings = None
    config = TetherConfig.model_validate({"plugins": section})

    execution = await execute_once(
        "upper", "by name", config=config, settings=settings, state_directory=tmp_path / "state"
    )

    assert (execution.plugin, execution.output) == ("upper", "BY NAME")
    assert lines(log) == ["initialize", "start", "execute", "stop", "cleanup"]


@asynctest
async def test_execute_once_of_an_unknown_name_is_not_found(tmp_path):
    with pytest.raises(PluginNotFoundError, match="no plugin named 'nowhere'"):
        await execute_once("nowhere", None, state_directory=tmp_path / "state")


@asynctest
async def test_execute_once_of_a_plugin_that_is_not_an_executor_is_refused(plugins, tmp_path):
    path = PluginWriter(plugins)("plain", NOT_AN_EXECUTOR)
    with pytest.raises(ContractError, match="is not an executor plugin"):
        await execute_once(path, "data", state_directory=tmp_path / "state")
