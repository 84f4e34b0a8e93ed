"""Review 8 fixes beyond its reproducers: a plugin's odd exception text, its own config
checks (plain or async), sealed views that refuse to be copied, a state directory given
as a string, and ``plugins validate`` on an isolation level tether cannot give."""

from __future__ import annotations

import asyncio
import copy
import pickle

import pytest
from click.testing import CliRunner

import tether
from helpers import PluginWriter
from tether import PluginManager
from tether.cli import cli
from tether.errors import ConfigError
from tether.testing import PluginHarness

BASE = """
class Plugin:
    def initialize(self, ctx):
        self.ctx = ctx
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass
"""

CHECKED = (
    BASE
    + """
    async def validate_config(self, config):
        await __import__("asyncio").sleep(0)
        if config.get("size", 0) > 10:
            raise ValueError("size must be at most 10")
"""
)

SCHEMA = {"size": {"type": "integer", "default": 1}}


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


def test_error_text_never_raises_and_names_what_it_could_not_show():
    assert tether.error_text(ValueError("plain")) == "plain"
    text = tether.error_text(_UnprintableError())
    assert isinstance(text, str)
    assert "_UnprintableError" in text
    assert tether.describe_error(_UnprintableError()).startswith("_UnprintableError")


def test_an_async_validate_config_refuses_a_config_update_and_keeps_the_old_one(tmp_path):
    path = PluginWriter(tmp_path / "plugins")("sized", CHECKED, config=SCHEMA)

    async def main() -> None:
        manager = PluginManager(state_directory=tmp_path / "state")
        await manager.load_plugin(path, {"config": {"size": 3}})
        await manager.initialize_all()
        await manager.start_all()
        with pytest.raises(ConfigError, match=r"sized.*size must be at most 10"):
            await manager.update_plugin_config("sized", {"size": 11})
        assert manager.get_context("sized").plugin_config["size"] == 3
        await manager.update_plugin_config("sized", {"size": 9})
        assert manager.get_context("sized").plugin_config["size"] == 9
        await manager.aclose()

    asyncio.run(main())


def test_an_async_validate_config_refuses_the_load(tmp_path):
    path = PluginWriter(tmp_path / "plugins")("sized", CHECKED, config=SCHEMA)

    async def main() -> None:
        manager = PluginManager(state_directory=tmp_path / "state")
        with pytest.raises(ConfigError, match="plugin 'sized'") as caught:
            await manager.load_plugin(path, {"config": {"size": 50}})
        assert isinstance(caught.value.__cause__, ValueError)
        assert not manager.is_loaded("sized")
        await manager.aclose()

    asyncio.run(main())


def test_a_state_directory_given_as_a_string_is_used(tmp_path):
    code = (
        BASE
        + """
    def save(self):
        self.ctx.plugin_storage.set("k", "v")
"""
    )
    path = PluginWriter(tmp_path / "plugins")("saver", code)
    state = tmp_path / "as-a-string"

    async def main() -> None:
        manager = PluginManager(state_directory=str(state))
        await manager.load_plugin(path)
        await manager.initialize_all()
        manager.get_plugin("saver").save()  # type: ignore[attr-defined]
        assert manager.runtime.state_directory == state
        await manager.aclose()

    asyncio.run(main())
    assert state.is_dir()
    assert any(state.rglob("*"))


@pytest.mark.parametrize(
    "attempt",
    [copy.copy, copy.deepcopy, pickle.dumps],
    ids=["copy", "deepcopy", "pickle"],
)
def test_a_plugin_context_refuses_to_be_copied_by_name(tmp_path, attempt):
    path = PluginWriter(tmp_path / "plugins")("holder", BASE)
    with PluginHarness(path) as harness:
        ctx = harness.manager.get_plugin("holder").ctx  # type: ignore[attr-defined]
        with pytest.raises(TypeError, match="cannot be copied or pickled"):
            attempt(ctx)
        # the original still works
        assert ctx.name == "holder"


def test_plugins_validate_reports_a_worker_program_without_process_isolation(tmp_path):
    write = PluginWriter(tmp_path / "plugins")
    isolated = write("isolated", BASE, command=["node", "plugin.js"])
    fine = write("fine", BASE, isolation="process")

    result = CliRunner().invoke(cli, ["plugins", "validate", str(isolated), str(fine)])

    output = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "runs in a worker process of its own: add `isolation: process`" in output
    assert "1 problem(s)" in output
    assert output.count("✓") == 1  # the other plugin is valid


@pytest.mark.parametrize(
    ("item", "value"),
    [
        ("suffix=!", "!"),
        ("mark=#1", "#1"),
        ("anchor=&a", "&a"),
        ("nothing=", None),
        ("nothing=~", None),
        ("nothing=null", None),
        ("count=10", 10),
        ("tags=[a, b]", ["a", "b"]),
    ],
)
def test_a_set_value_yaml_reads_as_nothing_is_kept_as_its_text(item, value):
    from tether.cli._shared import parse_settings

    key = item.partition("=")[0]
    assert parse_settings([item]) == {key: value}


def test_plugins_info_takes_a_plugin_directory_too(tmp_path):
    path = PluginWriter(tmp_path / "plugins")("described", BASE)

    by_path = CliRunner().invoke(cli, ["plugins", "info", str(path)])
    by_name = CliRunner().invoke(cli, ["--plugin-path", str(tmp_path / "plugins"), "plugins",
                                       "info", "described"])  # fmt: skip
    missing = CliRunner().invoke(cli, ["plugins", "info", str(tmp_path / "nope")])

    assert by_path.exit_code == 0, by_path.output
    assert by_path.output.startswith("described 1.0.0")
    assert "the described test plugin" in by_path.output
    assert by_name.exit_code == 0, by_name.output
    assert by_name.output.splitlines()[1:] == by_path.output.splitlines()[1:]
    assert missing.exit_code == 1
    assert "no plugin directory at" in missing.output
