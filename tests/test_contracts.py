"""Contracts: what a host accepts from a plugin, registered by hosts as data.

The core's own ``plugin`` contract, the hosts' contracts found through the
``tether.contracts`` entry points (workload, web and executor are installed by this
project's pyproject), refusals of unknown and disagreeing contracts and of entry
objects that lack a method, a test host registering a contract of its own, and a
check that the core has no special case for any host.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import PluginWriter
from tether import PLUGIN_CONTRACT, Contract, ContractRegistry, PluginManager, PluginStatus
from tether.errors import ContractError, InterfaceError
from tether.types import LIFECYCLE_METHODS

SRC = Path(__file__).resolve().parent.parent / "src" / "tether"

INSTALLED = {
    "workload": "tether.hosts.workload:WORKLOAD_CONTRACT",
    "web": "tether.hosts.web:WEB_CONTRACT",
    "executor": "tether.hosts.executor:EXECUTOR_CONTRACT",
}


def asynctest(fn):
    """Run an ``async def`` test in a fresh event loop (there is no pytest-asyncio here)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return run


def contract_object(reference: str) -> Contract:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


@pytest.fixture
def plugin(tmp_path: Path) -> PluginWriter:
    return PluginWriter(tmp_path / "plugins")


@pytest.fixture
def manager(tmp_path: Path):
    manager = PluginManager(state_directory=tmp_path / "state")
    yield manager
    asyncio.run(manager.aclose())


LIFECYCLE = """\
class Plugin:
    def initialize(self, ctx):
        self.ctx = ctx

    def start(self):
        pass

    def stop(self):
        pass

    def cleanup(self):
        pass
"""


# --------------------------------------------------------------------------- the plugin contract


def test_the_core_knows_the_plugin_contract_without_any_host():
    registry = ContractRegistry(entry_points=False)

    assert registry.get("plugin") is PLUGIN_CONTRACT
    assert [c.name for c in registry.all()] == ["plugin"]
    assert PLUGIN_CONTRACT.required == LIFECYCLE_METHODS
    assert PLUGIN_CONTRACT.managed == LIFECYCLE_METHODS
    assert PLUGIN_CONTRACT.initialize_with == "context"


def test_a_plugin_that_provides_nothing_fulfils_the_plugin_contract(plugin, manager):
    asyncio.run(manager.load_plugin(plugin("plain", LIFECYCLE)))

    assert manager.get_contract("plain") is PLUGIN_CONTRACT
    assert ContractRegistry().resolve("plain", []) is PLUGIN_CONTRACT


# --------------------------------------------------------------------------- entry points


@pytest.mark.parametrize("name", list(INSTALLED))
def test_an_installed_hosts_contract_is_found_by_its_entry_point(name):
    registry = ContractRegistry()

    assert registry.get(name) is contract_object(INSTALLED[name])
    assert {c.name for c in registry.all()} == {"plugin", *INSTALLED}


def test_without_entry_points_the_hosts_contracts_are_unknown():
    with pytest.raises(ContractError, match="unknown contract 'web'"):
        ContractRegistry(entry_points=False).get("web")


LAZY = """\
import json
import sys

from tether import ContractRegistry


def hosts():
    return sorted({m.split(".")[2] for m in sys.modules if m.startswith("tether.hosts.")})


before = hosts()
registry = ContractRegistry()
made = hosts()
registry.get(sys.argv[1])
after_get = hosts()
registry.all()
print(json.dumps({"before": before, "made": made, "get": after_get, "all": hosts()}))
"""


@pytest.mark.parametrize("name", list(INSTALLED))
def test_entry_point_contracts_load_lazily_by_name(tmp_path, name):
    script = tmp_path / "lazy.py"
    script.write_text(LAZY, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), name],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)

    assert imported["before"] == []  # importing tether imports no host
    assert imported["made"] == []  # nor does making a registry
    assert imported["get"] == [name]  # asking for one contract imports its host only
    assert imported["all"] == sorted(INSTALLED)  # listing them all imports every host


# --------------------------------------------------------------------------- refusals


@asynctest
async def test_an_unknown_provides_name_is_a_contract_error_with_a_suggestion(plugin, tmp_path):
    path = plugin("typo", LIFECYCLE, provides=["exector"])
    manager = PluginManager(state_directory=tmp_path / "state")
    try:
        with pytest.raises(ContractError) as caught:
            await manager.load_plugin(path)
        assert not manager.is_loaded("typo")
    finally:
        await manager.aclose()

    error = caught.value
    assert str(error) == (
        "plugin 'typo': unknown contract 'exector' (did you mean 'executor'?): "
        "no host registered it"
    )
    assert error.plugin == "typo"
    assert "known contracts: executor, plugin, web, workload" in error.hint


def test_a_name_close_to_nothing_gets_no_suggestion():
    with pytest.raises(ContractError) as caught:
        ContractRegistry().get("zzz")
    assert str(caught.value) == "unknown contract 'zzz': no host registered it"


@asynctest
async def test_contracts_that_disagree_on_what_initialize_receives_are_refused(plugin, tmp_path):
    assert contract_object(INSTALLED["workload"]).initialize_with == "config"
    assert contract_object(INSTALLED["executor"]).initialize_with == "context"
    path = plugin("both", LIFECYCLE, provides=["workload", "executor"])
    manager = PluginManager(state_directory=tmp_path / "state")
    try:
        with pytest.raises(ContractError) as caught:
            await manager.load_plugin(path)
        assert not manager.is_loaded("both")
    finally:
        await manager.aclose()

    assert str(caught.value) == (
        "plugin 'both' provides contracts that disagree on what initialize() receives: "
        "workload (config), executor (context)"
    )
    assert caught.value.plugin == "both"


def test_contracts_that_agree_combine_their_methods_and_let_the_manager_call_the_common_ones():
    registry = ContractRegistry()
    registry.register(
        Contract(
            "audited",
            "keeps an audit trail",
            required=("initialize", "audit"),
            managed=("initialize", "start", "stop"),
        )
    )

    combined = registry.resolve("p", ["executor", "audited"])

    assert combined.name == "executor+audited"
    assert combined.required == ("initialize", "execute", "audit")
    assert combined.managed == ("initialize", "start", "stop")  # cleanup is the host's


def test_two_different_contracts_under_one_name_are_refused():
    registry = ContractRegistry(entry_points=False)
    registry.register(Contract("greeter", "says hello", required=("greet",)))
    registry.register(Contract("greeter", "says hello", required=("greet",)))  # equal: fine

    with pytest.raises(ContractError, match="two different contracts are registered as"):
        registry.register(Contract("greeter", "says goodbye", required=("part",)))


def test_only_contracts_can_be_registered():
    with pytest.raises(ContractError, match="not a contract"):
        ContractRegistry().register({"name": "greeter"})  # type: ignore[arg-type]


@asynctest
async def test_an_entry_object_without_a_required_method_is_an_interface_error(plugin, tmp_path):
    path = plugin("lazy", LIFECYCLE, provides=["executor"])  # no execute()
    manager = PluginManager(state_directory=tmp_path / "state")
    try:
        with pytest.raises(InterfaceError) as caught:
            await manager.load_plugin(path)
        assert not manager.is_loaded("lazy")
    finally:
        await manager.aclose()

    error = caught.value
    assert error.plugin == "lazy"
    assert error.contract == "executor"
    assert error.missing == "execute"
    assert str(error) == "plugin does not implement required interface: missing method execute"
    assert error.hint == (
        "'plugin:Plugin' (plugin 'lazy') must provide every method of the 'executor' "
        "contract: initialize, execute"
    )


# --------------------------------------------------------------------------- a host's own contract

GREETER_CONTRACT = Contract(
    "greeter",
    "a test host's plugin: initialize(config), then greet(name)",
    required=("initialize", "greet"),
    optional=("start", "stop", "cleanup"),
    initialize_with="config",
    managed=("initialize", "start", "stop"),
    host="the tests",
)

GREETER = """\
class Plugin:
    def __init__(self):
        self.calls = []
        self.received = None

    def initialize(self, config):
        self.calls.append("initialize")
        self.received = config

    def greet(self, name):
        return f"{self.received['greeting']}, {name}"

    def start(self):
        self.calls.append("start")

    def stop(self):
        self.calls.append("stop")

    def cleanup(self):
        self.calls.append("cleanup")
"""

GREETER_CONFIG = {"greeting": {"type": "string", "default": "hello"}}


@asynctest
async def test_a_plugin_providing_a_contract_no_host_registered_is_refused(plugin, tmp_path):
    path = plugin("greeter", GREETER, provides=["greeter"], config=GREETER_CONFIG)
    manager = PluginManager(state_directory=tmp_path / "state")
    try:
        with pytest.raises(ContractError, match="unknown contract 'greeter'"):
            await manager.load_plugin(path)
    finally:
        await manager.aclose()


@asynctest
async def test_a_host_registers_its_own_contract_and_its_plugins_load(plugin, tmp_path):
    path = plugin("greeter", GREETER, provides=["greeter"], config=GREETER_CONFIG)
    manager = PluginManager(state_directory=tmp_path / "state")
    manager.contracts.register(GREETER_CONTRACT)
    try:
        await manager.load_plugin(path, {"config": {"greeting": "hi"}})
        await manager.initialize_all()
        await manager.start_all()
        instance = manager.get_plugin("greeter")

        assert manager.get_contract("greeter") is GREETER_CONTRACT
        assert manager.get_status("greeter") is PluginStatus.RUNNING
        assert instance.received == {"greeting": "hi"}  # the config, not a context
        assert type(instance.received) is dict
        assert manager.get_handle("greeter").call("greet", "ada") == "hi, ada"

        await manager.unload_plugin("greeter")
        assert instance.calls == ["initialize", "start", "stop"]  # cleanup is the host's
    finally:
        await manager.aclose()


# --------------------------------------------------------------------------- no host in the core

# The core is every module of src/tether except the hosts themselves, the command line
# (whose `bench` command is the workload host's front end) and the bundled workload
# plugins (plugin directories the loader imports, not part of the core).
NOT_CORE = ("hosts", "cli", "builtin")
WORD = re.compile("workload", re.IGNORECASE)


def _core_modules() -> list[Path]:
    return sorted(
        path
        for path in SRC.rglob("*.py")
        if path.relative_to(SRC).parts[0] not in NOT_CORE and "__pycache__" not in path.parts
    )


def _documentation(tree: ast.Module) -> set[int]:
    """The string constants that document (docstrings, and bare strings after names)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }


_SPELLED: tuple[tuple[type[ast.AST], Callable[[Any], list[str]]], ...] = (
    (ast.Name, lambda node: [node.id]),
    (ast.Attribute, lambda node: [node.attr]),
    (ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, lambda node: [node.name]),
    (ast.arg, lambda node: [node.arg]),
    (ast.alias, lambda node: [node.name, node.asname or ""]),
    (ast.ImportFrom, lambda node: [node.module or ""]),
    (ast.keyword, lambda node: [node.arg or ""]),
)


def _names(node: ast.AST) -> list[str]:
    """The identifiers a node spells out in code."""
    for kind, spell in _SPELLED:
        if isinstance(node, kind):
            return spell(node)
    return []


def _mentions(*, strings: bool) -> list[str]:
    found = []
    for path in _core_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        documentation = _documentation(tree)
        for node in ast.walk(tree):
            if strings:
                texts = (
                    [node.value]
                    if isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in documentation
                    else []
                )
            else:
                texts = _names(node)
            found.extend(
                f"{path.relative_to(SRC)}:{node.lineno}: {text!r}"
                for text in texts
                if WORD.search(text)
            )
    return found


def test_the_core_modules_are_found():
    names = {str(path.relative_to(SRC)) for path in _core_modules()}
    assert {"_manager.py", "_contracts.py", "_loader.py", "_seam.py"} <= names
    assert not any(name.startswith(NOT_CORE) for name in names)


def test_no_core_module_names_a_workload_in_its_code():
    assert _mentions(strings=False) == []


def test_no_core_module_spells_workload_in_a_string_outside_its_documentation():
    assert _mentions(strings=True) == []
