"""Audit telemetry: in-process plugins that open files, connect sockets or start processes
without declaring ``filesystem``/``network``/``exec`` are recorded (never blocked).

The watch is process-wide, so every test names its plugins uniquely."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import datetime, timedelta

import pytest

import tether._audit
from helpers import PluginWriter
from tether import PluginManager, PluginStatus
from tether._audit import CapabilityUse, load_capability_uses

USER = """
import socket
import subprocess
import sys
from pathlib import Path

import tether


class Plugin(tether.Plugin):
    def start(self):
        config = self.ctx.plugin_config
        Path(config["file"]).write_text("written by the plugin", encoding="utf-8")
        with socket.create_connection(("127.0.0.1", config["port"]), timeout=5):
            pass
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    def touch(self, path):
        Path(path).write_text("again", encoding="utf-8")
"""

HOMEBODY = """
import importlib
from pathlib import Path

import tether

from . import helpers

HERE = Path(__file__).parent


class Plugin(tether.Plugin):
    def start(self):
        (HERE / "data.txt").write_text(helpers.GREETING, encoding="utf-8")
        assert (HERE / "data.txt").read_text(encoding="utf-8") == "hello"
        importlib.import_module(__package__ + ".lazy")  # an import at run time
"""

SCHEMA = {"file": {"type": "string"}, "port": {"type": "integer"}}
ALL = {"filesystem": True, "network": True, "exec": True}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def listener():
    """A loopback TCP listener the plugins connect to."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def write(tmp_path):
    return PluginWriter(tmp_path / "plugins")


def run_plugins(tmp_path, *plugins):
    """Load, initialize and start ``(path, config)`` pairs; return the manager's records."""

    async def main():
        manager = PluginManager(state_directory=tmp_path / "state")
        try:
            for path, config in plugins:
                await manager.load_plugin(path, {"config": config})
            await manager.initialize_all()
            await manager.start_all()
            return {
                info.name: (info.status, manager.undeclared_capabilities(info.name))
                for info in manager.list_plugins()
            }
        finally:
            await manager.aclose()

    return asyncio.run(main())


def by_capability(uses: list[CapabilityUse]) -> dict[str, CapabilityUse]:
    return {use.capability: use for use in uses}


def test_undeclared_files_sockets_and_processes_are_recorded_not_blocked(tmp_path, write, listener):
    name = unique("sneaky")
    target = tmp_path / "outside.txt"
    path = write(name, USER, config=SCHEMA)
    results = run_plugins(tmp_path, (path, {"file": str(target), "port": listener}))

    status, uses = results[name]
    assert status is PluginStatus.RUNNING  # nothing was blocked
    assert target.read_text(encoding="utf-8") == "written by the plugin"
    found = by_capability(uses)
    assert set(found) == {"filesystem", "network", "exec"}
    assert all(use.plugin == name and use.count >= 1 for use in uses)
    assert found["filesystem"].example == f"open {target}"
    assert found["exec"].example.startswith("subprocess.Popen ")
    assert found["network"].example.startswith("socket.")


def test_declared_capabilities_are_not_recorded(tmp_path, write, listener):
    name = unique("honest")
    path = write(name, USER, config=SCHEMA, permissions=ALL)
    results = run_plugins(tmp_path, (path, {"file": str(tmp_path / "ok.txt"), "port": listener}))
    status, uses = results[name]
    assert status is PluginStatus.RUNNING
    assert uses == []


def test_each_plugin_is_judged_by_its_own_declarations(tmp_path, write, listener):
    sneaky, honest = unique("sneaky"), unique("honest")
    results = run_plugins(
        tmp_path,
        (
            write(sneaky, USER, config=SCHEMA),
            {"file": str(tmp_path / "a.txt"), "port": listener},
        ),
        (
            write(honest, USER, config=SCHEMA, permissions=ALL),
            {"file": str(tmp_path / "b.txt"), "port": listener},
        ),
    )
    assert {use.capability for use in results[sneaky][1]} == {"filesystem", "network", "exec"}
    assert results[honest][1] == []


def test_own_files_and_imports_of_its_own_modules_are_not_counted(tmp_path, write):
    name = unique("homebody")
    path = write(
        name,
        HOMEBODY,
        files={"helpers.py": 'GREETING = "hello"\n', "lazy.py": "LOADED = True\n"},
    )
    results = run_plugins(tmp_path, (path, {}))
    status, uses = results[name]
    assert status is PluginStatus.RUNNING
    assert uses == []


def test_unload_saves_the_records_and_stops_attributing(tmp_path, write, listener):
    name = unique("gone")
    path = write(name, USER, config=SCHEMA)

    async def main():
        manager = PluginManager(state_directory=tmp_path / "state")
        await manager.load_plugin(path, {"config": {"file": str(tmp_path / "a"), "port": listener}})
        await manager.initialize_all()
        await manager.start_all()
        plugin = manager.get_plugin(name)
        running = by_capability(manager.undeclared_capabilities(name))
        await manager.unload_plugin(name)
        plugin.touch(tmp_path / "after-unload.txt")  # its code, no longer tracked
        after = manager.undeclared_capabilities(name)
        saved = by_capability(load_capability_uses(manager.runtime.state_store(), name))
        await manager.aclose()
        return running, after, saved

    running, after, saved = asyncio.run(main())
    assert running["filesystem"].count == 1
    assert after == []  # taken out of the watch...
    assert set(saved) == {"filesystem", "network", "exec"}  # ...and kept in the state store
    assert saved["filesystem"].count == 1
    assert saved["filesystem"].example == running["filesystem"].example


# --------------------------------------------------------------------------- accuracy


def test_first_seen_is_not_after_last_seen(tmp_path, write, listener, monkeypatch):
    class TickingClock(datetime):
        """Every reading is one second later than the one before."""

        ticks = 0

        @classmethod
        def now(cls, tz=None):
            cls.ticks += 1
            return datetime(2030, 1, 1, tzinfo=tz) + timedelta(seconds=cls.ticks)

    monkeypatch.setattr(tether._audit, "datetime", TickingClock)
    name = unique("sneaky")
    path = write(name, USER, config=SCHEMA)
    results = run_plugins(tmp_path, (path, {"file": str(tmp_path / "x.txt"), "port": listener}))
    uses = results[name][1]
    assert uses
    for use in uses:
        assert use.first_seen <= use.last_seen


def test_a_path_that_escapes_the_plugin_directory_is_recorded(tmp_path, write):
    name = unique("escaper")
    code = """
import os

import tether


class Plugin(tether.Plugin):
    def start(self):
        here = os.path.dirname(__file__)
        with open(os.path.join(here, "..", "..", "escaped.txt"), "w", encoding="utf-8") as f:
            f.write("outside")
"""
    results = run_plugins(tmp_path, (write(name, code), {}))
    assert (tmp_path / "escaped.txt").exists()
    assert {use.capability for use in results[name][1]} == {"filesystem"}


def test_framework_services_used_through_the_context_are_not_the_plugins_own_use(tmp_path, write):
    name = unique("storer")
    code = """
import tether


class Plugin(tether.Plugin):
    def start(self):
        self.ctx.plugin_storage.set("counter", 1)
"""
    results = run_plugins(tmp_path, (write(name, code), {}))
    assert results[name][1] == []


# --------------------------------------------------------------------------- known bugs


def test_a_plugin_loaded_through_a_symlink_is_still_watched(tmp_path, write, listener):
    name = unique("linked")
    real = write(name, USER, config=SCHEMA)
    link = tmp_path / "current"
    link.symlink_to(real, target_is_directory=True)
    results = run_plugins(tmp_path, (link, {"file": str(tmp_path / "x.txt"), "port": listener}))
    assert {use.capability for use in results[name][1]} == {"filesystem", "network", "exec"}
