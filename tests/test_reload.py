"""Hot reload in the manager: real plugin directories rewritten between reloads.

Each test loads a plugin from ``tmp_path``, rewrites its files (a new version, or a broken
one), calls ``reload_plugin`` and checks what runs afterwards, what was recorded, and that
nothing of a version that went is left behind. The HTTP side (``tether serve`` under load)
is tests/test_reload_serve.py's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import textwrap
import threading
import weakref
from pathlib import Path

import pytest

from tether import PluginManager, PluginStatus, ReloadConfig, SyncPluginManager, TetherConfig
from tether._loader import loaded_namespaces
from tether.errors import ConfigError, PluginLifecycleError, PluginUnavailableError

GREETER = """
import tether

class Plugin(tether.Plugin):
    def initialize(self, ctx):
        self.ctx = ctx
        self.seen = []
        ctx.export_service("greeting", Greeting("{word}"))
        ctx.subscribe_event("poke", lambda event: self.seen.append("{word}"))

    def hello(self):
        return "{word}"

    def export_state(self):
        return {{"from": "{word}", "seen": len(self.seen)}}

    def import_state(self, state):
        self.ctx.plugin_storage.set("handed", state)

class Greeting:
    def __init__(self, word):
        self.word = word

    def say(self):
        return self.word
"""

FAN = """
import tether

class Plugin(tether.Plugin):
    def initialize(self, ctx):
        self.greeting = ctx.import_service("greeter", "greeting")

    def relay(self):
        return self.greeting.say()
"""


def write(directory: Path, version: str, code: str, **fields: object) -> Path:
    """Write (or overwrite) a plugin directory: plugin.json and plugin.py."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": directory.name,
        "version": version,
        "description": "a plugin the reload tests rewrite",
        "author": "tests",
        "entry": "plugin:Plugin",
        **fields,
    }
    (directory / "plugin.json").write_text(json.dumps(manifest), encoding="utf-8")
    (directory / "plugin.py").write_text(textwrap.dedent(code), encoding="utf-8")
    return directory


def greeter(root: Path, version: str = "1.0.0", word: str = "one") -> Path:
    return write(root / "greeter", version, GREETER.format(word=word))


def run(coro_fn):
    return asyncio.run(coro_fn())


async def started(tmp_path: Path, *dirs: Path, **config: object) -> PluginManager:
    manager = PluginManager(
        config=TetherConfig(**config) if config else None, state_directory=tmp_path / "state"
    )
    for directory in dirs:
        await manager.load_plugin(directory)
    await manager.initialize_all()
    await manager.start_all()
    return manager


def namespaces(name: str) -> list[str]:
    return [n for n in loaded_namespaces() if n.rpartition(".")[2].startswith(f"{name}_")]


# --------------------------------------------------------------------------- the happy path


def test_reload_switches_every_way_in_to_the_new_version(tmp_path):
    async def scenario():
        root = tmp_path / "plugins"
        fan = write(
            root / "fan", "1.0.0", FAN, dependencies=[{"name": "greeter", "version": "^1.0.0"}]
        )
        manager = await started(tmp_path, greeter(root), fan)
        handle = manager.get_handle("greeter")
        hello = handle.operation("hello")
        relay = manager.get_handle("fan").operation("relay")
        assert (hello.call(), relay.call()) == ("one", "one")
        greeter(root, "1.1.0", "two")
        result = await manager.reload_plugin("greeter", config=ReloadConfig(grace_period=0))
        await manager.runtime.events.publish("poke")
        await asyncio.sleep(0.05)
        plugin = manager.get_plugin("greeter")
        try:
            assert result.outcome == "reloaded", result
            assert (result.from_version, result.to_version, result.step) == ("1.0.0", "1.1.0", None)
            assert (hello.call(), relay.call(), handle.version) == ("two", "two", "1.1.0")
            assert plugin.seen == ["two"]  # the old subscription is gone, the new one live
            assert manager.get_status("fan") is PluginStatus.RUNNING  # dependents not reloaded
            stored = manager.get_context("greeter").plugin_storage.get("handed")
            assert stored == {"from": "one", "seen": 0}  # export_state -> import_state
            assert len(namespaces("greeter")) == 1  # grace period 0: the old code went at once
            assert [r.outcome for r in manager.reload_history("greeter")] == ["reloaded"]
        finally:
            await manager.aclose()

    run(scenario)


def test_grace_period_keeps_the_previous_version_then_lets_it_go(tmp_path):
    async def scenario():
        manager = await started(tmp_path, greeter(tmp_path / "plugins"))
        greeter(tmp_path / "plugins", "1.1.0", "two")
        await manager.reload_plugin("greeter", config=ReloadConfig(grace_period=0.3))
        try:
            kept = len(namespaces("greeter"))
            during = manager.in_grace_period("greeter")
            for _ in range(100):
                if not manager.in_grace_period("greeter"):
                    break
                await asyncio.sleep(0.05)
            assert (kept, during) == (2, True)
            assert not manager.in_grace_period("greeter")
            assert len(namespaces("greeter")) == 1
            assert [v.version for v in manager._slot("greeter").versions] == ["1.1.0"]
        finally:
            await manager.aclose()
        assert namespaces("greeter") == []

    run(scenario)


# --------------------------------------------------------------------------- failures roll back

BROKEN = {
    "manifest": lambda d: (d / "plugin.json").write_text('{"name": "greeter", "version": 2}'),
    "import": lambda d: (d / "plugin.py").write_text("def broken(:\n    pass\n"),
    "import-error": lambda d: (d / "plugin.py").write_text("import no_such_module_anywhere\n"),
    "initialize": lambda d: write(d, "1.1.0", """
        import tether
        class Plugin(tether.Plugin):
            def initialize(self, ctx):
                ctx.plugin_storage.set("migrated", True)
                ctx.plugin_storage.set("counter", 99)
                raise RuntimeError("initialize refuses")
        """),
    "start": lambda d: write(d, "1.1.0", """
        import tether
        class Plugin(tether.Plugin):
            def start(self):
                raise RuntimeError("start refuses")
        """),
    "config": lambda d: write(d, "1.1.0", GREETER.format(word="x"),
                              config={"needed": {"type": "string", "required": True}}),
}  # fmt: skip
STEPS = {"import-error": "import"}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_new_version_rolls_back_and_the_old_one_answers(tmp_path, kind):
    async def scenario():
        directory = greeter(tmp_path / "plugins")
        manager = await started(tmp_path, directory)
        manager.get_context("greeter").plugin_storage.set("counter", 1)
        hello = manager.get_handle("greeter").operation("hello")
        BROKEN[kind](directory)
        result = await manager.reload_plugin("greeter")
        try:
            assert result.outcome == "rolled_back", result
            assert result.step == STEPS.get(kind, kind)
            assert result.error
            assert hello.call() == "one"
            assert manager.get_status("greeter") is PluginStatus.RUNNING
            storage = manager.get_context("greeter").plugin_storage
            assert storage.get("counter") == 1
            assert storage.get("migrated", None) is None
            if kind == "initialize":
                assert result.discarded_writes == 2
            assert len(namespaces("greeter")) == 1
        finally:
            await manager.aclose()

    run(scenario)


def test_a_new_version_a_dependent_does_not_accept_is_refused_before_anything_stops(tmp_path):
    async def scenario():
        root = tmp_path / "plugins"
        fan = write(
            root / "fan", "1.0.0", FAN, dependencies=[{"name": "greeter", "version": "^1.0.0"}]
        )
        manager = await started(tmp_path, greeter(root), fan)
        greeter(root, "2.0.0", "two")
        stops = manager._slot("greeter").gate.refused_total
        result = await manager.reload_plugin("greeter")
        try:
            assert (result.outcome, result.step) == ("rolled_back", "dependencies")
            assert "'fan' requires 'greeter' ^1.0.0, found 2.0.0" in result.error
            assert manager.get_handle("fan").call("relay") == "one"
            assert manager._slot("greeter").gate.refused_total == stops
        finally:
            await manager.aclose()

    run(scenario)


def test_when_the_previous_version_cannot_start_again_the_plugin_fails_naming_both(tmp_path):
    async def scenario():
        directory = write(tmp_path / "plugins" / "flaky", "1.0.0", """
            import tether
            STARTS = []
            class Plugin(tether.Plugin):
                def start(self):
                    STARTS.append(1)
                    if len(STARTS) > 1:
                        raise RuntimeError("old start refuses the second time")
            """)  # fmt: skip
        manager = await started(tmp_path, directory)
        write(directory, "1.1.0", """
            import tether
            class Plugin(tether.Plugin):
                def start(self):
                    raise RuntimeError("new start refuses")
            """)  # fmt: skip
        result = await manager.reload_plugin("flaky")
        try:
            assert result.outcome == "failed"
            assert "new start refuses" in result.error
            assert "old start refuses the second time" in result.error
            assert manager.get_status("flaky") is PluginStatus.ERROR
            with pytest.raises(PluginUnavailableError):
                manager.get_handle("flaky").call("start")
        finally:
            await manager.aclose()

    run(scenario)


# --------------------------------------------------------------------------- the grace period


def test_a_version_that_trips_its_error_threshold_in_the_grace_period_rolls_back(tmp_path):
    async def scenario():
        directory = greeter(tmp_path / "plugins")
        config = {"plugins": {"error_threshold": {"max_errors": 3, "time_window": "1m"}}}
        manager = await started(tmp_path, directory, **config)
        write(directory, "1.1.0", """
            import tether
            class Plugin(tether.Plugin):
                def hello(self):
                    raise RuntimeError("v1.1.0 is broken")
            """)  # fmt: skip
        result = await manager.reload_plugin("greeter", config=ReloadConfig(grace_period=30))
        handle = manager.get_handle("greeter")
        failures = 0
        answer = None
        try:
            assert result.outcome == "reloaded"
            for _ in range(200):
                try:
                    answer = await asyncio.to_thread(handle.call, "hello")
                    break
                except RuntimeError:
                    failures += 1
                await asyncio.sleep(0.01)
            assert answer == "one"
            assert failures == 3
            history = manager.reload_history("greeter")
            assert [(r.outcome, r.step) for r in history] == [
                ("rolled_back", "grace"), ("reloaded", None)
            ]  # fmt: skip
            assert "error threshold" in history[0].error
            assert manager.get_info("greeter").enabled
        finally:
            await manager.aclose()

    run(scenario)


def test_a_failing_health_check_in_the_grace_period_rolls_back(tmp_path):
    async def scenario():
        directory = greeter(tmp_path / "plugins")
        manager = await started(tmp_path, directory)
        write(directory, "1.1.0", """
            import tether
            class Plugin(tether.Plugin):
                def health_check(self):
                    raise RuntimeError("database gone")
                def hello(self):
                    return "two"
            """)  # fmt: skip
        await manager.reload_plugin("greeter", config=ReloadConfig(grace_period=5))
        try:
            for _ in range(200):
                if manager.get_handle("greeter").version == "1.0.0":
                    break
                await asyncio.sleep(0.02)
            assert manager.get_handle("greeter").call("hello") == "one"
            latest = manager.reload_history("greeter")[0]
            assert (latest.outcome, latest.step) == ("rolled_back", "grace")
            assert "database gone" in latest.error
        finally:
            await manager.aclose()

    run(scenario)


def test_a_new_reload_ends_the_grace_period_first(tmp_path):
    async def scenario():
        directory = greeter(tmp_path / "plugins")
        manager = await started(tmp_path, directory)
        try:
            for n, word in enumerate(["two", "three", "four"], start=1):
                greeter(tmp_path / "plugins", f"1.{n}.0", word)
                result = await manager.reload_plugin("greeter")
                assert result.outcome == "reloaded"
                assert len(namespaces("greeter")) == 2  # the live one and the one before
            assert manager.get_handle("greeter").call("hello") == "four"
        finally:
            await manager.aclose()

    run(scenario)


# --------------------------------------------------------------------------- holding calls


SLOW_START = """
import threading
import weakref
import tether

class Plugin(tether.Plugin):
    def start(self):
        threading.Event().wait({delay})

    def hello(self):
        return "{word}"
"""


async def _until_held(handle) -> None:
    for _ in range(1000):
        if handle.state.value != "open":
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the gate never held")


def _callers(handle, count: int) -> tuple[list[object], list[threading.Thread]]:
    answers: list[object] = []

    def call():
        try:
            answers.append(handle.call("hello"))
        except PluginUnavailableError as exc:
            answers.append(exc)

    threads = [threading.Thread(target=call) for _ in range(count)]
    return answers, threads


@pytest.mark.parametrize("strategy", ["block", "reject"])
def test_calls_during_the_swap_wait_for_the_new_version_or_are_refused(tmp_path, strategy):
    async def scenario():
        directory = write(tmp_path / "plugins" / "slow", "1.0.0",
                          SLOW_START.format(delay=0, word="one"))  # fmt: skip
        manager = await started(tmp_path, directory)
        handle = manager.get_handle("slow")
        write(directory, "1.1.0", SLOW_START.format(delay=0.5, word="two"))
        answers, threads = _callers(handle, 5)
        reload = asyncio.create_task(
            manager.reload_plugin("slow", config=ReloadConfig(strategy=strategy))
        )
        await _until_held(handle)
        for thread in threads:
            thread.start()
        result = await reload
        for thread in threads:
            await asyncio.to_thread(thread.join, 10)
        try:
            assert result.outcome == "reloaded"
            if strategy == "block":
                assert answers == ["two"] * 5
                assert (result.held, result.rejected) == (5, 0)
            else:
                assert all(isinstance(a, PluginUnavailableError) for a in answers)
                assert "reloading" in str(answers[0])
                assert (result.held, result.rejected) == (0, 5)
        finally:
            await manager.aclose()

    run(scenario)


def test_held_calls_past_the_queue_limits_are_refused(tmp_path):
    async def scenario():
        directory = write(tmp_path / "plugins" / "slow", "1.0.0",
                          SLOW_START.format(delay=0, word="one"))  # fmt: skip
        manager = await started(tmp_path, directory)
        handle = manager.get_handle("slow")
        write(directory, "1.1.0", SLOW_START.format(delay=1.0, word="two"))
        answers, threads = _callers(handle, 4)
        config = ReloadConfig(max_queue_size=2, queue_timeout=0.2)
        reload = asyncio.create_task(manager.reload_plugin("slow", config=config))
        await _until_held(handle)
        for thread in threads:
            thread.start()
        result = await reload
        for thread in threads:
            await asyncio.to_thread(thread.join, 10)
        try:
            texts = sorted(str(a) for a in answers)
            assert len(texts) == 4
            assert sum("already queued" in t for t in texts) == 2  # beyond max_queue_size
            assert sum("exceeded queue timeout" in t for t in texts) == 2  # held past 0.2s
            assert result.rejected == 4
            assert handle.call("hello") == "two"
        finally:
            await manager.aclose()

    run(scenario)


# --------------------------------------------------------------------------- leaks


def test_many_reloads_leave_no_module_task_or_thread_of_old_versions(tmp_path):
    code = """
        import asyncio
        import threading
        import tether

        class Plugin(tether.Plugin):
            async def start(self):
                self.stop_flag = threading.Event()
                self.task = asyncio.get_running_loop().create_task(self.forever())
                self.thread = threading.Thread(target=self.stop_flag.wait, name="v{n}-worker")
                self.thread.start()

            async def stop(self):
                self.stop_flag.set()

            async def forever(self):
                await asyncio.sleep(3600)

            def hello(self):
                return {n}
        """

    async def scenario():
        directory = write(tmp_path / "plugins" / "busy", "1.0.0", code.format(n=0))
        manager = await started(tmp_path, directory)
        try:
            for n in range(1, 21):
                write(directory, f"1.0.{n}", code.format(n=n))
                result = await manager.reload_plugin("busy", config=ReloadConfig(grace_period=0))
                assert result.outcome == "reloaded", result
            assert manager.get_handle("busy").call("hello") == 20
            await asyncio.sleep(0.05)
            assert len(namespaces("busy")) == 1
            modules = [m for m in sys.modules if m.startswith("_tether_plugins.busy_")]
            assert all(m.startswith(namespaces("busy")[0]) for m in modules)
            sleepers = [t for t in asyncio.all_tasks() if "forever" in repr(t.get_coro())]
            assert len(sleepers) == 1  # the live version's task only
            workers = [t.name for t in threading.enumerate() if t.name.endswith("-worker")]
            assert workers == ["v20-worker"]
            assert len(manager._slot("busy").gate.doors) == 1
        finally:
            await manager.aclose()

    run(scenario)


# --------------------------------------------------------------------------- rollback later


def test_rollback_after_the_grace_period_restores_the_kept_copy(tmp_path):
    async def scenario():
        directory = greeter(tmp_path / "plugins")
        manager = await started(tmp_path, directory)
        try:
            with pytest.raises(PluginLifecycleError, match="no previous version is kept"):
                await manager.rollback_plugin("greeter")
            greeter(tmp_path / "plugins", "1.1.0", "two")
            await manager.reload_plugin("greeter", config=ReloadConfig(grace_period=0))
            result = await manager.rollback_plugin("greeter")
            assert (result.kind, result.outcome) == ("rollback", "rolled_back")
            assert (result.from_version, result.to_version) == ("1.1.0", "1.0.0")
            assert manager.get_handle("greeter").call("hello") == "one"
            assert (directory / "plugin.py").read_text().count('"two"') >= 1  # files untouched
            assert manager.get_info("greeter").path.startswith(str(tmp_path / "state"))
            # and forward again from the plugin's own directory
            again = await manager.reload_plugin("greeter", config=ReloadConfig(grace_period=0))
            assert (again.to_version, manager.get_handle("greeter").call("hello")) == (
                "1.1.0", "two"
            )  # fmt: skip
        finally:
            await manager.aclose()

    run(scenario)


def test_rollback_within_the_grace_period_uses_the_version_in_memory(tmp_path):
    async def scenario():
        directory = greeter(tmp_path / "plugins")
        manager = await started(tmp_path, directory)
        try:
            greeter(tmp_path / "plugins", "1.1.0", "two")
            await manager.reload_plugin("greeter")
            imported = len(manager.load_attempts)
            result = await manager.rollback_plugin("greeter")
            assert (result.outcome, result.step, result.to_version) == (
                "rolled_back",
                None,
                "1.0.0",
            )
            assert manager.get_handle("greeter").call("hello") == "one"
            assert len(manager.load_attempts) == imported  # nothing imported again
        finally:
            await manager.aclose()

    run(scenario)


# --------------------------------------------------------------------------- refusals, facade


def test_reload_refuses_what_it_cannot_do_and_bad_settings_by_name(tmp_path):
    async def scenario():
        manager = await started(tmp_path, greeter(tmp_path / "plugins"))
        try:
            await manager.disable_plugin("greeter", reason="maintenance")
            with pytest.raises(PluginLifecycleError, match=r"it is disabled \(maintenance\)"):
                await manager.reload_plugin("greeter")
            await manager.enable_plugin("greeter")
            await manager.stop_all()
            with pytest.raises(PluginLifecycleError, match="only a running plugin"):
                await manager.reload_plugin("greeter")
        finally:
            await manager.aclose()

    run(scenario)
    with pytest.raises(ConfigError, match="strategy"):
        ReloadConfig(strategy="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown field 'queue_timout'") as typo:
        ReloadConfig.from_mapping({"queue_timout": 3})
    assert typo.value.hint == "did you mean 'queue_timeout'?"
    with pytest.raises(ConfigError, match="max_queue_size"):
        ReloadConfig.from_mapping({"max_queue_size": 0})
    assert ReloadConfig.from_mapping({"queue_timeout": "250ms"}).queue_timeout == 0.25


def test_the_sync_facade_reloads_and_listeners_hear_every_outcome(tmp_path):
    directory = greeter(tmp_path / "plugins")
    heard = []
    with SyncPluginManager(state_directory=tmp_path / "state") as manager:
        manager.load_plugin(directory)
        manager.initialize_all()
        manager.start_all()
        manager.on_reload(heard.append)
        greeter(tmp_path / "plugins", "1.1.0", "two")
        first = manager.reload_plugin("greeter")
        (directory / "plugin.py").write_text("syntax error here(\n")
        second = manager.reload_plugin("greeter")
        assert manager.get_handle("greeter").call("hello") == "two"
        rows = manager.reload_history("greeter")
    assert [r.outcome for r in heard] == ["reloaded", "rolled_back"]
    assert heard == [first, second]
    assert [(r.outcome, r.step) for r in rows] == [("rolled_back", "import"), ("reloaded", None)]
    assert "plugin.py, line 1" in second.error


def test_nothing_of_a_retired_version_stays_reachable(tmp_path):
    async def scenario():
        root = tmp_path / "plugins"
        fan = write(root / "fan", "1.0.0", FAN, dependencies=[{"name": "greeter"}])
        manager = await started(tmp_path, greeter(root), fan)
        try:
            old = weakref.ref(manager.get_plugin("greeter"))
            old_module = weakref.ref(sys.modules[type(old()).__module__])
            greeter(root, "1.1.0", "two")
            await manager.reload_plugin("greeter", config=ReloadConfig(grace_period=0))
            assert manager.get_handle("fan").call("relay") == "two"
            gc.collect()
            assert old() is None
            assert old_module() is None
        finally:
            await manager.aclose()

    run(scenario)


def test_a_plugin_set_aside_at_start_comes_up_when_reloaded_after_a_fix(tmp_path):
    async def scenario():
        directory = write(tmp_path / "plugins" / "late", "1.0.0", """
            import tether
            class Plugin(tether.Plugin):
                def initialize(self, ctx):
                    raise RuntimeError("not configured yet")
            """)  # fmt: skip
        config = TetherConfig(plugins={"plugins": [{"path": str(directory), "required": False}]})
        manager = PluginManager(config=config, state_directory=tmp_path / "state")
        await manager.load_plugins_from_config()
        await manager.initialize_all()
        await manager.start_all()
        try:
            assert "late" in manager.failed_plugins()
            still = await manager.reload_plugin("late")
            assert (still.outcome, still.step) == ("failed", "initialize")
            assert "not configured yet" in still.error
            assert manager.failed_plugins()["late"].step == "initialize"
            write(
                directory,
                "1.0.1",
                "import tether\nclass Plugin(tether.Plugin):\n"
                "    def hi(self):\n        return 'up'\n",
            )
            fixed = await manager.reload_plugin("late")
            assert (fixed.outcome, fixed.to_version) == ("reloaded", "1.0.1")
            assert manager.get_handle("late").call("hi") == "up"
            assert "late" not in manager.failed_plugins()
        finally:
            await manager.aclose()

    run(scenario)


def test_a_save_within_the_same_second_runs_the_new_source(tmp_path, monkeypatch):
    """Python trusts a cached .pyc whose source has the same size and whole-second mtime;
    plugin modules are compiled from source, so two such saves still differ."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)

    async def scenario():
        directory = greeter(tmp_path / "plugins", word="aaa")
        source = directory / "plugin.py"
        manager = await started(tmp_path, directory)
        try:
            stamp = source.stat()
            greeter(tmp_path / "plugins", word="bbb")
            os.utime(source, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
            assert source.stat().st_size == stamp.st_size
            result = await manager.reload_plugin("greeter", config=ReloadConfig(grace_period=0))
            assert result.outcome == "reloaded"
            assert manager.get_handle("greeter").call("hello") == "bbb"
            assert not (directory / "__pycache__").exists()
        finally:
            await manager.aclose()

    run(scenario)
