"""``tether plugins exec``: run an executor plugin once on one input and print its output.

The plugin is brought up in a fresh manager by ``tether.hosts.executor.execute_once``
(load, initialize, start, ``execute(input)``, stop, unload). Exit codes: 0 done; 1 the
plugin is not an executor, cannot be loaded, raised or timed out; 2 a usage error
(an ``--input`` that is not JSON, a bad ``--set``).
"""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from tether import (
    Manifest,
    PluginConfig,
    TetherConfig,
    blame,
    describe_error,
    error_text,
    run_host,
)
from tether.cli._app import State, log_without_tracebacks, pass_state
from tether.cli._shared import locate_plugin, parse_settings, plugin_settings
from tether.errors import ContractError, TetherError
from tether.hosts.executor import execute_once

__all__ = ["plugins_exec"]


_Data = TypeVar("_Data", str, bytes)

MAX_INPUT = 16 * 1024 * 1024
"""The most ``--input`` reads from a file or standard input (bytes or characters)."""


def _read_input(ctx: click.Context, param: click.Parameter, value: str) -> object:
    """``--input``: JSON text, ``@FILE`` (JSON in a file) or ``-`` (JSON on standard input)."""
    source = None
    text = value
    if value == "-":
        source = "standard input"
        text = _read_text(ctx, param, source, lambda: _bounded(sys.stdin.read(MAX_INPUT + 1)))
    elif value.startswith("@"):
        path = Path(value[1:])
        source = str(path)
        text = _read_text(ctx, param, source, lambda: _read_file(path))
    where = f"{source} is not JSON" if source else "not JSON"
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        advice = "" if source else "; a JSON string needs its quotes too: --input '\"hello\"'"
        raise click.BadParameter(
            f"{where}: {exc.msg} at line {exc.lineno}, column {exc.colno}{advice}", ctx, param
        ) from None
    except RecursionError:
        reason = "nested too deeply"
    except ValueError as exc:  # an integer past Python's digit limit
        reason = str(exc)
    raise click.BadParameter(f"{where} tether can read: {reason}", ctx, param)


def _read_file(path: Path) -> str:
    """A regular file's text: a FIFO or a device (``/dev/zero``) is refused unread."""
    if not stat.S_ISREG(path.stat().st_mode):
        raise ValueError("not a regular file (a directory, a FIFO or a device)")
    with path.open("rb") as file:
        return _bounded(file.read(MAX_INPUT + 1)).decode("utf-8")


def _bounded(data: _Data) -> _Data:
    if len(data) > MAX_INPUT:
        raise ValueError(f"larger than {MAX_INPUT // (1024 * 1024)} MiB")
    return data


def _read_text(
    ctx: click.Context, param: click.Parameter, source: str, read: Callable[[], str]
) -> str:
    try:
        return read()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.BadParameter(f"cannot read {source}: {reason}", ctx, param) from None


@click.command("exec")
@click.argument("name")
@click.option(
    "--input",
    "data",
    required=True,
    metavar="JSON|@FILE|-",
    callback=_read_input,
    help="The input, as JSON text; @FILE reads it from a file, - from standard input.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A config value for the plugin (repeatable; VALUE is parsed as YAML).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "text"]),
    default="json",
    show_default=True,
    help="json: the output as JSON; text: a string output as it is, anything else as JSON.",
)
@pass_state
def plugins_exec(
    state: State, name: str, data: object, settings: tuple[str, ...], fmt: str
) -> None:
    """Run the executor plugin NAME once on the input and print what execute() returns.

    \b
    NAME is a plugin directory, or a plugin name found through the config's entries
    and the search paths. The plugin's manifest must say `provides: [executor]`.
    tether plugins exec examples/plugins/word-count-plugin --input '"to be or not to be"'
    echo '{"text": "a b a"}' | tether plugins exec word-count-plugin --input -
    """
    values = parse_settings(settings)
    manifest = locate_plugin(state, name)
    _require_executor(manifest)
    _require_no_dependencies(manifest)
    directory = manifest.directory
    if directory is None:
        raise TetherError(
            f"plugin '{manifest.name}' has no manifest file to load it from",
            plugin=manifest.name,
            hint="give the plugin's directory, or add a plugin.yaml beside its package",
        )
    config = plugin_settings(state, manifest.name, values)
    with log_without_tracebacks(state):
        output = _execute(manifest.name, directory, data, framework=state.config(), settings=config)
    click.echo(_render(manifest.name, output, fmt))


def _require_executor(manifest: Manifest) -> None:
    if "executor" not in manifest.provides:
        where = manifest.source or manifest.name
        raise ContractError(
            f"plugin '{manifest.name}' is not an executor plugin: its manifest does not say "
            "`provides: [executor]`",
            plugin=manifest.name,
            path=manifest.source,
            hint=f"add `provides: [executor]` to {where} and an execute(input) method to the "
            "plugin; `tether plugins info NAME` shows what a plugin provides",
        )


def _require_no_dependencies(manifest: Manifest) -> None:
    required = [d.name for d in manifest.dependencies if not d.optional]
    if required:
        raise TetherError(
            f"plugin '{manifest.name}' requires {', '.join(map(repr, required))}, and "
            "`tether plugins exec` loads one plugin alone",
            plugin=manifest.name,
            path=manifest.source,
            hint="run it in a host that loads its dependencies (tether.hosts.executor."
            "Executor), or mark the dependencies optional",
        )


def _execute(
    name: str, directory: Path, data: object, *, framework: TetherConfig, settings: PluginConfig
) -> object:
    """Run plugin ``name`` once; whatever the plugin raises is a ``TetherError`` naming it.

    An ``Exception`` that is not the plugin's (``tether.blame`` names nobody) is a bug of
    tether's and keeps its traceback; only a real Ctrl-C (exactly ``KeyboardInterrupt``)
    interrupts.
    """
    try:
        execution = run_host(execute_once(directory, data, config=framework, settings=settings))
    except TetherError:
        raise
    except Exception as exc:
        plugin = blame(exc)
        if plugin is None:
            raise  # not the plugin's: a bug of tether's, shown with its traceback
        raise TetherError(
            f"plugin '{plugin}' failed: execute() raised {describe_error(exc)}",
            plugin=plugin,
            hint="check the input against what the plugin expects; --verbose shows the "
            "plugin's traceback",
        ) from exc
    except BaseException as exc:  # tether raises none: the plugin's, wherever it was raised
        if type(exc) is KeyboardInterrupt:
            raise
        raise TetherError(
            f"plugin '{name}' failed: {describe_error(exc)}",
            plugin=name,
            hint="a plugin reports a failure with an Exception; a BaseException such as "
            "SystemExit would end its host; --verbose shows the plugin's traceback",
        ) from exc
    return execution.output


def _render(plugin: str, output: object, fmt: str) -> str:
    """The output as text to print: JSON, or for ``--format text`` a string as it is and
    anything that is not JSON with ``str()``; refused when it cannot be written as UTF-8."""
    if fmt == "text" and isinstance(output, str):
        return _encodable(plugin, output)
    try:
        text = json.dumps(output, indent=2, ensure_ascii=False, allow_nan=False)
    except BaseException as exc:  # a dict subclass's items() is the plugin's code
        if type(exc) is KeyboardInterrupt:
            raise
        if fmt == "text":
            return _encodable(plugin, _as_text(plugin, output))
        raise TetherError(
            f"plugin '{plugin}' returned a {type(output).__name__}, which is not JSON: "
            f"{_reason(exc)}",
            plugin=plugin,
            hint="return dicts, lists, strings, numbers, booleans or None from execute(); "
            "--format text prints any other value with str()",
        ) from None
    return _encodable(plugin, text)


def _as_text(plugin: str, output: object) -> str:
    try:
        return str(output)
    except BaseException as exc:  # the output's __str__ is the plugin's code
        if type(exc) is KeyboardInterrupt:
            raise
        raise TetherError(
            f"plugin '{plugin}' returned a {type(output).__name__} that is neither JSON nor "
            f"printable with str(): {_reason(exc)}",
            plugin=plugin,
            hint="return dicts, lists, strings, numbers, booleans or None from execute()",
        ) from None


def _reason(error: BaseException) -> str:
    """Why a value could not be written: the encoder's own words, or what the value's
    code (a dict subclass's ``items()``, an ``__str__``) raised."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if type(error) in (TypeError, ValueError):
        return error_text(error)
    return describe_error(error)


def _encodable(plugin: str, text: str) -> str:
    """``text``, refused when it holds a lone surrogate (it cannot be written as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TetherError(
            f"plugin '{plugin}' returned text that is not valid Unicode: a lone surrogate "
            f"(U+{ord(text[exc.start]):04X}) cannot be written as UTF-8",
            plugin=plugin,
            hint="return valid strings: a lone surrogate usually comes from decoding bytes "
            "with errors='surrogateescape'; decode them with errors='replace'",
        ) from None
    return text
