"""Start-up: what ``import tether`` and ``tether --help`` import, and the lazy public API.

``tether`` and the hosts' packages import each public name on first use (PEP 562); the
command line imports a command's module when the command is used. These tests run
fresh interpreters and look at ``sys.modules``; they time nothing
(``benchmarks/startup.py`` does).
"""

from __future__ import annotations

import ast
import importlib
import json
import pickle
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import tether
import tether.hosts.web
import tether.hosts.workload
from tether.cli import cli
from tether.cli._app import LazyGroup

SRC = Path(__file__).resolve().parent.parent / "src"
HEAVY = ("pydantic", "rich", "asyncpg", "psycopg", "yaml", "asyncio", "starlette", "uvicorn")

PROBE = """\
import json, sys
{code}
heavy = {heavy!r}
print(json.dumps({{
    "heavy": sorted(m for m in heavy if m in sys.modules),
    "tether": sorted(m for m in sys.modules if m.startswith("tether")),
}}))
"""


def imported_by(code: str, *args: str) -> dict[str, list[str]]:
    """The heavy libraries and tether modules a fresh interpreter has after ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


# ------------------------------------------------------------------------ what each imports


def test_import_tether_imports_no_library_and_no_module_of_its_own():
    found = imported_by("import tether")
    assert found == {"heavy": [], "tether": ["tether", "tether._version"]}


def test_a_plugin_authors_first_names_import_no_library():
    found = imported_by("import tether\ntether.Plugin, tether.errors.TetherError")
    assert found["heavy"] == []
    assert "tether._manager" not in found["tether"]


def test_a_name_imports_its_module_only():
    found = imported_by("import tether\ntether.parse_duration")
    assert "tether._durations" in found["tether"]
    assert "tether._manager" not in found["tether"]


@pytest.mark.parametrize(
    "args",
    [["--help"], ["plugins", "--help"], ["config", "--help"], ["workloads", "--help"]],
    ids=" ".join,
)
def test_help_imports_click_and_the_command_tables_only(args):
    code = "from tether.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass"
    found = imported_by(code, *args)
    assert found["heavy"] == []
    commands = [m for m in found["tether"] if m.startswith("tether.cli.")]
    assert commands == ["tether.cli._app", "tether.cli._types"]


def test_bench_help_imports_its_options_only():
    """The most used command's help: its options and their defaults, not the host."""
    code = "from tether.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass"
    found = imported_by(code, "bench", "--help")
    assert found["heavy"] == []
    assert "tether.cli._bench_run" not in found["tether"]
    assert "tether.hosts.workload._settings" not in found["tether"]


def test_a_host_package_imports_nothing_until_a_name_is_used():
    found = imported_by("import tether.hosts.workload, tether.hosts.web")
    assert found["heavy"] == []
    assert [m for m in found["tether"] if m.startswith("tether.hosts.")] == [
        "tether.hosts.web",
        "tether.hosts.workload",
    ]


# --------------------------------------------------------------------------- the lazy API

LAZY_PACKAGES = [tether, tether.hosts.workload, tether.hosts.web]


def _type_checking_imports(module: object) -> dict[str, tuple[str, str]]:
    """What the ``if TYPE_CHECKING:`` block of a package imports: name -> (module, attr)."""
    source = Path(module.__file__).read_text(encoding="utf-8")  # type: ignore[attr-defined]
    found: dict[str, tuple[str, str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                for alias in statement.names:
                    name = alias.asname or alias.name
                    if statement.module == module.__name__:  # type: ignore[attr-defined]
                        found[name] = (f"{statement.module}.{alias.name}", "")
                    else:
                        found[name] = (str(statement.module), alias.name)
    return found


@pytest.mark.parametrize("package", LAZY_PACKAGES, ids=lambda p: p.__name__)
def test_what_type_checkers_see_is_what_runs(package):
    seen = _type_checking_imports(package)
    exports = dict(package._EXPORTS)
    assert seen == exports
    assert sorted(exports) == sorted(set(package.__all__) - {"__version__"})


@pytest.mark.parametrize("package", LAZY_PACKAGES, ids=lambda p: p.__name__)
def test_every_public_name_is_the_object_of_its_module(package):
    for name, (module_name, attribute) in package._EXPORTS.items():
        module = importlib.import_module(module_name)
        expected = getattr(module, attribute) if attribute else module
        assert getattr(package, name) is expected, name
    assert set(package.__all__) <= set(dir(package))


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match=r"module 'tether' has no attribute 'Plugn'"):
        _ = tether.Plugn  # type: ignore[attr-defined]
    assert not hasattr(tether.hosts.workload, "run_benchmark")


def test_objects_pickle_as_before_and_stay_the_same():
    status = pickle.loads(pickle.dumps(tether.PluginStatus.RUNNING))
    error = pickle.loads(pickle.dumps(tether.TetherError("boom", hint="fix it")))
    assert status is tether.PluginStatus.RUNNING
    assert type(error) is tether.TetherError
    assert str(error) == "boom"
    assert pickle.loads(pickle.dumps(tether.Manifest)) is tether.Manifest
    assert isinstance(error, tether.errors.TetherError)


# --------------------------------------------------------------------------- the command tables


def _lazy_groups() -> list[tuple[str, LazyGroup]]:
    context = click.Context(cli)
    groups = [("tether", cli)]
    for name in cli.list_commands(context):
        command = cli.get_command(context, name)
        if isinstance(command, LazyGroup):
            groups.append((f"tether {name}", command))
    return groups


@pytest.mark.parametrize(("label", "group"), _lazy_groups(), ids=str)
def test_each_short_help_in_a_table_is_the_commands_own(label, group):
    context = click.Context(group)
    for name, (_, short_help) in group.lazy.items():
        command = group.get_command(context, name)
        assert command is not None, f"{label} {name}"
        assert command.get_short_help_str(10**6) == short_help, f"{label} {name}"


@pytest.mark.parametrize("args", [["--help"], ["plugins", "--help"]], ids=" ".join)
def test_help_before_any_command_is_loaded_reads_as_after(args):
    code = "from tether.cli import main\nmain()"
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "100", "PATH": "", "PYTHONPATH": str(SRC)},
    )
    for _, group in _lazy_groups():  # every command of every table loaded here
        for name in group.lazy:
            group.get_command(click.Context(group), name)
    # on a 100-column terminal click lays help out in 98
    loaded = CliRunner().invoke(cli, args, prog_name="tether", terminal_width=98)
    assert done.returncode == 0, done.stderr
    assert done.stdout == loaded.output


def test_a_loaded_command_takes_config_after_its_name(tmp_path):
    config = tmp_path / "tether.yaml"
    config.write_text("plugins: {}\n", encoding="utf-8")
    group = LazyGroup("g", lazy={"list": ("tether.cli._workloads:workloads_list", "List.")})
    command = group.get_command(click.Context(group), "list")
    assert command is not None
    assert any("--config" in getattr(p, "opts", ()) for p in command.params)
    result = CliRunner().invoke(cli, ["config", "validate", "--config", str(config)])
    assert result.exit_code == 0, result.output
