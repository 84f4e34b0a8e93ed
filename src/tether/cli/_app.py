"""The root ``tether`` group: global options, logging, and mapping errors to exit codes.

Exit codes: 0 success, 1 an error (printed as ``Error: ...`` plus a hint), 2 a
usage error (bad option or argument), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from tether import __version__, error_text
from tether.cli._types import NonEmptyPath
from tether.errors import TetherError

if TYPE_CHECKING:
    from tether import TetherConfig

__all__ = [
    "LazyGroup",
    "State",
    "TerminalLogHandler",
    "TetherGroup",
    "accept_config",
    "cli",
    "load_command",
    "log_without_tracebacks",
    "main",
    "pass_state",
]

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


@dataclass
class State:
    """What the global options decided, handed to every command."""

    config_path: Path | None = None
    plugin_paths: list[Path] = field(default_factory=list)
    verbose: bool = False
    _config: TetherConfig | None = None

    def use_config(self, path: Path | None) -> None:
        """A command's own ``--config`` (or FILE): it replaces the global one."""
        if path is not None:
            self.config_path = path
            self._config = None

    def config(self) -> TetherConfig:
        """The framework config (read once); an empty one when no file is given or found."""
        from tether import TetherConfig, load_config

        if self._config is None:
            self._config = load_config(self.config_path) if self.config_path else TetherConfig()
        return self._config


pass_state = click.make_pass_decorator(State, ensure=True)


def _default_config() -> Path | None:
    from tether import CONFIG_NAMES

    env = os.environ.get("TETHER_CONFIG")
    if env:
        return Path(env)
    return next((Path(n) for n in CONFIG_NAMES if Path(n).is_file()), None)


class LogFileHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines appended to ``--log-file``. A write that fails (a full disk) is reported
    once on standard error, in one line, and logging to the file stops."""

    def __init__(self, path: Path) -> None:
        super().__init__(open_log_file(path))
        self.path = path
        self._failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self._failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: ARG002, N802 - logging's name
        from tether.cli._output import err

        self._failed = True
        err.print(
            f"[bold red]Error:[/] cannot write to the log file {self.path}: "
            f"{_reason(sys.exc_info()[1])}; logging to it stopped",
            markup=True,
            highlight=False,
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.close()
        super().close()


class TerminalLogHandler(logging.Handler):
    """Log lines on standard error, laid out by rich's ``RichHandler``, made (and rich
    imported) at the first line: a command that logs nothing, ``--help`` say, skips it."""

    def __init__(self, *, show_time: bool) -> None:
        super().__init__()
        self._show_time = show_time
        self._rich: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._rich is None:
            from rich.logging import RichHandler

            from tether.cli._output import err

            self._rich = RichHandler(console=err, show_path=False, show_time=self._show_time)
            self._rich.setFormatter(self.formatter)
        self._rich.emit(record)


def open_log_file(path: Path) -> TextIO:
    """``path`` opened to append UTF-8 text; an ``OSError`` whose message says why not.

    A FIFO nobody reads is refused at once (``O_NONBLOCK``) instead of blocking the CLI.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        parent = path.parent
        if exc.errno == errno.ENOENT and not parent.is_dir():
            raise OSError(exc.errno, f"the directory {parent} does not exist") from None
        if exc.errno == errno.ENXIO:
            raise OSError(exc.errno, "it is a FIFO no process is reading") from None
        raise
    os.set_blocking(fd, True)
    return open(fd, "a", encoding="utf-8", errors="backslashreplace")  # noqa: PTH123


def _reason(exc: BaseException | None) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return error_text(exc) if exc is not None else "unknown error"


def _setup_logging(ctx: click.Context, level: str, verbose: bool, log_file: Path | None) -> None:
    chosen = "DEBUG" if verbose else level.upper()
    handlers: list[logging.Handler] = []
    if log_file is not None:
        try:
            handlers.append(LogFileHandler(log_file))
        except OSError as exc:
            raise click.BadParameter(
                f"cannot write to {log_file}: {_reason(exc)}",
                ctx,
                param_hint="'--log-file'",
            ) from None
    else:
        handlers.append(TerminalLogHandler(show_time=verbose))
    logging.basicConfig(level=chosen, handlers=handlers, format="%(name)s: %(message)s", force=True)


def _drop_traceback(record: logging.LogRecord) -> bool:
    record.exc_info = None
    record.exc_text = None
    return True


@contextlib.contextmanager
def log_without_tracebacks(state: State) -> Iterator[None]:
    """Log lines on the terminal without their tracebacks, unless ``--verbose``: for a
    command that reports the failure itself (``--log-file`` keeps them)."""
    handlers = [
        h
        for h in logging.getLogger().handlers
        if not isinstance(h, logging.FileHandler | LogFileHandler)
    ]
    if state.verbose or not handlers:
        yield
        return
    for handler in handlers:
        handler.addFilter(_drop_traceback)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(_drop_traceback)


class ReportedError(click.ClickException):
    """A ``TetherError`` on its way out: ``Error: <message>``, the hint, exit code 1."""

    exit_code = EXIT_ERROR

    def __init__(self, error: TetherError, *, verbose: bool) -> None:
        super().__init__(error_text(error))  # a plugin's own TetherError may be odd
        self.error = error
        self.verbose = verbose

    def show(self, file: object = None) -> None:  # noqa: ARG002 - output goes to stderr
        from tether.cli._output import print_error

        print_error(self.error)
        if self.verbose:
            import traceback

            shown: BaseException = self.error
            if shown.__traceback__ is None and shown.__cause__ is not None:
                shown = shown.__cause__  # an OSError or a bug, reported in tether's words
            # Python's own layout: whole paths at any terminal width, ready to paste
            click.echo("".join(traceback.format_exception(shown)).rstrip("\n"), err=True)


class LazyGroup(click.Group):
    """A group whose commands are imported when one is used.

    ``lazy`` maps each command's name to where it lives (``"module:attribute"``) and its
    short help, so ``--help`` lists the commands without importing any of them. A
    command is imported when it is invoked (or its own ``--help`` is asked for), and
    then given ``--config`` like every command (:func:`accept_config`). A test checks
    that each short help here is the command's own.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        lazy: Mapping[str, tuple[str, str]] | None = None,
        **attrs: Any,  # noqa: ANN401 - click.Group's keyword arguments
    ) -> None:
        super().__init__(name, **attrs)
        self.lazy: dict[str, tuple[str, str]] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: ARG002 - click's signature
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.commands[cmd_name] = load_command(self.lazy[cmd_name][0])  # as add_command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """What click prints under ``Commands:``, from the table for commands not loaded."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is None:  # click's own shortening, of the table's text
                command = click.Command(name, help=self.lazy[name][1])
                rows.append((name, command.get_short_help_str(limit)))
            elif not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def load_command(where: str) -> click.Command:
    """The command at ``"module:attribute"``, imported, with ``--config`` given to it."""
    module, _, attribute = where.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{where} is not a click command")
    accept_config(command)
    return command


class TetherGroup(LazyGroup):
    """A group that turns every error into ``Error: ...`` + hint and exit code 1.

    tether's own errors print their message and hint. An ``OSError`` (a disk full, a
    path that cannot be read) prints what failed and on which file. Anything else but
    ``SystemExit`` (an exit asked for, by uvicorn say) and ``KeyboardInterrupt`` (130) is
    a bug in tether, a ``CancelledError`` or a plugin's own ``BaseException`` that got
    past the runtime included: it prints ``Error: internal error: TYPE: MESSAGE`` and
    how to see the traceback (``--verbose``), never the traceback itself.
    """

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except TetherError as exc:
            raise ReportedError(exc, verbose=_is_verbose(ctx)) from exc
        except KeyboardInterrupt:
            from tether.cli._output import err

            err.print("Interrupted.")
            ctx.exit(EXIT_INTERRUPTED)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click ends quietly when standard output is closed
            raise ReportedError(_os_error(exc), verbose=_is_verbose(ctx)) from exc
        except SystemExit:
            raise
        except BaseException as exc:  # CancelledError or a class of a plugin's own, escaped
            raise ReportedError(_internal_error(exc), verbose=_is_verbose(ctx)) from exc


def _is_verbose(ctx: click.Context) -> bool:
    state = ctx.find_object(State)
    return bool(state and state.verbose)


def _os_error(exc: OSError) -> TetherError:
    where = f"{exc.filename}: " if exc.filename is not None else ""
    error = TetherError(
        f"{where}{exc.strerror or error_text(exc)}",
        hint="check the path, its permissions and the free space",
    )
    error.__cause__ = exc
    return error


def _internal_error(exc: BaseException) -> TetherError:
    error = TetherError(
        f"internal error: {type(exc).__name__}: {error_text(exc)}",
        hint="this is a bug in tether, not in your input: rerun with --verbose for the "
        "traceback and report it",
    )
    error.__cause__ = exc
    return error


@click.group(
    cls=TetherGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="tether")
@click.option(
    "--config",
    "config_path",
    type=NonEmptyPath(path_type=Path, dir_okay=False, exists=True),
    help="Framework config file (YAML, JSON or TOML). Default: $TETHER_CONFIG, else "
    "./tether.yaml|.yml|.toml|.json if present.",
)
@click.option(
    "--plugin-path",
    "plugin_paths",
    multiple=True,
    type=NonEmptyPath(path_type=Path, file_okay=False),
    help="Extra directory to search for plugins (repeatable); searched after $TETHER_PLUGIN_PATH.",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="Log level for tether and plugin loggers.",
)
@click.option("--verbose", "-v", is_flag=True, help="Debug logging and full tracebacks.")
@click.option(
    "--log-file",
    type=NonEmptyPath(path_type=Path, dir_okay=False),
    help="Write logs to this file instead of the terminal.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: Path | None,
    plugin_paths: tuple[Path, ...],
    log_level: str,
    verbose: bool,
    log_file: Path | None,
) -> None:
    """tether: discover, validate, resolve, load and run plugins.

    \b
    Plugins are directories with a manifest (plugin.yaml, plugin.json or
    plugin.toml). They are searched in ./plugins, ~/.tether/plugins,
    /usr/local/lib/tether/plugins, $TETHER_PLUGIN_PATH, --plugin-path, the
    config's plugins.directory and plugins.paths, the plugins that ship with tether
    (the built-in workloads), and installed packages exposing the `tether.plugins`
    entry point group.
    """
    _setup_logging(ctx, log_level, verbose, log_file)
    ctx.obj = State(
        config_path=config_path or _default_config(),
        plugin_paths=list(plugin_paths),
        verbose=verbose,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``tether`` script."""
    cli.main(args=argv, prog_name="tether")


def _use_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    state = ctx.find_object(State)
    if state is not None:
        state.use_config(value)


def accept_config(command: click.Command) -> None:
    """Give ``command`` (or every command of a group, as they are loaded) that has no
    ``--config`` of its own one that does what the global ``--config`` does, so it may
    come after the command's name."""
    if isinstance(command, click.Group):
        for child in command.commands.values():
            accept_config(child)  # a LazyGroup's other commands: when they are loaded
    elif not any("--config" in getattr(p, "opts", ()) for p in command.params):
        command.params.append(
            click.Option(
                ["--config"],
                type=NonEmptyPath(path_type=Path, dir_okay=False, exists=True),
                expose_value=False,
                is_eager=True,
                callback=_use_config,
                metavar="FILE",
                help="Framework config file, as the global --config.",
            )
        )
