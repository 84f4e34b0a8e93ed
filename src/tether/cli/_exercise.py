"""``tether plugins test``: exercise one plugin through its whole life in a fresh manager.

The steps: load (its dependencies first), initialize, describe (a ``Describable``
plugin's own ``description()``/``author()``), start, health check (a
``HealthCheckable`` plugin), stop, cleanup. They stop at the first failure; cleanup
still runs when the plugin was loaded. A ``Configurable`` plugin that refuses its
config in ``validate_config`` fails the load step (the manager raises ``ConfigError``).

Whatever the plugin does, the command reports it and exits: a ``SystemExit`` or
another ``BaseException`` it raises fails the step it raised in, with the plugin's
frame shown; a step past its time limit fails, abandoned; threads it leaves running
are listed, and ones that are not daemons do not keep the command from exiting. Calls
still in flight when the plugin stops (a health check it left running) get no longer
than ``--timeout`` to finish. Only a real Ctrl-C interrupts (130).
"""

from __future__ import annotations

import linecache
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.table import Table

from tether import (
    CapabilityUse,
    Describable,
    HealthCheckable,
    Manifest,
    PluginConfig,
    PluginManager,
    describe_error,
    error_text,
    is_interruption,
    plugin_frame,
    run_host,
)
from tether.cli._app import State, log_without_tracebacks, pass_state
from tether.cli._output import err, out, print_error
from tether.cli._shared import (
    discover_plugins,
    fail,
    locate_plugin,
    parse_settings,
    plugin_settings,
    print_observed,
)
from tether.cli._types import Seconds
from tether.errors import (
    HealthCheckError,
    PluginImportError,
    StepTimeoutError,
    StopAllError,
    TetherError,
)

__all__ = ["plugins_test"]


def _name_or_path(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A path that does not exist is a usage error; a bare name is looked up later."""
    looks_like_path = "/" in value or value.startswith(".")
    if looks_like_path and _existing(value) is None:
        raise click.BadParameter(f"Path {value!r} does not exist.", ctx, param)
    return value


def _existing(value: str) -> Path | None:
    try:
        return Path(value) if Path(value).exists() else None
    except (OSError, ValueError):  # a name too long to look up, a NUL
        return None


@click.command("test")
@click.argument("target", metavar="NAME|PATH", callback=_name_or_path)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="A config value for the plugin (repeatable; VALUE is parsed as YAML).",
)
@click.option(
    "--timeout", default=10.0, show_default=True, type=Seconds(), help="Seconds allowed for stop()."
)
@click.option(
    "--isolation",
    type=click.Choice(["inprocess", "process"]),
    default=None,
    help="Run it in the host's process or in a worker process of its own (default: what its "
    "config entry, else its manifest, says).",
)
@pass_state
def plugins_test(
    state: State, target: str, settings: tuple[str, ...], timeout: float, isolation: str | None
) -> None:
    """Load, initialize, start, stop and clean up a plugin (NAME or PATH) in a fresh manager.

    PATH is a plugin directory or manifest file; NAME is found through the config's
    entries and the search paths (an installed wheel's included).

    Required dependencies are found through the search paths and brought up first.
    A plugin that describes itself (description(), author()) is shown as it does; one
    with a health_check() is checked after start. --isolation process runs it in a
    worker process, as `isolation: process` would. Prints each step's time; exits 1
    if any step fails (raised, even SystemExit, or ran past its time limit).
    """
    manifest = locate_plugin(state, target)
    path = _existing(target) or manifest.directory
    if path is None:
        raise fail(
            f"plugin '{manifest.name}' has no manifest file to load it from",
            "install it with a plugin.yaml beside its package, or give its directory",
        )
    config = plugin_settings(state, manifest.name, parse_settings(settings))
    if isolation is not None:
        config = config.model_copy(update={"isolation": isolation})
    before = set(threading.enumerate())
    with log_without_tracebacks(state):  # each failure is reported below, with its frame
        run = run_host(_exercise(state, manifest, path, config, timeout))
    _report(run, manifest)
    stuck = [t for t in _non_daemons() if t not in before]
    failed = any(step.error is not None for step in run.steps)
    error = fail(f"plugin '{manifest.name}' failed its test", "see the failed step above")
    if stuck:  # they would keep the interpreter from exiting: leave without them
        names = ", ".join(t.name for t in stuck)
        err.print(f"[yellow]Not waiting for non-daemon thread(s) left running:[/] {names}")
        if failed:
            print_error(error)
        _exit_now(1 if failed else 0)
    if failed:
        raise error


def _report(run: _Run, manifest: Manifest) -> None:
    out.print(f"[bold]{manifest.name}[/] {manifest.version}")
    for label, value in run.described:
        out.print(f"  {label}: {value}", markup=False)
    table = Table("step", "result", "time", box=None)
    for step in run.steps:
        result = "[green]ok[/]" if step.error is None else "[red]failed[/]"
        table.add_row(step.label, result, f"{step.seconds * 1000:.1f} ms")
    out.print(table)
    failures = [step for step in run.steps if step.error is not None]
    for step in failures:
        out.print(f"\n[red]{step.label} failed:[/]")
        out.print(step.error, markup=False)
        if step.frame:
            out.print(step.frame, markup=False)
        if step.hint:
            out.print(f"hint: {step.hint}", markup=False)
    for plugin, threads in run.threads.items():
        out.print(
            f"\n[yellow]Threads plugin '{plugin}' left running:[/] {', '.join(threads)}",
            highlight=False,
        )
    print_observed(run.observed)


def _non_daemons() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]


def _exit_now(code: int) -> None:
    """Exit at once, without joining threads a plugin left (they would never end)."""
    out.file.flush()
    err.file.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    _hard_exit(code)


_hard_exit: Callable[[int], None] = os._exit


_DRAIN = 5.0  # the manager's default drain_timeout


@dataclass(frozen=True, slots=True)
class _Step:
    label: str
    error: str | None
    seconds: float
    hint: str | None = None
    frame: str | None = None


@dataclass(slots=True)
class _Run:
    directory: Path | None
    steps: list[_Step] = field(default_factory=list)
    described: list[tuple[str, str]] = field(default_factory=list)
    observed: list[CapabilityUse] = field(default_factory=list)
    threads: dict[str, tuple[str, ...]] = field(default_factory=dict)

    async def step(self, label: str, action: Callable[[], Awaitable[object]]) -> bool:
        """Run one step, record its outcome and time; whether it passed."""
        started = time.perf_counter()
        try:
            await action()
        except TetherError as exc:
            self._failed(label, exc, error_text(exc), exc.hint, started)
            return False
        except Exception:
            raise  # not the plugin's (its exceptions are TetherErrors by now): a bug of tether's
        except BaseException as exc:
            if is_interruption(exc, self.directory):
                raise
            self._failed(label, exc, f"the plugin raised {describe_error(exc)}", None, started)
            return False
        self.steps.append(_Step(label, None, time.perf_counter() - started))
        return True

    def _failed(
        self, label: str, exc: BaseException, text: str, hint: str | None, started: float
    ) -> None:
        seconds = time.perf_counter() - started
        self.steps.append(_Step(label, text, seconds, hint, _frame(exc, self.directory)))


def _frame(error: BaseException, directory: Path | None) -> str | None:
    """Where in the plugin's files the failure happened: ``at FILE, line N, in F`` and
    the line's text."""
    if isinstance(error, StopAllError) and error.failures:
        error = error.failures[0]
    if isinstance(error, StepTimeoutError | PluginImportError) and error.file is not None:
        file, line, function = str(error.file), error.line or 0, ""
    else:
        found = plugin_frame(error, directory) if directory is not None else None
        if found is None:
            return None
        file, line, function = found.filename, found.lineno or 0, found.name
    where = f"at {file}, line {line}" + (f", in {function}" if function else "")
    text = linecache.getline(file, line).strip() if line else ""
    return f"{where}\n    {text}" if text else where


async def _exercise(
    state: State, manifest: Manifest, path: Path, config: PluginConfig, timeout: float
) -> _Run:
    # Calls in flight when it stops are the test's own (a health check left running):
    # they get no longer than stop() does.
    manager = PluginManager(
        config=state.config(), stop_timeout=timeout, drain_timeout=min(timeout, _DRAIN)
    )
    name = manifest.name
    run = _Run(manifest.directory)
    for dep_name, dep_path in _dependency_paths(state, manifest):
        settings = state.config().entry(dep_name)
        loaded = await run.step(
            f"load dependency {dep_name}",
            lambda p=dep_path, s=settings: manager.load_plugin(p, s),  # type: ignore[misc]
        )
        if not loaded:
            await manager.aclose()
            return run
    _ = (
        await run.step("load", lambda: manager.load_plugin(path, config))
        and await run.step("initialize", manager.initialize_all)
        and await _describe(run, manager, name)
        and await run.step("start", manager.start_all)
        and await _health_check(run, manager, name)
        and await run.step("stop", lambda: manager.stop_all(timeout=timeout))
    )
    run.observed = manager.undeclared_capabilities(name)
    if manager.is_loaded(name):
        await run.step("cleanup", lambda: manager.unload_plugin(name, force=True))
    await manager.aclose()
    run.threads = dict(manager.leftover_threads)
    return run


async def _describe(run: _Run, manager: PluginManager, name: str) -> bool:
    """A ``Describable`` plugin's own description and author, called through its handle."""
    if not isinstance(manager.get_plugin(name), Describable):
        return True
    handle = manager.get_handle(name)

    async def describe() -> None:
        for method in ("description", "author"):
            try:
                value = await handle.acall(method)
            except TetherError:
                raise
            except BaseException as exc:
                if not isinstance(exc, Exception) and is_interruption(exc, run.directory):
                    raise
                raise TetherError(
                    f"plugin '{name}': {method}() raised {describe_error(exc)}",
                    plugin=name,
                    hint=f"{method}() of a Describable plugin must return a string",
                ) from exc
            if not isinstance(value, str):
                raise TetherError(
                    f"plugin '{name}': {method}() returned {type(value).__name__}, not a string",
                    plugin=name,
                    hint=f"{method}() of a Describable plugin must return a string",
                )
            run.described.append((f"{method}()", value))

    return await run.step("describe", describe)


async def _health_check(run: _Run, manager: PluginManager, name: str) -> bool:
    """A ``HealthCheckable`` plugin's ``health_check()``, run once after start."""
    if not isinstance(manager.get_plugin(name), HealthCheckable):
        return True

    async def check() -> None:
        result = (await manager.check_health(name)).get(name)
        if result is None:
            raise HealthCheckError(name, f"it is {manager.get_status(name).value}, not running")
        if not result.ok:
            raise HealthCheckError(name, result.error or "it failed")

    return await run.step("health check", check)


def _dependency_paths(state: State, manifest: Manifest) -> list[tuple[str, Path]]:
    required = [d for d in manifest.dependencies if not d.optional]
    if not required:
        return []
    result = discover_plugins(state)
    ordered: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(m: Manifest) -> None:
        for d in m.dependencies:
            if d.optional or d.name in seen:
                continue
            seen.add(d.name)
            found = result.get(d.name)
            if found is None or found.manifest.source is None:
                continue  # the load step reports the missing dependency
            visit(found.manifest)
            ordered.append((d.name, found.manifest.source.parent))

    visit(manifest)
    return ordered
