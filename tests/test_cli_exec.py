"""``tether plugins exec``: the example executor end to end, its inputs, and every error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from helpers import PluginWriter
from tether.cli import cli

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "plugins" / "word-count-plugin"
HAMLET = "To be, or not to be: that is the question."
HAMLET_COUNT = {
    "words": 10,
    "unique": 8,
    "top": [{"word": "to", "count": 2}, {"word": "be", "count": 2}, {"word": "or", "count": 1}],
}


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def exec_(*args: str, stdin: str | None = None) -> Result:
    result = run("plugins", "exec", *args, stdin=stdin)
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # whatever a manager writes beside the config stays here


@pytest.fixture
def write(tmp_path: Path) -> PluginWriter:
    return PluginWriter(tmp_path / "plugins")


def executor(write: PluginWriter, name: str, body: str, **fields: object) -> Path:
    code = f"import asyncio\n\nclass Plugin:\n    def initialize(self, ctx): pass\n\n{body}"
    return write(name, code, directory=name, provides=["executor"], **fields)


# --------------------------------------------------------------------------- the example


def test_the_example_counts_words_given_its_directory():
    result = exec_(str(EXAMPLE), "--input", json.dumps(HAMLET))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == HAMLET_COUNT
    assert result.stderr == ""


def test_the_example_takes_an_object_and_set_values():
    result = exec_(str(EXAMPLE), "--input", json.dumps({"text": "The the THE a"}),
                   "--set", "top=1", "--set", "ignore_case=false")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "words": 4, "unique": 4, "top": [{"word": "The", "count": 1}]
    }  # fmt: skip


def test_a_name_is_found_through_the_search_paths():
    result = run("--plugin-path", str(EXAMPLE.parent), "plugins", "exec", "word-count-plugin",
                 "--input", '"a b a"')  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["top"][0] == {"word": "a", "count": 2}


def test_a_name_uses_the_config_entry_and_set_wins(tmp_path: Path):
    config = tmp_path / "tether.yaml"
    config.write_text(
        "plugins:\n  plugins:\n    - name: word-count-plugin\n"
        f"      path: {EXAMPLE}\n      config: {{top: 1}}\n"
    )
    from_entry = run("--config", str(config), "plugins", "exec", "word-count-plugin",
                     "--input", '"b a b a c"')  # fmt: skip
    assert from_entry.exit_code == 0, from_entry.output
    assert json.loads(from_entry.stdout)["top"] == [{"word": "b", "count": 2}]
    overridden = run("--config", str(config), "plugins", "exec", "word-count-plugin",
                     "--input", '"b a b a c"', "--set", "top=3")  # fmt: skip
    assert len(json.loads(overridden.stdout)["top"]) == 3


def test_input_from_standard_input():
    result = exec_(str(EXAMPLE), "--input", "-", stdin=json.dumps({"text": HAMLET}))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == HAMLET_COUNT


def test_input_from_a_file(tmp_path: Path):
    data = tmp_path / "input.json"
    data.write_text(json.dumps({"text": HAMLET}), encoding="utf-8")
    result = exec_(str(EXAMPLE), "--input", f"@{data}")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == HAMLET_COUNT


def test_the_installed_script_reads_stdin_and_prints_json(tmp_path: Path):
    script = Path(sys.executable).parent / "tether"
    done = subprocess.run(
        [str(script), "plugins", "exec", str(EXAMPLE), "--input", "-"],
        input='{"text": "one two two"}', capture_output=True, text=True, check=False,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["words"] == 3


# --------------------------------------------------------------------------- output formats


def test_text_prints_a_string_as_it_is(write: PluginWriter):
    plugin = executor(write, "upper", "    def execute(self, data):\n        return data.upper()\n")
    text = exec_(str(plugin), "--input", '"hello \\"world\\""', "--format", "text")
    assert text.exit_code == 0, text.output
    assert text.stdout == 'HELLO "WORLD"\n'
    as_json = exec_(str(plugin), "--input", '"hello"')
    assert as_json.stdout == '"HELLO"\n'


def test_text_prints_anything_else_as_json():
    result = exec_(str(EXAMPLE), "--input", '"a"', "--format", "text")
    assert json.loads(result.stdout)["top"] == [{"word": "a", "count": 1}]


def test_an_async_execute_is_awaited(write: PluginWriter):
    body = (
        "    async def execute(self, data):\n"
        "        await asyncio.sleep(0)\n"
        "        return {'sum': sum(data)}\n"
    )
    plugin = executor(write, "adder", body)
    result = exec_(str(plugin), "--input", "[1, 2, 3]")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"sum": 6}


# --------------------------------------------------------------------------- errors: exit 1


def test_a_plugin_that_is_not_an_executor(examples_dir: Path):
    cache = examples_dir / "plugins" / "cache-plugin"
    result = exec_(str(cache), "--input", "1")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: plugin 'cache-plugin' is not an executor plugin: its manifest does not say "
        "`provides: [executor]`\n"
    )
    assert f"Hint: add `provides: [executor]` to {cache / 'plugin.yaml'}" in result.stderr


def test_a_plugin_that_raises():
    result = exec_(str(EXAMPLE), "--input", "[1, 2]")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert (
        "Error: plugin 'word-count-plugin' failed: execute() raised ValueError: expected a "
        'string or an object like {"text": "..."}, got list'
    ) in result.stderr
    assert "Hint: check the input against what the plugin expects" in result.stderr


def test_an_async_execute_past_its_timeout(write: PluginWriter):
    body = "    async def execute(self, data):\n        await asyncio.sleep(60)\n"
    plugin = executor(write, "sleepy", body, timeouts={"call": 0.1})
    result = exec_(str(plugin), "--input", "null")
    assert result.exit_code == 1
    assert (
        "Error: plugin execution timeout: plugin 'sleepy' did not finish call:execute within 100ms"
    ) in result.stderr
    assert "or raise its timeouts.call" in result.stderr


def test_a_plugin_whose_initialize_fails(write: PluginWriter):
    code = (
        "class Plugin:\n"
        "    def initialize(self, ctx):\n"
        "        raise RuntimeError('no model file')\n"
        "    def execute(self, data):\n"
        "        return data\n"
    )
    plugin = write("broken", code, directory="broken", provides=["executor"])
    result = exec_(str(plugin), "--input", "1")
    assert result.exit_code == 1
    assert (
        "Error: plugin initialization failed: plugin 'broken': RuntimeError: no model file"
    ) in result.stderr


def test_verbose_shows_the_plugins_traceback():
    result = run("--verbose", "plugins", "exec", str(EXAMPLE), "--input", "[1]")
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "word_count_plugin.py" in result.stderr


def test_an_executor_without_execute(write: PluginWriter):
    plugin = write("hollow", "class Plugin:\n    def initialize(self, ctx): pass\n",
                   directory="hollow", provides=["executor"])  # fmt: skip
    result = exec_(str(plugin), "--input", "1")
    assert result.exit_code == 1
    assert "execute" in result.stderr
    assert "Hint:" in result.stderr


def test_a_plugin_with_required_dependencies(write: PluginWriter):
    dependencies = [{"name": "base"}, {"name": "extra", "optional": True}]
    body = "    def execute(self, data):\n        return data\n"
    plugin = executor(write, "needy", body, dependencies=dependencies)
    result = exec_(str(plugin), "--input", "1")
    assert result.exit_code == 1
    assert (
        "Error: plugin 'needy' requires 'base', and `tether plugins exec` loads one plugin alone"
    ) in result.stderr
    assert "or mark the dependencies optional" in result.stderr


def test_an_output_that_is_not_json(write: PluginWriter):
    plugin = executor(write, "sets", "    def execute(self, data):\n        return {1, 2}\n")
    result = exec_(str(plugin), "--input", "1")
    assert result.exit_code == 1
    assert "Error: plugin 'sets' returned a set, which is not JSON" in result.stderr
    assert "--format text prints any other value with str()" in result.stderr
    assert exec_(str(plugin), "--input", "1", "--format", "text").stdout == "{1, 2}\n"


def test_an_unknown_name_suggests_one():
    result = run("--plugin-path", str(EXAMPLE.parent), "plugins", "exec", "word-count",
                 "--input", "1")  # fmt: skip
    assert result.exit_code == 1
    assert "Error: plugin not found: 'word-count'" in result.stderr
    assert "Hint: did you mean 'word-count-plugin'?" in result.stderr


def test_a_directory_that_does_not_exist(tmp_path: Path):
    result = exec_(str(tmp_path / "nowhere"), "--input", "1")
    assert result.exit_code == 1
    assert f"Error: no plugin directory at {tmp_path / 'nowhere'}" in result.stderr


def test_a_copy_of_the_example_elsewhere_runs_too(tmp_path: Path):
    copy = tmp_path / "mine"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    result = exec_(str(copy), "--input", '"x"')
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- errors: exit 2


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("hello", "not JSON: Expecting value at line 1, column 1"),
        ('{"text": ', "not JSON: Expecting value at line 1, column 10"),
        ("[1, 2,]", "not JSON: Expecting value at line 1, column 7"),
    ],
    ids=["bare-word", "unfinished", "trailing-comma"],
)
def test_input_that_is_not_json_is_a_usage_error(given: str, expected: str):
    result = exec_(str(EXAMPLE), "--input", given)
    assert result.exit_code == 2
    assert f"Error: Invalid value for '--input': {expected}" in result.stderr
    assert "a JSON string needs its quotes too" in result.stderr


def test_a_file_that_is_not_json_is_named(tmp_path: Path):
    data = tmp_path / "input.json"
    data.write_text('{\n  "text": oops\n}\n', encoding="utf-8")
    result = exec_(str(EXAMPLE), "--input", f"@{data}")
    assert result.exit_code == 2
    assert (
        f"Invalid value for '--input': {data} is not JSON: Expecting value at line 2, column 11"
    ) in result.stderr


def test_standard_input_that_is_not_json():
    result = exec_(str(EXAMPLE), "--input", "-", stdin="")
    assert result.exit_code == 2
    assert "standard input is not JSON: Expecting value at line 1, column 1" in result.stderr


def test_a_file_that_cannot_be_read(tmp_path: Path):
    result = exec_(str(EXAMPLE), "--input", f"@{tmp_path / 'missing.json'}")
    assert result.exit_code == 2
    assert f"cannot read {tmp_path / 'missing.json'}: No such file or directory" in result.stderr


def test_input_is_required():
    result = exec_(str(EXAMPLE))
    assert result.exit_code == 2
    assert "Missing option '--input'" in result.stderr


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("top", "Invalid value for --set: expected KEY=VALUE, got 'top'"),
        ("top=[1", "Invalid value for --set: the value of 'top' is not valid YAML"),
    ],
    ids=["no-equals", "bad-yaml"],
)
def test_a_bad_set_is_a_usage_error(item: str, expected: str):
    result = exec_(str(EXAMPLE), "--input", "1", "--set", item)
    assert result.exit_code == 2
    assert expected in result.stderr


def test_a_set_value_the_manifest_refuses():
    result = exec_(str(EXAMPLE), "--input", '"a"', "--set", "top=0")
    assert result.exit_code == 1
    assert "top" in result.stderr
    assert "at least 1" in result.stderr
