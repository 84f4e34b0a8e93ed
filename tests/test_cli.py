"""The CLI through click's runner: output, exit codes and error display."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from tether.cli import cli


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def app(tmp_path: Path, examples_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example application in tmp_path, used as the working directory."""
    shutil.copytree(examples_dir, tmp_path / "app")
    monkeypatch.chdir(tmp_path / "app")
    return tmp_path / "app"


def write_plugin(root: Path, name: str, body: str = "", **fields: str) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    module = name.replace("-", "_")
    lines = [
        f"name: {name}",
        f"version: {fields.pop('version', '1.0.0')}",
        "description: test plugin",
        "author: tests",
        f"entry: {module}:Plugin",
        *(f"{k}: {v}" for k, v in fields.items()),
    ]
    (directory / "plugin.yaml").write_text("\n".join(lines) + "\n")
    code = body or (
        "class Plugin:\n"
        "    def initialize(self, ctx): pass\n"
        "    def start(self): pass\n"
        "    def stop(self): pass\n"
        "    def cleanup(self): pass\n"
    )
    (directory / f"{module}.py").write_text(code)
    return directory


def test_help_lists_every_group() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("plugins", "config", "demo"):
        assert command in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["plugins", "frobnicate"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_list_shows_discovered_plugins_as_json(app: Path) -> None:
    result = run("plugins", "list", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    names = {p["name"] for p in data["plugins"] if p["origin"] != "builtin"}
    assert names == {
        "auth-plugin",
        "cache-plugin",
        "logging-plugin",
        "rate-limit-plugin",
        "user-plugin",
        "word-count-plugin",
    }
    user = next(p for p in data["plugins"] if p["name"] == "user-plugin")
    assert user["dependencies"] == ["auth-plugin", "logging-plugin"]
    assert user["origin"] == "cwd"


def test_list_honours_plugin_path_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_plugin(tmp_path / "a", "alpha")
    write_plugin(tmp_path / "b", "beta")
    monkeypatch.setenv("TETHER_PLUGIN_PATH", str(tmp_path / "b"))
    result = run("--plugin-path", str(tmp_path / "a"), "plugins", "list", "--json")
    plugins = json.loads(result.output)["plugins"]
    origins = {p["name"]: p["origin"] for p in plugins if p["origin"] != "builtin"}
    assert origins == {"alpha": "cli", "beta": "env"}


def test_scan_reports_invalid_manifests_with_reasons(tmp_path: Path) -> None:
    good = write_plugin(tmp_path / "plugins", "good")
    bad = tmp_path / "plugins" / "bad"
    bad.mkdir()
    (bad / "plugin.yaml").write_text("name: bad\nversion: one\n")
    result = run("--plugin-path", str(good.parent), "plugins", "scan")
    assert result.exit_code == 0
    assert "good 1.0.0" in result.output
    assert "invalid version format: must be semantic version (X.Y.Z)" in result.output
    assert "missing required field: description" in result.output


def test_scan_reports_name_conflicts(tmp_path: Path) -> None:
    write_plugin(tmp_path / "one", "twin")
    write_plugin(tmp_path / "two", "twin")
    result = run(
        "--plugin-path", str(tmp_path / "one"), "--plugin-path", str(tmp_path / "two"),
        "plugins", "scan",
    )  # fmt: skip
    assert "plugin name conflict: twin already loaded from" in result.output
    assert str(tmp_path / "one" / "twin") in result.output
    assert str(tmp_path / "two" / "twin") in result.output


def test_info_shows_dependencies_and_config(app: Path) -> None:
    result = run("--config", "app.yaml", "plugins", "info", "auth-plugin")
    assert result.exit_code == 0
    assert "cache-plugin >=1.0.0: found 1.2.0" in result.output
    assert "token_ttl" in result.output
    assert "granted by config: cache, config" in result.output


def test_info_unknown_plugin_suggests_a_name(app: Path) -> None:
    result = run("plugins", "info", "auth-plugn")
    assert result.exit_code == 1
    assert "Error: plugin not found: 'auth-plugn'" in result.output
    assert "did you mean 'auth-plugin'?" in result.output


def test_validate_lists_every_problem_and_fails(tmp_path: Path, examples_dir: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "plugin.yaml").write_text(
        "name: bad\nversion: 1.0\ndescription: d\nauthor: a\nentry: m:P\n"
        "permissions:\n  custom_permission: true\n"
    )
    result = run("plugins", "validate", str(examples_dir / "plugins" / "cache-plugin"), str(bad))
    assert result.exit_code == 1
    assert "cache-plugin 1.2.0" in result.output
    assert f"{bad / 'plugin.yaml'}:2 [version]: invalid version format" in result.output
    assert "[permissions.custom_permission]: unknown permission: custom_permission" in result.output
    assert "Error: 1 of 2 manifest(s) invalid" in result.output


def test_graph_text_and_dot(app: Path) -> None:
    text = run("--config", "app.yaml", "plugins", "graph")
    assert "load order: logging-plugin -> cache-plugin -> auth-plugin -> user-plugin" in text.output
    dot = run("--config", "app.yaml", "plugins", "graph", "--format", "dot")
    assert dot.output.startswith("digraph plugins {")
    assert '"auth-plugin" -> "cache-plugin";' in dot.output
    assert '"user-plugin" -> "logging-plugin" [style=dashed, label="optional"];' in dot.output


def test_graph_reports_a_cycle(tmp_path: Path) -> None:
    write_plugin(tmp_path, "a", dependencies="[{name: b}]")
    write_plugin(tmp_path, "b", dependencies="[{name: a}]")
    result = run("--plugin-path", str(tmp_path), "plugins", "graph")
    assert "circular dependency detected: a -> b -> a" in result.output
    assert result.exit_code == 1


def test_plugin_test_runs_every_step(app: Path) -> None:
    result = run("--config", "app.yaml", "plugins", "test", "plugins/user-plugin")
    assert result.exit_code == 0, result.output
    for step in ("load dependency cache-plugin", "load dependency auth-plugin", "initialize",
                 "start", "stop", "cleanup"):  # fmt: skip
        assert step in result.output


def test_plugin_test_fails_when_start_raises(tmp_path: Path) -> None:
    body = (
        "class Plugin:\n"
        "    def initialize(self, ctx): pass\n"
        "    def start(self): raise RuntimeError('no socket')\n"
        "    def stop(self): pass\n"
        "    def cleanup(self): pass\n"
    )
    plugin = write_plugin(tmp_path, "broken", body)
    result = run("plugins", "test", str(plugin))
    assert result.exit_code == 1
    assert "RuntimeError: no socket" in result.output
    assert "Error: plugin 'broken' failed its test" in result.output


def test_plugin_test_passes_set_values(tmp_path: Path) -> None:
    body = (
        "class Plugin:\n"
        "    def initialize(self, ctx):\n"
        "        if ctx.plugin_config['port'] != 8080: raise ValueError('port')\n"
        "    def start(self): pass\n"
        "    def stop(self): pass\n"
        "    def cleanup(self): pass\n"
    )
    plugin = write_plugin(tmp_path, "porty", body, config="{port: {type: integer, required: true}}")
    assert run("plugins", "test", str(plugin), "--set", "port=8080").exit_code == 0
    failed = run("plugins", "test", str(plugin), "--set", "port=http")
    assert "configuration 'port' must be an integer, got str" in failed.output


def test_plugins_list_wraps_a_long_location_instead_of_cutting_it(tmp_path: Path) -> None:
    root = tmp_path / ("a-directory-with-a-rather-long-name" * 2)
    write_plugin(root, "porter")
    result = run("--plugin-path", str(root), "plugins", "list", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    header, *rows = result.stdout.splitlines()
    start = header.index("location")
    column = "".join(row[start:].strip() for row in rows)
    assert column.startswith(str(root / "porter"))


def test_plugin_test_takes_a_name_found_in_the_search_paths(tmp_path: Path) -> None:
    write_plugin(tmp_path / "installed", "porter")
    found = run("--plugin-path", str(tmp_path / "installed"), "plugins", "test", "porter")
    assert found.exit_code == 0, found.output
    assert found.stdout.startswith("porter 1.0.0\n")
    missing = run("--plugin-path", str(tmp_path / "installed"), "plugins", "test", "porterr")
    assert missing.exit_code == 1
    assert missing.stderr == "Error: plugin not found: 'porterr'\nHint: did you mean 'porter'?\n"
    not_there = run("plugins", "test", str(tmp_path / "porter"))  # a path: a usage error
    assert not_there.exit_code == 2
    assert "Invalid value for 'NAME|PATH'" in not_there.stderr


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
def test_new_scaffold_validates_and_its_test_passes(tmp_path: Path, fmt: str) -> None:
    result = run("plugins", "new", "rate-limit", "--dir", str(tmp_path), "--format", fmt)
    assert result.exit_code == 0, result.output
    created = tmp_path / "rate-limit"
    assert (created / f"plugin.{fmt}").is_file()
    assert run("plugins", "validate", str(created)).exit_code == 0
    assert run("plugins", "test", str(created)).exit_code == 0
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(created)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert test.returncode == 0, test.stdout + test.stderr
    assert "1 passed" in test.stdout


def test_new_refuses_to_overwrite(tmp_path: Path) -> None:
    run("plugins", "new", "dup", "--dir", str(tmp_path))
    result = run("plugins", "new", "dup", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert "already exists" in result.output


def test_config_validate_ok_and_failing(app: Path) -> None:
    ok = run("--config", "app.yaml", "config", "validate")
    assert ok.exit_code == 0
    assert "4 plugin(s)" in ok.output
    text = (
        (app / "app.yaml")
        .read_text()
        .replace("cache: true\n", "cache: true\n        database: true\n", 1)
    )
    (app / "broken.yaml").write_text(text)
    bad = run("--config", "broken.yaml", "config", "validate")
    assert bad.exit_code == 1
    assert (
        "permission mismatch: plugin requests 'database' permission but manifest does not "
        "declare it"
    ) in bad.output


def test_config_validate_reports_unset_variable(tmp_path: Path) -> None:
    config = tmp_path / "app.yaml"
    config.write_text(
        "plugins:\n  plugins:\n    - name: x\n      config: {key: '${NOT_SET_ANYWHERE}'}\n"
    )
    result = run("--config", str(config), "config", "validate")
    assert result.exit_code == 1
    assert "environment variable 'NOT_SET_ANYWHERE' is not set" in result.output
    assert "${NOT_SET_ANYWHERE:-value}" in result.output


def test_config_show_masks_secrets_and_applies_defaults(app: Path) -> None:
    result = run("--config", "app.yaml", "config", "show", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    entries = {p["name"]: p for p in data["plugins"]["plugins"]}
    assert entries["auth-plugin"]["config"]["secret"] == "****"
    assert entries["auth-plugin"]["config"]["token_ttl"] == "1h"
    assert entries["cache-plugin"]["config"] == {
        "max_entries": 500,
        "ttl": "5m",
        "http_routes": ["/users"],
        "http_ttl": "30s",
    }
    assert "change-me" not in result.output


def test_config_commands_need_a_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("config", "show")
    assert result.exit_code == 1
    assert "Error: no config file given" in result.output


def test_demo_walks_the_example_application(app: Path) -> None:
    result = run("demo", "app.yaml")
    assert result.exit_code == 0, result.output
    assert "logging-plugin -> cache-plugin -> auth-plugin -> user-plugin" in result.output
    assert "user-plugin -> auth-plugin -> cache-plugin -> logging-plugin" in result.output
    assert "4 plugin(s) cleaned up" in result.output


def test_installed_script_exits_1_with_error_and_hint(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "tether"
    result = subprocess.run(
        [str(script), "plugins", "validate", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no manifest in" in result.stdout
    assert result.stderr.startswith("Error: 1 of 1 manifest(s) invalid")
    assert "Hint: fix the problems listed above" in result.stderr


def test_verbose_errors_print_the_traceback_after_the_hint(tmp_path: Path) -> None:
    result = run("--verbose", "--plugin-path", str(tmp_path), "plugins", "info", "nope")
    assert result.exit_code == 1
    assert "Error: plugin not found: 'nope'" in result.stderr
    assert "Traceback" in result.stderr
    assert "PluginNotFoundError" in result.stderr


def test_undeclared_capabilities_are_reported_by_test_and_info(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("data")
    body = (
        "class Plugin:\n"
        "    def initialize(self, ctx): pass\n"
        f"    def start(self): open({str(outside)!r}).close()\n"
        "    def stop(self): pass\n"
        "    def cleanup(self): pass\n"
    )
    plugin = write_plugin(tmp_path / "plugins", "snoop", body)
    tested = run("plugins", "test", str(plugin))
    assert tested.exit_code == 0, tested.output
    assert "Used without declaring the permission" in tested.output
    assert f"filesystem: 1 time(s), e.g. open {outside}" in tested.output
    info = run("plugins", "info", "snoop")
    assert f"filesystem: 1 time(s), e.g. open {outside}" in info.output


def test_declared_capabilities_are_not_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("data")
    body = (
        "class Plugin:\n"
        "    def initialize(self, ctx): pass\n"
        f"    def start(self): open({str(outside)!r}).close()\n"
        "    def stop(self): pass\n"
        "    def cleanup(self): pass\n"
    )
    plugin = write_plugin(tmp_path / "plugins", "reader", body, permissions="{filesystem: true}")
    tested = run("plugins", "test", str(plugin))
    assert tested.exit_code == 0, tested.output
    assert "Used without declaring" not in tested.output


def test_info_says_what_a_plugin_provides():
    result = run("plugins", "info", "tpcb")
    assert result.exit_code == 0, result.output
    assert "provides: workload" in result.output


def test_info_shows_what_each_config_key_allows():
    result = run("plugins", "info", "tpcb")
    assert result.exit_code == 0, result.output
    assert re.search(r"^\s*scale\s+integer\s+1\s+at least 1\s", result.output, re.MULTILINE)
    assert re.search(r"^\s*driver\s+string\s+auto\s+one of auto,", result.output, re.MULTILINE)


# --------------------------------------------------------------------------- layering

SRC = Path(__file__).resolve().parent.parent / "src"
EDGES = ("tether/cli", "tether/admin", "tether/hosts")
CLI_MAY_IMPORT = ("tether", "tether.errors", "tether.types", "tether.observability",
                  "tether.isolation", "tether.testing", "tether.packaging")  # fmt: skip


def _package_of(module: str) -> str:
    """The edge package a module belongs to: tether.cli, tether.admin, tether.hosts.NAME."""
    parts = module.split(".")
    return ".".join(parts[:3] if parts[1] == "hosts" else parts[:2])


def _imported(tree: ast.AST, module: str) -> Iterator[tuple[int, str, bool]]:
    """Every module, and every name ``from`` a module, that code imports (absolute), with
    whether it is a module (``import a.b``, ``from a.b import ...``) or a name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, True
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base, True
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}", False
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in {
                "import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):  # fmt: skip
            yield node.lineno, node.args[0].value, True


def private_imports(source: str, module: str) -> list[str]:
    """``line: name`` for each private tether module ``module`` imports from outside its
    own package (``tether.hosts.web._app`` may import ``tether.hosts.web._errors``); for
    the CLI, also each module that is not one of the public API's."""
    own = _package_of(module)
    found: dict[int, str] = {}  # the first offence of each line
    for line, name, is_module in _imported(ast.parse(source), module):
        parts = name.split(".")
        if parts[0] != "tether" or name == own or name.startswith(own + ".") or line in found:
            continue
        if any(p.startswith("_") and not p.startswith("__") for p in parts[1:]):
            found[line] = f"{line}: {name}"
        elif (
            is_module
            and module.startswith("tether.cli")
            and name not in CLI_MAY_IMPORT
            and not name.startswith("tether.hosts.")
        ):
            found[line] = f"{line}: {name} (the CLI imports only the public API)"
    return [found[line] for line in sorted(found)]


def _edge_modules() -> list[pytest.param]:
    found = []
    for edge in EDGES:
        for path in sorted((SRC / edge).rglob("*.py")):
            module = ".".join(path.relative_to(SRC).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            found.append(pytest.param(path, module, id=module))
    return found


@pytest.mark.parametrize(("path", "module"), _edge_modules())
def test_edges_import_only_the_public_api(path: Path, module: str) -> None:
    found = private_imports(path.read_text(encoding="utf-8"), module)
    assert not found, f"{path} imports private modules:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("from tether._config import load_config", "tether.cli._app", ["1: tether._config"]),
        ("from tether import _audit", "tether.cli._x", ["1: tether._audit"]),
        ("import tether._manager", "tether.admin._app", ["1: tether._manager"]),
        ("def f():\n    from tether._storage import x", "tether.hosts.web._app",
         ["2: tether._storage"]),
        ("from tether.hosts.workload._settings import B", "tether.hosts.web._app",
         ["1: tether.hosts.workload._settings"]),
        ("from ... import _manifest", "tether.hosts.web._app", ["1: tether._manifest"]),
        ("importlib.import_module('tether._loader')", "tether.cli._x", ["1: tether._loader"]),
        ("from tether.builtin import x", "tether.cli._x",
         ["1: tether.builtin (the CLI imports only the public API)"]),
        ("from tether.hosts.web._errors import e", "tether.hosts.web._app", []),
        ("from tether.cli._app import cli", "tether.cli", []),
        ("from tether import PluginManager, __version__", "tether.cli._x", []),
        ("from tether.hosts.workload import BenchConfig", "tether.cli._x", []),
    ],
    ids=["from-private", "import-private-name", "import-private", "nested-import",
         "another-hosts-private", "relative", "import-module", "cli-non-public-module",
         "own-host", "own-cli", "public-names", "public-host"],
)  # fmt: skip
def test_the_private_import_check_itself(source: str, module: str, expected: list[str]) -> None:
    assert private_imports(source, module) == expected


def _registering_decorators(node: ast.stmt) -> Iterator[str]:
    """``@group.command`` / ``@group.group`` on a function: registration on import."""
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (
            isinstance(target, ast.Attribute)
            and target.attr in {"command", "group"}
            and not (isinstance(target.value, ast.Name) and target.value.id == "click")
        ):
            yield f"{decorator.lineno}: @{ast.unparse(target)} registers {node.name}"


def _module_level_calls(source: str) -> list[str]:
    """Statements that do something when the module is imported: calls at module level,
    decorators of a group, ``add_command`` anywhere, assigning a ``callback``."""
    tree = ast.parse(source)
    found = [f"{node.lineno}: a call at module level" for node in tree.body
             if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)]  # fmt: skip
    for node in tree.body:
        found.extend(_registering_decorators(node))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "add_command":
            found.append(f"{node.lineno}: add_command")
        targets = node.targets if isinstance(node, ast.Assign) else []
        found.extend(
            f"{node.lineno}: replaces a callback"
            for target in targets
            if isinstance(target, ast.Attribute) and target.attr == "callback"
        )
    return sorted(found, key=lambda item: int(item.partition(":")[0]))


@pytest.mark.parametrize(
    "path",
    [p for p in sorted((SRC / "tether" / "cli").glob("_*.py")) if p.name != "__init__.py"],
    ids=lambda p: p.name,
)
def test_cli_modules_register_nothing_when_imported(path: Path) -> None:
    found = _module_level_calls(path.read_text(encoding="utf-8"))
    assert not found, f"{path.name} acts on import:\n" + "\n".join(found)


def test_the_registration_check_itself() -> None:
    source = (
        "import click\n"
        "@cli.command('x')\ndef x(): pass\n"
        "@click.command('y')\ndef y(): pass\n"
        "plugins.add_command(y)\n"
        "command.callback = y\n"
        "_extend()\n"
    )
    assert _module_level_calls(source) == [
        "2: @cli.command registers x",
        "6: a call at module level",
        "6: add_command",
        "7: replaces a callback",
        "8: a call at module level",
    ]


def _commands(group: click.Group) -> dict[str, click.Command]:
    context = click.Context(group)
    found = {name: group.get_command(context, name) for name in group.list_commands(context)}
    return {name: command for name, command in found.items() if command is not None}


def test_the_tree_is_assembled_in_one_place() -> None:
    commands = _commands(cli)
    groups = {name: cmd for name, cmd in commands.items() if isinstance(cmd, click.Group)}
    assert set(commands) == {"plugins", "config", "workloads", "bench", "serve", "demo", "doctor"}
    assert set(_commands(groups["plugins"])) == {
        "list", "scan", "info", "validate", "graph", "test", "exec", "new",
        "health", "enable", "disable", "reload", "rollback", "history", "package", "install",
        "uninstall", "lock",
    }  # fmt: skip
    assert set(_commands(groups["config"])) == {"validate", "show"}
    assert set(_commands(groups["workloads"])) == {"list"}
    validate = _commands(groups["config"])["validate"]
    assert validate.callback is not None
    assert validate.callback.__module__ == "tether.cli._config_commands"


# --------------------------------------------------------------------------- contracts


def test_info_shows_the_contract_a_plugin_provides():
    result = run("plugins", "info", "tpcb")
    assert result.exit_code == 0, result.output
    section = result.stdout.split("\nContract\n", 1)[1]
    assert section.startswith("  workload: a load-test workload for tether bench")
    assert "  host: tether bench\n" in section
    assert (
        "  required methods: initialize, setup, cleanup, execute_operation, get_operation_types\n"
    ) in section
    assert (
        "  optional methods: get_info, get_metrics, get_connection_type, reload_setup, start, "
        "stop, get_statements, statement_parameters\n"
    ) in section


def test_info_shows_the_executor_contract_of_the_example(examples_dir: Path):
    result = run("--plugin-path", str(examples_dir / "plugins"), "plugins", "info",
                 "word-count-plugin")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "provides: executor" in result.stdout
    assert "executor: an Execute-style plugin" in result.stdout
    assert "host: tether plugins exec (tether.hosts.executor)" in result.stdout
    assert "required methods: initialize, execute" in result.stdout


def test_info_of_an_ordinary_plugin_shows_the_plugin_contract(tmp_path: Path):
    write_plugin(tmp_path, "plain")
    result = run("--plugin-path", str(tmp_path), "plugins", "info", "plain")
    assert result.exit_code == 0, result.output
    assert "  plugin: an ordinary plugin: initialize(ctx), start(), stop(), cleanup()" in (
        result.stdout
    )
    assert "  required methods: initialize, start, stop, cleanup" in result.stdout
    assert "  optional methods: none" in result.stdout


def test_info_shows_an_unknown_contract_as_an_error_with_its_hint(tmp_path: Path):
    write_plugin(tmp_path, "typo", provides="[workloud]")
    result = run("--plugin-path", str(tmp_path), "plugins", "info", "typo")
    assert result.exit_code == 0, result.output
    assert (
        "Error: plugin 'typo': unknown contract 'workloud' (did you mean 'workload'?): "
        "no host registered it"
    ) in result.stdout
    assert "Hint: known contracts: executor, plugin, web, workload;" in result.stdout
    assert "Permissions" in result.stdout  # the rest of the manifest is still shown


def test_validate_reports_an_unknown_contract_as_a_problem(tmp_path: Path):
    good = write_plugin(tmp_path, "fine", provides="[executor]")
    typo = write_plugin(tmp_path, "typo", provides="[workloud]")
    result = run("plugins", "validate", str(good), str(typo))
    assert result.exit_code == 1
    assert f"✓ {good}: fine 1.0.0" in result.stdout
    assert f"✗ {typo}: 1 problem(s)" in result.stdout
    assert (
        f"    - {typo / 'plugin.yaml'} [provides]: unknown contract 'workloud' "
        "(did you mean 'workload'?): no host registered it"
    ) in result.stdout
    assert "      hint: known contracts: executor, plugin, web, workload;" in result.stdout
    assert "Error: 1 of 2 manifest(s) invalid" in result.stderr


def test_validate_reports_contracts_that_disagree(tmp_path: Path):
    both = write_plugin(tmp_path, "both", provides="[workload, executor]")
    result = run("plugins", "validate", str(both))
    assert result.exit_code == 1
    assert (
        "[provides]: plugin 'both' provides contracts that disagree on what initialize() "
        "receives: workload (config), executor (context)"
    ) in result.stdout
    assert "hint: split the plugin in two, one per contract" in result.stdout


# ------------------------------------------------------------- plugins test: optional interfaces

LIFECYCLE = (
    "    def initialize(self, ctx): pass\n"
    "    def start(self): pass\n"
    "    def stop(self): pass\n"
    "    def cleanup(self): pass\n"
)


def _steps(result: Result) -> dict[str, str]:
    """The step table: each step's result (ok / failed)."""
    found = re.findall(r"^\s*(\S.*?)\s+(ok|failed)\s+[\d.]+ ms\s*$", result.stdout, re.MULTILINE)
    return dict(found)


def test_plugin_test_shows_what_a_describable_plugin_says(tmp_path: Path):
    body = (
        "class Plugin:\n" + LIFECYCLE
        + "    def description(self): return 'counts things at run time'\n"
        "    def author(self): return 'Ada <ada@example.com>'\n"
    )  # fmt: skip
    plugin = write_plugin(tmp_path, "describes", body)
    result = run("plugins", "test", str(plugin))
    assert result.exit_code == 0, result.output
    assert "  description(): counts things at run time\n" in result.stdout
    assert "  author(): Ada <ada@example.com>\n" in result.stdout
    assert _steps(result) == {
        "load": "ok", "initialize": "ok", "describe": "ok", "start": "ok", "stop": "ok",
        "cleanup": "ok",
    }  # fmt: skip


def test_plugin_test_without_optional_interfaces_has_only_the_lifecycle_steps(tmp_path: Path):
    plugin = write_plugin(tmp_path, "plain")
    result = run("plugins", "test", str(plugin))
    assert result.exit_code == 0, result.output
    assert list(_steps(result)) == ["load", "initialize", "start", "stop", "cleanup"]
    assert "description()" not in result.stdout


def test_plugin_test_fails_when_describe_raises(tmp_path: Path):
    body = (
        "class Plugin:\n" + LIFECYCLE
        + "    def description(self): raise LookupError('no text')\n"
        "    def author(self): return 'a'\n"
    )  # fmt: skip
    plugin = write_plugin(tmp_path, "mute", body)
    result = run("plugins", "test", str(plugin))
    assert result.exit_code == 1
    assert _steps(result)["describe"] == "failed"
    assert "plugin 'mute': description() raised LookupError: no text" in result.stdout
    assert "start" not in _steps(result)
    assert _steps(result)["cleanup"] == "ok"
    assert "Error: plugin 'mute' failed its test" in result.stderr


def test_plugin_test_shows_a_configurable_refusal_as_the_failing_load(tmp_path: Path):
    body = (
        "class Plugin:\n" + LIFECYCLE
        + "    def validate_config(self, config):\n"
        "        if config['port'] % 2: raise ValueError('port must be even')\n"
    )  # fmt: skip
    plugin = write_plugin(tmp_path, "picky", body, config="{port: {type: integer, default: 2}}")
    assert run("plugins", "test", str(plugin)).exit_code == 0
    result = run("plugins", "test", str(plugin), "--set", "port=3")
    assert result.exit_code == 1
    assert _steps(result) == {"load": "failed"}
    assert "load failed:" in result.stdout
    assert "invalid config for plugin 'picky': port must be even" in result.stdout
    assert "hint: plugin 'picky' refused its config in validate_config()" in result.stdout
    assert "Traceback" not in result.output


def test_plugin_test_runs_a_passing_health_check(tmp_path: Path):
    body = "class Plugin:\n" + LIFECYCLE + "    def health_check(self): return True\n"
    plugin = write_plugin(tmp_path, "healthy", body)
    result = run("plugins", "test", str(plugin))
    assert result.exit_code == 0, result.output
    assert list(_steps(result)) == [
        "load", "initialize", "start", "health check", "stop", "cleanup"
    ]  # fmt: skip
    assert set(_steps(result).values()) == {"ok"}


@pytest.mark.parametrize(
    ("check", "reason"),
    [
        ("return False", "health_check() returned False"),
        ("raise RuntimeError('db down')", "health_check() raised RuntimeError: db down"),
    ],
    ids=["returns-false", "raises"],
)
def test_plugin_test_fails_a_failing_health_check(tmp_path: Path, check: str, reason: str):
    body = "class Plugin:\n" + LIFECYCLE + f"    def health_check(self): {check}\n"
    plugin = write_plugin(tmp_path, "sick", body)
    result = run("plugins", "test", str(plugin))
    assert result.exit_code == 1
    steps = _steps(result)
    assert steps["health check"] == "failed"
    assert "stop" not in steps
    assert steps["cleanup"] == "ok"
    assert "health check failed:" in result.stdout
    assert f"plugin 'sick' failed its health check: {reason}" in result.stdout
    assert "Error: plugin 'sick' failed its test" in result.stderr
