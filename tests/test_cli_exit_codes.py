"""Exit codes, as docs/reference/cli.md gives them: 2 for invalid arguments, 1 for errors
found doing the work, never a traceback.

The first tests walk the real click command tree, so a command added later is
covered without a change here: its --help exits 0, an unknown option exits 2, and a
command that takes a required argument exits 2 without it. The table below holds
bad values for the options and arguments, each a usage error naming what it refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from tether.cli import cli

USAGE, ERROR = 2, 1


def _walk(
    group: click.Group, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    context = click.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, (*path, name))


COMMANDS = list(_walk(cli, ()))
IDS = [" ".join(path) for path, _ in COMMANDS]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="tether")


def assert_clean(result: Result) -> None:
    """No traceback, and no exception but click's own way out."""
    assert "Traceback" not in result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def assert_usage_error(result: Result, named: str) -> None:
    """Exit 2 and click's `Error: ...` naming the option or argument (after the usage line,
    when click gives one)."""
    assert_clean(result)
    assert result.exit_code == USAGE, result.output + result.stderr
    stderr = " ".join(result.stderr.split())
    assert "Error: " in stderr
    assert named in stderr, stderr


def test_the_tree_has_every_group_and_command():
    names = set(IDS)
    assert {"bench", "serve", "demo", "plugins", "config", "workloads"} <= names
    assert {"plugins exec", "plugins new", "config show", "workloads list"} <= names
    assert len(TAKING_ARGUMENTS) >= 5  # exec, info, new, test, validate...


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_command_has_help_that_exits_0(path, command):
    result = run(*path, "--help")
    assert_clean(result)
    assert result.exit_code == 0, result.stderr
    assert result.output.startswith(f"Usage: tether {' '.join(path)}")
    assert run(*path, "-h").output == result.output


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_an_unknown_option_is_a_usage_error_naming_it(path, command):
    assert_usage_error(run(*path, "--no-such-option"), "No such option '--no-such-option'")


def _required_arguments(command: click.Command) -> list[click.Argument]:
    return [p for p in command.params if p.required and isinstance(p, click.Argument)]


TAKING_ARGUMENTS = [(p, c) for p, c in COMMANDS if _required_arguments(c)]


@pytest.mark.parametrize(
    ("path", "command"), TAKING_ARGUMENTS, ids=[" ".join(p) for p, _ in TAKING_ARGUMENTS]
)
def test_a_missing_required_argument_is_a_usage_error_naming_it(path, command):
    name = _required_arguments(command)[0].human_readable_name
    assert_usage_error(run(*path), f"Missing argument '{name}")  # PATHS... for nargs=-1


@pytest.mark.parametrize(
    ("path", "command"),
    [(p, c) for p, c in COMMANDS if isinstance(c, click.Group)],
    ids=[i for i, (_, c) in zip(IDS, COMMANDS, strict=True) if isinstance(c, click.Group)],
)
def test_an_unknown_command_of_a_group_is_a_usage_error(path, command):
    assert_usage_error(run(*path, "no-such-command"), "No such command 'no-such-command'")


@pytest.mark.parametrize(
    ("path", "command"),
    [(p, c) for p, c in COMMANDS if not isinstance(c, click.Group)],
    ids=[i for i, (_, c) in zip(IDS, COMMANDS, strict=True) if not isinstance(c, click.Group)],
)
def test_every_commands_config_that_does_not_exist_is_a_usage_error(path, command, tmp_path):
    missing = str(tmp_path / "none.yaml")
    assert_usage_error(run(*path, "--config", missing), "Invalid value for '--config'")


def test_a_global_option_with_a_bad_value_is_a_usage_error(tmp_path):
    assert_usage_error(run("--log-level", "loud", "plugins", "list"), "'--log-level'")
    assert_usage_error(
        run("--config", str(tmp_path / "none.yaml"), "plugins", "list"), "'--config'"
    )
    assert_usage_error(run("--plugin-path", "", "plugins", "list"), "'--plugin-path'")
    assert_usage_error(
        run("--log-file", str(tmp_path / "no" / "t.log"), "plugins", "list"), "'--log-file'"
    )


# --------------------------------------------------------------------------- bad values

# (arguments, what the error names). Nothing runs: each is refused while parsing.
BAD_VALUES: list[tuple[tuple[str, ...], str]] = [
    # tether bench: durations, counts, rates, choices, settings, files
    (("bench", "-w", "tpcb", "-T", "5x"), "Invalid value for '--duration': not a duration: '5x'"),
    (("bench", "-w", "tpcb", "-T", "0s"), "Invalid value for '--duration'"),
    (("bench", "-w", "tpcb", "--warmup", "soon"), "Invalid value for '--warmup'"),
    (
        ("bench", "-w", "tpcb", "-c", "0"),
        "Invalid value for '--clients': must be an integer from 1",
    ),
    (("bench", "-w", "tpcb", "-c", "-3"), "Invalid value for '--clients'"),
    (("bench", "-w", "tpcb", "-c", "many"), "Invalid value for '--clients'"),
    (("bench", "-w", "tpcb", "-t", "-5"), "Invalid value for '--transactions'"),
    (("bench", "-w", "tpcb", "-R", "nan"), "Invalid value for '--rate'"),
    (("bench", "-w", "tpcb", "-R", "-1"), "Invalid value for '--rate'"),
    (("bench", "-w", "tpcb", "-j", "0"), "Invalid value for '--processes'"),
    (("bench", "-w", "tpcb", "-j", "4", "-c", "2"), "Invalid value for '--processes'"),
    (("bench", "-w", "tpcb", "--max-error-rate", "lots"), "Invalid value for '--max-error-rate'"),
    (("bench", "-w", "tpcb", "--max-error-rate", "150%"), "Invalid value for '--max-error-rate'"),
    (("bench", "-w", "tpcb", "--seed", "x"), "Invalid value for '--seed'"),
    (("bench", "-w", "tpcb", "--format", "xml"), "Invalid value for '--format'"),
    (("bench", "-w", "tpcb", "--set", "noequals"), "Invalid value for --set: expected KEY=VALUE"),
    (("bench", "-w", "tpcb", "--dsn", ""), "Invalid value for '--dsn'"),
    (("bench", "-w", "tpcb", "--pgdata", ""), "Invalid value for '--pgdata'"),
    (("bench", "-w", "tpcb", "-T", "1s", "-t", "5"), "give --duration or --transactions, not both"),
    (("bench", "-w", "tpcb", "--report", "{tmp}/no/r.html"), "Invalid value for '--report'"),
    (("bench", "-w", "tpcb", "--report", "{tmp}"), "Invalid value for '--report'"),
    (("bench", "--compare", "{tmp}/a.json", "{tmp}/b.json"), "Invalid value for '--compare'"),
    (("bench", "--compare", "{tmp}/a.json"), "Option '--compare' requires 2 arguments"),
    (("bench", "--config", "{tmp}/none.yaml"), "Invalid value for '--config'"),
    # tether serve
    (("serve", "--port", "70000"), "Invalid value for '--port'"),
    (("serve", "--port", "http"), "Invalid value for '--port'"),
    (("serve", "--graceful-timeout", "0"), "Invalid value for '--graceful-timeout'"),
    (("serve", "--host", ""), "Invalid value for '--host'"),
    # tether demo, config
    (("demo", "{tmp}/none.yaml"), "Invalid value for '[CONFIG_FILE]'"),
    (("config", "show", "{tmp}/none.yaml"), "Invalid value for '[FILE]'"),
    (("config", "validate", "{tmp}/none.yaml"), "Invalid value for '[FILE]'"),
    (("config", "show", "--format", "xml"), "Invalid value for '--format'"),
    # tether plugins
    (("plugins", "exec", "x", "--input", "{bad json"), "Invalid value for '--input': not JSON"),
    (("plugins", "exec", "x"), "Missing option '--input'"),
    (("plugins", "exec", "x", "--input", "1", "--format", "xml"), "Invalid value for '--format'"),
    (("plugins", "exec", "x", "--input", "1", "--set", "k"), "Invalid value for --set"),
    (("plugins", "test", "{tmp}/none"), "Invalid value for 'NAME|PATH'"),
    (("plugins", "test", "{tmp}", "--timeout", "-1"), "Invalid value for '--timeout'"),
    (("plugins", "graph", "--format", "png"), "Invalid value for '--format'"),
    (("plugins", "new", "Bad"), "Invalid value for 'NAME': invalid plugin name 'Bad'"),
    (("plugins", "new", "ok-name", "--format", "ini"), "Invalid value for '--format'"),
    (("plugins", "new", "ok-name", "--dir", ""), "Invalid value for '--dir'"),
    (("plugins", "health", "bad name"), "Invalid value for '[NAME]'"),
    (("plugins", "health", "--url", "ftp://x"), "Invalid value for '--url'"),
    (("plugins", "enable", "x", "--url", "http://"), "Invalid value for '--url'"),
    (("plugins", "disable", "x", "--token", ""), "Invalid value for '--token'"),
    (("plugins", "list", "extra"), "Got unexpected extra argument (extra)"),
    (("plugins", "reload", "x", "--strategy", "sometimes"), "Invalid value for '--strategy'"),
    (("plugins", "reload", "x", "--queue-timeout", "0"), "Invalid value for '--queue-timeout'"),
    (("plugins", "reload", "x", "--queue-timeout", "soon"), "Invalid value for '--queue-timeout'"),
    (("plugins", "reload", "x", "--max-queue-size", "0"), "Invalid value for '--max-queue-size'"),
    (("plugins", "reload", "x", "--grace-period", "-1s"), "Invalid value for '--grace-period'"),
    (("plugins", "rollback", "x", "--url", "ftp://x"), "Invalid value for '--url'"),
    (("plugins", "history", "x", "--limit", "0"), "Invalid value for '--limit'"),
    (("plugins", "history", "x", "--limit", "1001"), "Invalid value for '--limit'"),
]


@pytest.mark.parametrize(
    ("args", "named"), BAD_VALUES, ids=[" ".join(args) for args, _ in BAD_VALUES]
)
def test_a_bad_value_is_a_usage_error_naming_the_option(args, named, tmp_path):
    result = run(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert_usage_error(result, named.replace("{tmp}", str(tmp_path)))


# --------------------------------------------------------------------------- errors of the work

# Valid arguments, but the work fails: exit 1, `Error: ...`, no usage line.
WORK_ERRORS: list[tuple[tuple[str, ...], str]] = [
    (("plugins", "info", "nope"), "plugin not found: 'nope'"),
    (("plugins", "exec", "nope", "--input", "1"), "nope"),
    (("bench", "-w", "nope"), "workload not found: 'nope'"),
    (("bench", "-w", "tpcb", "-t", "5", "--dsn", "postgresql://u@127.0.0.1:1/x"), "127.0.0.1:1"),
    (("plugins", "disable", "x", "--url", "http://127.0.0.1:1"), "cannot reach the tether server"),
    (("plugins", "reload", "x", "--url", "http://127.0.0.1:1"), "cannot reach the tether server"),
    (("plugins", "history", "x", "--url", "http://127.0.0.1:1"), "cannot reach the tether server"),
]


@pytest.mark.parametrize(
    ("args", "named"), WORK_ERRORS, ids=[" ".join(args) for args, _ in WORK_ERRORS]
)
def test_an_error_found_doing_the_work_exits_1(args, named):
    result = run(*args)
    assert_clean(result)
    assert result.exit_code == ERROR, result.output + result.stderr
    assert "Usage:" not in result.stderr
    assert "Error: " in result.stderr
    assert named in " ".join(result.stderr.split())


def test_a_config_file_that_is_wrong_is_an_error_not_a_usage_error(tmp_path: Path):
    config = tmp_path / "tether.yaml"
    config.write_text("plugins:\n  enabled: maybe\n", encoding="utf-8")
    result = run("config", "validate", str(config))
    assert_clean(result)
    assert result.exit_code == ERROR, result.output + result.stderr
    assert "plugins.enabled" in result.stderr
