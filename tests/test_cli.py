"""The CLI through click's runner: output, exit codes and error display."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

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
