"""Every global option against error paths: the error is reported as ``Error: ...``
(with its hint), the exit code is the documented one, and nothing else breaks
(``-v`` once crashed on any error while showing the traceback)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tether.cli import cli

ERROR_PATHS = {
    "plugin-not-found": (["plugins", "info", "no-such-plugin"], "plugin not found"),
    "no-config": (["config", "validate"], "no config file given"),
    "bad-workload": (["bench", "--workload", "no-such-workload", "-t", "1"], "workload not found"),
    "exec-missing": (["plugins", "exec", "./no/such/dir", "--input", "1"], "no plugin directory"),
}


def _globals(tmp_path):
    log = tmp_path / "tether.log"
    return {
        "none": [],
        "verbose": ["--verbose"],
        "v": ["-v"],
        "log-level-debug": ["--log-level", "debug"],
        "log-level-error": ["--log-level", "error"],
        "log-file": ["--log-file", str(log)],
        "verbose-log-file": ["-v", "--log-file", str(log)],
        "plugin-path": ["--plugin-path", str(tmp_path)],
    }


@pytest.mark.parametrize("path", sorted(ERROR_PATHS))
@pytest.mark.parametrize(
    "option",
    [
        "none",
        "verbose",
        "v",
        "log-level-debug",
        "log-level-error",
        "log-file",
        "verbose-log-file",
        "plugin-path",
    ],
)
def test_every_global_option_reports_an_error_cleanly(tmp_path, monkeypatch, option, path):
    monkeypatch.chdir(tmp_path)  # no ./tether.yaml, no ./plugins around
    monkeypatch.delenv("TETHER_CONFIG", raising=False)
    args, message = ERROR_PATHS[path]
    result = CliRunner().invoke(cli, [*_globals(tmp_path)[option], *args])
    output = " ".join((result.output + result.stderr).split())
    assert result.exit_code == 1, output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert f"Error: {message}" in output
    if "verbose" in option or option == "v":
        assert "Traceback" in result.stderr  # the full trace, as -v promises
    else:
        assert "Traceback" not in output


def test_bench_help_shows_every_default():
    """Each bench option that has a default says what it is."""
    import re

    result = CliRunner().invoke(cli, ["bench", "--help"], terminal_width=200)
    assert result.exit_code == 0
    options = [
        o for o in re.split(r"\n  (?=-)", result.output.split("Options:", 1)[1]) if o.strip()
    ]
    assert len(options) > 15
    no_default = {"--config", "--set", "--quiet", "--report", "--compare", "--help"}
    for option in options:
        names = set(re.findall(r"--[a-z-]+", option.split("  ")[0]))
        if names & no_default:
            continue
        assert "default" in " ".join(option.split()), option


def _app_config(tmp_path):
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    return examples / "app.yaml"


@pytest.mark.parametrize(
    "args",
    [
        ["--config", "{c}", "config", "validate"],
        ["config", "validate", "--config", "{c}"],
        ["config", "validate", "{c}"],
        ["config", "show", "{c}"],
        ["plugins", "graph", "--config", "{c}"],
    ],
)
def test_config_is_taken_the_same_way_by_every_command(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TETHER_CONFIG", raising=False)
    config = str(_app_config(tmp_path))
    result = CliRunner().invoke(cli, [a.format(c=config) for a in args])
    assert result.exit_code == 0, result.output + result.stderr
    assert "auth-plugin" in result.output


def test_a_commands_config_that_does_not_exist_fails_as_the_global_one_does(tmp_path):
    missing = str(tmp_path / "none.yaml")
    after = CliRunner().invoke(cli, ["plugins", "list", "--config", missing])
    before = CliRunner().invoke(cli, ["--config", missing, "plugins", "list"])
    assert after.exit_code == before.exit_code == 2  # a usage error
    error = f"Error: Invalid value for '--config': File '{missing}' does not exist."
    assert error in " ".join(after.stderr.split())
    assert error in " ".join(before.stderr.split())
