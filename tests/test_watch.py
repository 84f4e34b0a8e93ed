"""PluginManager.watch: real plugin directories in tmp_path, a real manager, real saves.

Each test waits for what a save leads to (the live version's answer, a reload result)
by polling against a deadline; nothing sleeps and hopes. What the watcher ignores and
how it places an error are checked on their own, without a watch (``SourceFilter``,
``locate_error``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import PluginWriter, line_of
from tether import PluginManager, PluginWatcher, SyncPluginManager, TetherConfig
from tether._watch import SourceFilter, locate_error
from tether.errors import ConfigError, PluginNotFoundError, TetherError

ANSWERING = """
    import tether

    class Plugin(tether.Plugin):
        answer = "{answer}"
"""

FAILING_INIT = """
    import tether

    class Plugin(tether.Plugin):
        answer = "never"

        def initialize(self, ctx):
            raise RuntimeError("the new version cannot initialize")
"""

BROKEN = """
    import tether

    class Plugin(tether.Plugin):
        answer = "broken"
        def oops(:  # BROKEN
            pass
"""

DEADLINE = 30.0


def asynctest(fn):
    """Run an ``async def`` test in a fresh event loop (there is no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


async def until(condition: Callable[[], object], what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``DEADLINE`` seconds."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def save(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture
def plugin(tmp_path: Path) -> PluginWriter:
    return PluginWriter(tmp_path / "plugins")


async def running(tmp_path: Path, *directories: Path) -> PluginManager:
    manager = PluginManager(state_directory=tmp_path / "state", stop_timeout=5.0)
    for directory in directories:
        await manager.load_plugin(directory)
    await manager.initialize_all()
    await manager.start_all()
    return manager


def answer(manager: PluginManager, name: str = "greeter") -> object:
    return getattr(manager.get_plugin(name), "answer", None)


def watch_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tether.watch" and
            r.levelno == level]  # fmt: skip


# --------------------------------------------------------------------------- reloading on save


@asynctest
async def test_a_save_reloads_and_a_broken_save_rolls_back_with_one_line(plugin, tmp_path, caplog):
    directory = plugin("greeter", ANSWERING.format(answer="v1"))
    source = directory / "plugin.py"
    manager = await running(tmp_path, directory)
    caplog.set_level(logging.INFO, logger="tether.watch")
    try:
        watcher = await manager.watch(debounce=0.2)
        assert watcher.directories == {"greeter": directory.resolve()}

        save(source, ANSWERING.format(answer="v2"))
        await until(lambda: answer(manager) == "v2", "the saved version to go live")

        save(source, BROKEN)
        await until(lambda: len(watcher.results) == 2, "the broken save's reload")
        broken = watcher.results[-1]
        assert (broken.outcome, broken.step) == ("rolled_back", "import")
        assert answer(manager) == "v2"  # the old version keeps serving
        errors = watch_lines(caplog, logging.ERROR)
        assert len(errors) == 1, errors
        assert f"{source.resolve()}:{line_of(source, 'BROKEN')}" in errors[0]
        assert "version 1.0.0 keeps serving" in errors[0]

        save(source, ANSWERING.format(answer="v3"))
        await until(lambda: answer(manager) == "v3", "the fixed version to go live")
        assert [r.outcome for r in watcher.results] == ["reloaded", "rolled_back", "reloaded"]
        reloaded = [line for line in watch_lines(caplog, logging.INFO) if "after a change" in line]
        assert len(reloaded) == 2
        assert f"after a change to {source.resolve()}" in reloaded[0]
    finally:
        await manager.aclose()


@asynctest
async def test_a_burst_of_saves_makes_one_reload(plugin, tmp_path):
    directory = plugin("greeter", ANSWERING.format(answer="v1"))
    source = directory / "plugin.py"
    manager = await running(tmp_path, directory)
    try:
        watcher = await manager.watch(debounce=1.0)
        for number in range(5):  # further apart than watchfiles' own grouping (50 ms)
            save(source, ANSWERING.format(answer=f"burst-{number}"))
            await asyncio.sleep(0.1)
        await until(lambda: answer(manager) == "burst-4", "the burst's last save to go live")
        save(source, ANSWERING.format(answer="after"))  # a reload of a split burst comes first
        await until(lambda: answer(manager) == "after", "the next save to go live")
        assert [r.outcome for r in watcher.results] == ["reloaded", "reloaded"]
    finally:
        await manager.aclose()


@pytest.mark.parametrize("broken", ["manifest", "initialize"])
@asynctest
async def test_a_bad_manifest_or_failing_initialize_rolls_back_and_the_next_save_reloads(
    plugin, tmp_path, caplog, broken
):
    directory = plugin("greeter", ANSWERING.format(answer="v1"))
    manifest, source = directory / "plugin.json", directory / "plugin.py"
    manager = await running(tmp_path, directory)
    caplog.set_level(logging.INFO, logger="tether.watch")
    try:
        watcher = await manager.watch(debounce=0.2)
        good = manifest.read_text(encoding="utf-8")
        if broken == "manifest":
            fields = json.loads(good)
            fields["permissions"] = 5
            manifest.write_text(json.dumps(fields, indent=2), encoding="utf-8")
            place = f"plugin.json:{line_of(manifest, 'permissions')}"
        else:
            save(source, FAILING_INIT)
            place = str(source.resolve())
        await until(lambda: watcher.results, "the broken save's reload")
        assert watcher.results[-1].outcome == "rolled_back"
        assert answer(manager) == "v1"
        errors = watch_lines(caplog, logging.ERROR)
        assert len(errors) == 1, errors
        assert place in errors[0]

        manifest.write_text(good, encoding="utf-8")
        save(source, ANSWERING.format(answer="v2"))
        await until(lambda: answer(manager) == "v2", "the fixed version to go live")
        assert watcher.results[-1].outcome == "reloaded"
    finally:
        await manager.aclose()


@asynctest
async def test_each_plugin_reloads_for_its_own_files_only(plugin, tmp_path):
    first = plugin("greeter", ANSWERING.format(answer="g1"))
    second = plugin("other", ANSWERING.format(answer="o1"))
    manager = await running(tmp_path, first, second)
    try:
        watcher = await manager.watch("other", debounce=0.2)
        assert set(watcher.directories) == {"other"}
        save(first / "plugin.py", ANSWERING.format(answer="g2"))  # not watched
        save(second / "plugin.py", ANSWERING.format(answer="o2"))
        await until(lambda: answer(manager, "other") == "o2", "other's save to go live")
        assert [r.plugin for r in watcher.results] == ["other"]
        assert answer(manager, "greeter") == "g1"
    finally:
        await manager.aclose()


@asynctest
async def test_a_plugin_set_aside_at_start_comes_up_when_a_save_fixes_it(plugin, tmp_path, caplog):
    directory = plugin("late", FAILING_INIT)
    config = TetherConfig(plugins={"plugins": [{"path": str(directory), "required": False}]})
    manager = PluginManager(config=config, state_directory=tmp_path / "state")
    await manager.load_plugins_from_config()
    await manager.initialize_all()
    await manager.start_all()
    caplog.set_level(logging.INFO, logger="tether.watch")
    try:
        assert "late" in manager.failed_plugins()
        watcher = await manager.watch(debounce=0.2)
        assert set(watcher.directories) == {"late"}

        save(directory / "plugin.py", FAILING_INIT + "\n# still failing\n")
        await until(lambda: watcher.results, "the first save's reload")
        assert watcher.results[-1].outcome == "failed"
        errors = watch_lines(caplog, logging.ERROR)
        assert len(errors) == 1, errors
        assert "it stays set aside (not running), fix it and save again" in errors[0]

        save(directory / "plugin.py", ANSWERING.format(answer="up"))
        await until(lambda: len(watcher.results) == 2, "the fixing save's reload")
        assert watcher.results[-1].outcome == "reloaded"
        assert answer(manager, "late") == "up"
        assert "late" not in manager.failed_plugins()
    finally:
        await manager.aclose()


# --------------------------------------------------------------------------- starting, stopping


@asynctest
async def test_stop_ends_the_watch_and_aclose_stops_a_running_watcher(plugin, tmp_path):
    manager = await running(tmp_path, plugin("greeter", ANSWERING.format(answer="v1")))
    first = await manager.watch()
    second = await manager.watch()
    assert first.running
    assert second.running
    await first.stop()
    await first.stop()  # twice is fine
    assert not first.running
    await manager.aclose()
    assert not second.running


@asynctest
async def test_a_watcher_is_an_async_context_manager(plugin, tmp_path):
    directory = plugin("greeter", ANSWERING.format(answer="v1"))
    manager = await running(tmp_path, directory)
    try:
        async with PluginWatcher(manager, debounce=0.2) as watcher:
            assert watcher.running
            save(directory / "plugin.py", ANSWERING.format(answer="v2"))
            await until(lambda: answer(manager) == "v2", "the saved version to go live")
        assert not watcher.running
    finally:
        await manager.aclose()


def test_the_sync_facade_watches_on_its_loop_and_close_stops_it(plugin, tmp_path):
    directory = plugin("greeter", ANSWERING.format(answer="v1"))
    with SyncPluginManager(state_directory=tmp_path / "state") as manager:
        manager.load_plugin(directory)
        manager.initialize_all()
        manager.start_all()
        watcher = manager.watch(debounce=0.2)
        save(directory / "plugin.py", ANSWERING.format(answer="v2"))
        deadline = time.monotonic() + DEADLINE
        while getattr(manager.get_plugin("greeter"), "answer", None) != "v2":
            assert time.monotonic() < deadline, "timed out waiting for the saved version"
            time.sleep(0.02)
    assert not watcher.running


@asynctest
async def test_watch_refuses_what_it_cannot_watch(plugin, tmp_path):
    empty = PluginManager(state_directory=tmp_path / "empty")
    with pytest.raises(TetherError, match="nothing to watch: no plugin is loaded from a dir"):
        await empty.watch()
    await empty.aclose()
    manager = await running(tmp_path, plugin("greeter", ANSWERING.format(answer="v1")))
    try:
        with pytest.raises(PluginNotFoundError, match="plugin not found: 'greter'") as found:
            await manager.watch("greter")
        assert found.value.hint == "did you mean 'greeter'?"
        for debounce in (0, -1, float("nan"), float("inf"), 61, True):
            with pytest.raises(ConfigError, match="watch debounce must be a number of sec"):
                await manager.watch(debounce=debounce)
    finally:
        await manager.aclose()


# --------------------------------------------------------------------------- what counts, where


@pytest.mark.parametrize(
    ("relative", "is_source"),
    [
        ("plugin.py", True),
        ("plugin.json", True),
        ("templates/page.html", True),
        ("pkg/module.py", True),
        ("__pycache__/plugin.cpython-311.pyc", False),
        ("pkg/__pycache__/module.cpython-311.pyc", False),
        ("plugin.pyc", False),
        (".plugin.py.swp", False),
        ("plugin.py.swp", False),
        ("plugin.py~", False),
        ("plugin.py.bak", False),
        ("plugin.py.orig", False),
        ("plugin.py.tmp", False),
        ("#plugin.py#", False),
        (".#plugin.py", False),
        ("4913", False),
        ("plugin.py___jb_tmp___", False),
        (".git/index", False),
        (".mypy_cache/x.json", False),
        ("state/state.db", False),
    ],
)
def test_only_source_files_count_as_changes(tmp_path, relative, is_source):
    chosen = SourceFilter([tmp_path / "state"])
    assert chosen.is_source(tmp_path / relative) is is_source


@pytest.mark.parametrize(
    ("error", "place", "text"),
    [
        (
            "failed to import plugin 'p': SyntaxError: invalid syntax (/p/plugin.py, line 3)",
            "/p/plugin.py:3",
            "failed to import plugin 'p': SyntaxError: invalid syntax",
        ),
        (
            "invalid manifest p/plugin.json: bad value\n  - p/plugin.json:2 [permissions]: bad",
            "p/plugin.json:2",
            "invalid manifest p/plugin.json: bad value",
        ),
        (
            'RuntimeError: boom (File "/p/plugin.py", line 7, in initialize)',
            "/p/plugin.py:7",
            'RuntimeError: boom (File "/p/plugin.py", line 7, in initialize)',
        ),
        ("/p/plugin.yaml:4 [version]: not a version", "/p/plugin.yaml:4", None),
    ],
)
def test_an_error_is_placed_by_the_file_and_line_its_text_names(error, place, text):
    assert locate_error(error, []) == (place, text or error)


def test_an_error_without_a_place_is_placed_by_compiling_the_changed_files(tmp_path):
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text("x = 1\n", encoding="utf-8")
    bad.write_text("x = 1\ndef f(:\n", encoding="utf-8")
    assert locate_error("it broke", [good, bad]) == (f"{bad}:2", "it broke")
    assert locate_error("it broke", [good]) == (str(good), "it broke")
    assert locate_error("", [good, bad]) == (f"{bad}:2", "unknown error")
