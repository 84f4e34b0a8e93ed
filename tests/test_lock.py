"""``tether plugins lock`` and ``plugins.verify``: the SHA-256 of a plugin's files, the
lock beside the config, and the refusal, before any of its code runs, of a plugin whose
files differ from it."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from helpers import PluginWriter
from tether import PluginManager, TetherConfig, load_config, load_manifest
from tether._config import parse_config
from tether.cli import cli
from tether.errors import ConfigError, IntegrityError
from tether.packaging import (
    LOCK_NAME,
    check_plugin,
    hash_plugin,
    lock_entry,
    plugin_files,
    read_lock,
    write_lock,
)

CODE = """\
from pathlib import Path
Path(__file__).with_name("imported.marker").touch()

class Plugin:
    def initialize(self, ctx): pass
    def start(self): pass
    def stop(self): pass
    def cleanup(self): pass
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A config (``plugins.verify: true``) and one plugin beside it that marks its import.

    The marker is a dot-file, so writing it does not change the plugin's files."""
    PluginWriter(tmp_path / "plugins")(
        "greeter",
        CODE.replace("imported.marker", ".imported"),
        directory="greeter",
        files={"lib/helpers.py": "X = 1\n"},
    )
    config = tmp_path / "tether.yaml"
    config.write_text(
        "plugins:\n  verify: true\n  plugins:\n    - path: plugins/greeter\n", encoding="utf-8"
    )
    return tmp_path


def _load(config_file: Path) -> list[str]:
    async def go() -> list[str]:
        manager = PluginManager()
        try:
            infos = await manager.load_plugins_from_config(load_config(config_file))
            return [i.name for i in infos]
        finally:
            await manager.aclose()

    return asyncio.run(go())


def _lock(app: Path) -> Result:
    result = run("plugins", "lock", "--config", str(app / "tether.yaml"))
    assert result.exit_code == 0, result.output
    return result


def _refusal(app: Path) -> IntegrityError:
    with pytest.raises(IntegrityError) as caught:
        _load(app / "tether.yaml")
    assert not (app / "plugins" / "greeter" / ".imported").exists()  # refused before import
    return caught.value


# --------------------------------------------------------------------------- the digest


def test_the_digest_is_the_documented_one(app: Path) -> None:
    directory = app / "plugins" / "greeter"
    expected = hashlib.sha256()
    for relative in ("lib/helpers.py", "plugin.json", "plugin.py"):
        expected.update(relative.encode() + b"\0")
        expected.update(hashlib.sha256((directory / relative).read_bytes()).digest())

    hashed = hash_plugin(directory)

    assert hashed.sha256 == expected.hexdigest()
    assert list(hashed.files) == ["lib/helpers.py", "plugin.json", "plugin.py"]
    content = (directory / "plugin.py").read_bytes()
    assert hashed.files["plugin.py"] == hashlib.sha256(content).hexdigest()


def test_a_rename_changes_the_digest(app: Path) -> None:
    directory = app / "plugins" / "greeter"
    before = hash_plugin(directory).sha256
    (directory / "lib" / "helpers.py").rename(directory / "lib" / "tools.py")
    assert hash_plugin(directory).sha256 != before


def test_caches_compiled_files_and_dot_files_are_not_the_plugins(app: Path) -> None:
    directory = app / "plugins" / "greeter"
    before = hash_plugin(directory)
    for folder in (directory, directory / "lib"):
        (folder / "__pycache__").mkdir()
        (folder / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (directory / "old.pyc").write_bytes(b"\0")
    (directory / ".swp").write_text("editor", encoding="utf-8")
    (directory / ".hidden").mkdir()
    (directory / ".hidden" / "code.py").write_text("x = 1\n", encoding="utf-8")

    assert hash_plugin(directory) == before
    assert [r for r, _ in plugin_files(directory)] == ["lib/helpers.py", "plugin.json", "plugin.py"]


def test_a_symlinked_directory_is_followed_once(app: Path, tmp_path: Path) -> None:
    directory = app / "plugins" / "greeter"
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "common.py").write_text("Y = 2\n", encoding="utf-8")
    (directory / "common").symlink_to(shared)
    (shared / "loop").symlink_to(directory)

    relatives = [r for r, _ in plugin_files(directory)]

    assert "common/common.py" in relatives
    assert not any(r.startswith("common/loop/") for r in relatives)


# --------------------------------------------------------------------------- the lock file


def test_lock_writes_each_plugin_beside_the_config(app: Path) -> None:
    result = _lock(app)

    lock_file = app / LOCK_NAME
    assert f"Wrote {lock_file}" in result.stdout
    data = json.loads(lock_file.read_text(encoding="utf-8"))
    assert data["lock_version"] == 1
    entry = data["plugins"]["greeter"]
    hashed = hash_plugin(app / "plugins" / "greeter")
    assert entry == {
        "version": "1.0.0",
        "path": "plugins/greeter",
        "sha256": hashed.sha256,
        "files": dict(hashed.files),
    }
    assert "tpcb" in data["plugins"]  # every plugin found is locked too (the built-ins)


def test_a_matching_lock_lets_the_plugin_load(app: Path) -> None:
    _lock(app)
    (app / "plugins" / "greeter" / "__pycache__").mkdir()
    assert _load(app / "tether.yaml") == ["greeter"]
    assert (app / "plugins" / "greeter" / ".imported").exists()


def test_a_changed_file_is_refused_naming_it(app: Path) -> None:
    _lock(app)
    helpers = app / "plugins" / "greeter" / "lib" / "helpers.py"
    helpers.write_text("X = 2\n", encoding="utf-8")

    error = _refusal(app)

    assert str(error) == (
        f"plugin 'greeter': its files differ from {app / LOCK_NAME}: lib/helpers.py was "
        f"changed in {app / 'plugins' / 'greeter'}"
    )
    assert (error.plugin, error.file, error.change) == ("greeter", "lib/helpers.py", "changed")
    assert error.hint == (
        "if the change is intended, run `tether plugins lock` (with the same --config) to "
        "record the files again"
    )


def test_an_added_file_is_refused(app: Path) -> None:
    _lock(app)
    (app / "plugins" / "greeter" / "backdoor.py").write_text("import os\n", encoding="utf-8")
    error = _refusal(app)
    assert (error.file, error.change) == ("backdoor.py", "added")
    assert "backdoor.py was added" in str(error)


def test_a_removed_file_is_refused(app: Path) -> None:
    _lock(app)
    (app / "plugins" / "greeter" / "lib" / "helpers.py").unlink()
    error = _refusal(app)
    assert (error.file, error.change) == ("lib/helpers.py", "removed")


def test_a_changed_version_is_said(app: Path) -> None:
    _lock(app)
    manifest = app / "plugins" / "greeter" / "plugin.json"
    manifest.write_text(manifest.read_text().replace("1.0.0", "1.0.1"), encoding="utf-8")
    error = _refusal(app)
    assert "plugin.json was changed" in str(error)
    assert str(error).endswith("(locked version 1.0.0, found 1.0.1)")


def test_changes_to_caches_and_dot_files_are_not_refused(app: Path) -> None:
    _lock(app)
    directory = app / "plugins" / "greeter"
    (directory / "__pycache__").mkdir()
    (directory / "__pycache__" / "plugin.cpython-311.pyc").write_bytes(b"\0")
    (directory / ".notes").write_text("todo\n", encoding="utf-8")
    assert _load(app / "tether.yaml") == ["greeter"]


def test_a_plugin_the_lock_does_not_list_is_refused(app: Path) -> None:
    lock_file = app / LOCK_NAME
    write_lock(lock_file, [])
    error = _refusal(app)
    assert str(error) == (
        f"plugin 'greeter' is not in the lock file {lock_file}: plugins.verify refuses a "
        "plugin the lock does not list"
    )
    assert error.hint == (
        "run `tether plugins lock` (with the same --config) to add it to tether.lock"
    )


def test_verify_without_a_lock_file_is_a_clear_error(app: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(app / "tether.yaml")
    assert str(caught.value) == (
        f"plugins.verify is true but there is no lock file: {app / LOCK_NAME}"
    )
    assert "run `tether plugins lock`" in (caught.value.hint or "")
    assert not (app / "plugins" / "greeter" / ".imported").exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"lock_version": 7, "plugins": {}}', "expected a JSON object with lock_version 1"),
        ('{"lock_version": 1, "plugins": {"greeter": {"version": "1.0.0"}}}', "needs `version`"),
        (
            json.dumps(
                {
                    "lock_version": 1,
                    "plugins": {"g": {"version": "1", "sha256": "x", "files": {"a": "zz"}}},
                }
            ),
            "each value must be a SHA-256 in hex",
        ),
    ],
    ids=["not-json", "other-version", "missing-fields", "bad-hash"],
)
def test_a_malformed_lock_is_a_config_error_naming_it(
    app: Path, content: str, problem: str
) -> None:
    (app / LOCK_NAME).write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        _load(app / "tether.yaml")
    assert str(caught.value).startswith(f"invalid lock file {app / LOCK_NAME}: ")
    assert problem in str(caught.value)


def test_without_verify_the_lock_is_not_read(app: Path) -> None:
    (app / "tether.yaml").write_text(
        "plugins:\n  plugins:\n    - path: plugins/greeter\n", encoding="utf-8"
    )
    (app / LOCK_NAME).write_text("{not json", encoding="utf-8")
    assert _load(app / "tether.yaml") == ["greeter"]


def test_verify_is_off_by_default_and_takes_an_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert TetherConfig().plugins.verify is False
    monkeypatch.setenv("VERIFY", "true")
    assert parse_config({"plugins": {"verify": "${VERIFY}"}}).plugins.verify is True


def test_check_plugin_against_a_lock_written_in_code(app: Path) -> None:
    manifest = load_manifest(app / "plugins" / "greeter")
    lock = write_lock(app / LOCK_NAME, [lock_entry(manifest, app / LOCK_NAME)])
    check_plugin(manifest, read_lock(lock.path))
    (app / "plugins" / "greeter" / "plugin.py").write_text("# gone\n", encoding="utf-8")
    with pytest.raises(IntegrityError, match=r"plugin\.py was changed"):
        check_plugin(manifest, read_lock(lock.path))


# --------------------------------------------------------------------------- the CLI


def test_cli_lock_check_reports_each_plugin(app: Path) -> None:
    _lock(app)
    config = str(app / "tether.yaml")
    assert run("plugins", "lock", "--check", "--config", config).exit_code == 0
    (app / "plugins" / "greeter" / "plugin.py").write_text(CODE + "# edited\n", encoding="utf-8")

    result = run("plugins", "lock", "--check", "--config", config)

    assert result.exit_code == 1
    assert "✗ plugin 'greeter': its files differ from" in result.stdout
    assert "✓ tpcb 1.0.0" in result.stdout
    assert result.stderr.startswith(f"Error: 1 plugin(s) differ from {app / LOCK_NAME}")
    assert "Traceback" not in result.output


def test_cli_a_refused_plugin_is_an_error_without_a_traceback(app: Path) -> None:
    _lock(app)
    (app / "plugins" / "greeter" / "extra.py").write_text("", encoding="utf-8")

    result = run(
        "plugins", "test", str(app / "plugins" / "greeter"), "--config", str(app / "tether.yaml")
    )

    assert result.exit_code == 1
    assert "extra.py was added" in result.output
    assert "run `tether plugins lock`" in result.output
    assert "Traceback" not in result.output
    assert not (app / "plugins" / "greeter" / ".imported").exists()


def test_cli_lock_fails_cleanly_on_a_configured_plugin_that_is_missing(tmp_path: Path) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text("plugins:\n  plugins:\n    - name: nowhere\n", encoding="utf-8")
    result = run("plugins", "lock", "--config", str(config))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: plugin not found: 'nowhere'")
    assert not (tmp_path / LOCK_NAME).exists()


def test_cli_config_validate_checks_the_lock_as_loading_does(app: Path) -> None:
    """`config validate` refuses what verify would refuse at load, without importing."""
    config = str(app / "tether.yaml")
    missing = run("config", "validate", config)
    assert missing.exit_code == 1
    assert missing.stderr.count("there is no lock file") == 1  # once, not once per entry

    _lock(app)
    assert run("config", "validate", config).exit_code == 0
    (app / "plugins" / "greeter" / "lib" / "helpers.py").write_text("X = 2\n", encoding="utf-8")

    changed = run("config", "validate", config)

    assert changed.exit_code == 1
    assert "lib/helpers.py was changed" in changed.stderr
    assert f"Error: {app / 'tether.yaml'}: 1 problem(s)" in changed.stderr
    assert not (app / "plugins" / "greeter" / ".imported").exists()


def test_cli_config_validate_does_not_hold_a_disabled_entry_to_the_lock(app: Path) -> None:
    write_lock(app / LOCK_NAME, [])
    config = app / "tether.yaml"
    config.write_text(config.read_text() + "      enabled: false\n", encoding="utf-8")
    result = run("config", "validate", str(config))
    assert result.exit_code == 0, result.output
