"""Review 8 reproducers: ``tether plugins exec`` and ``tether config validate`` errors.

Each test asserts the documented behaviour (exit 1, ``Error: ...`` and ``Hint: ...``,
no traceback without ``--verbose``), so it fails while the bug exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import PluginWriter
from tether.cli import cli


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _executor(tmp_path: Path, name: str, body: str) -> Path:
    code = (
        "class Odd(Exception):\n"
        "    def __str__(self):\n"
        "        raise RuntimeError('__str__ exploded')\n\n"
        "class Poison(BaseException):\n"
        "    pass\n\n"
        "class Plugin:\n"
        "    def initialize(self, ctx): pass\n\n"
        f"{body}"
    )
    return PluginWriter(tmp_path / "plugins")(name, code, directory=name, provides=["executor"])


CASES = {
    "odd-str": "    def execute(self, data):\n        raise Odd()\n",
    "base-exception": "    async def execute(self, data):\n        raise Poison('p')\n",
    "system-exit": "    def execute(self, data):\n        raise SystemExit(0)\n",
    "deep-output": (
        "    def execute(self, data):\n"
        "        x = []\n"
        "        for _ in range(100000):\n"
        "            x = [x]\n"
        "        return x\n"
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_exec_reports_a_plugins_failure_as_an_error(tmp_path, case):
    """Observed: odd-str and base-exception print a bare traceback (exit 1);
    deep-output prints a RecursionError traceback; system-exit exits 0 with no output at
    all, as if the plugin had succeeded."""
    path = _executor(tmp_path, case, CASES[case])
    result = CliRunner().invoke(cli, ["plugins", "exec", str(path), "--input", '"x"'])
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert result.exit_code == 1, output
    assert "Error:" in output
    assert "Traceback" not in output
    assert f"'{case}'" in output  # the plugin is named


def test_exec_input_that_is_deeply_nested_json_is_a_usage_error(tmp_path):
    """``--input @FILE`` with 100,000 nested lists: RecursionError traceback, exit 1.
    Docs: input that is not usable JSON is a usage error (exit 2)."""
    path = _executor(tmp_path, "echo", "    def execute(self, data):\n        return 1\n")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    result = CliRunner().invoke(cli, ["plugins", "exec", str(path), "--input", f"@{deep}"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_config_validate_reports_a_bad_section_call_chain_without_plugins(tmp_path):
    """``plugins.call_chain: [bogus]`` passes ``tether config validate`` when the config
    lists no plugin (and, with plugins, the error names a plugin rather than the key
    ``plugins.call_chain``)."""
    config = tmp_path / "tether.json"
    config.write_text(json.dumps({"plugins": {"call_chain": ["bogus"]}}), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "validate"])
    assert result.exit_code == 1, result.output
    assert "bogus" in result.output
