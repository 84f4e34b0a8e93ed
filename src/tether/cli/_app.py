"""The root ``tether`` group: global options, logging, and mapping errors to exit codes.

Exit codes: 0 success, 1 an error (printed as ``Error: ...`` plus a hint), 2 a
usage error (bad option or argument), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import click

from tether import CONFIG_NAMES, TetherConfig, __version__, error_text, load_config
from tether.cli._output import err, print_error
from tether.cli._types import NonEmptyPath
from tether.errors import TetherError

__all__ = [
    "State",
    "accept_config_everywhere",
    "cli",
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
        if self._config is None:
            self._config = load_config(self.config_path) if self.config_path else TetherConfig()
        return self._config


pass_state = click.make_pass_decorator(State, ensure=True)


def _default_config() -> Path | None:
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
        from rich.logging import RichHandler

        handlers.append(RichHandler(console=err, show_path=False, show_time=verbose))
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
        print_error(self.error)
        if self.verbose:
            import traceback

            shown: BaseException = self.error
            if shown.__traceback__ is None and shown.__cause__ is not None:
                shown = shown.__cause__  # an OSError or a bug, reported in tether's words
            # Python's own layout: whole paths at any terminal width, ready to paste
            click.echo("".join(traceback.format_exception(shown)).rstrip("\n"), err=True)


class TetherGroup(click.Group):
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


def accept_config_everywhere(group: click.Group) -> None:
    """Give every command under ``group`` that has no ``--config`` of its own one that
    does what the global ``--config`` does, so it may come after the command's name."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            accept_config_everywhere(command)
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
