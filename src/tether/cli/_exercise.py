"""``tether plugins test``: exercise one plugin through its whole life in a fresh manager.

The steps: load (its dependencies first), initialize, describe (a ``Describable``
plugin's own ``description()``/``author()``), start, health check (a
``HealthCheckable`` plugin), stop, cleanup. They stop at the first failure; cleanup
still runs when the plugin was loaded. A ``Configurable`` plugin that refuses its
config in ``validate_config`` fails the load step (the manager raises ``ConfigError``).
"""

from __future__ import annotations

import asyncio
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
    load_manifest,
)
from tether.cli._app import State, pass_state
from tether.cli._output import out
from tether.cli._shared import (
    discover_plugins,
    fail,
    parse_settings,
    plugin_settings,
    print_observed,
)
from tether.cli._types import Seconds
from tether.errors import HealthCheckError, TetherError

__all__ = ["plugins_test"]


@click.command("test")
@click.argument("path", type=click.Path(path_type=Path, exists=True))
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
@pass_state
def plugins_test(state: State, path: Path, settings: tuple[str, ...], timeout: float) -> None:
    """Load, initialize, start, stop and clean up the plugin at PATH in a fresh manager.

    Required dependencies are found through the search paths and brought up first.
    A plugin that describes itself (description(), author()) is shown as it does; one
    with a health_check() is checked after start. Prints each step's time; exits 1
    if any step fails.
    """
    manifest = load_manifest(path)
    config = plugin_settings(state, manifest.name, parse_settings(settings))
    run = asyncio.run(_exercise(state, manifest, path, config, timeout))
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
        if step.hint:
            out.print(f"hint: {step.hint}", markup=False)
    print_observed(run.observed)
    if failures:
        raise fail(f"plugin '{manifest.name}' failed its test", "see the failed step above")


@dataclass(frozen=True, slots=True)
class _Step:
    label: str
    error: str | None
    seconds: float
    hint: str | None = None


@dataclass(slots=True)
class _Run:
    steps: list[_Step] = field(default_factory=list)
    described: list[tuple[str, str]] = field(default_factory=list)
    observed: list[CapabilityUse] = field(default_factory=list)

    async def step(self, label: str, action: Callable[[], Awaitable[object]]) -> bool:
        """Run one step, record its outcome and time; whether it passed."""
        started = time.perf_counter()
        try:
            await action()
        except TetherError as exc:
            seconds = time.perf_counter() - started
            self.steps.append(_Step(label, error_text(exc), seconds, exc.hint))
            return False
        self.steps.append(_Step(label, None, time.perf_counter() - started))
        return True


async def _exercise(
    state: State, manifest: Manifest, path: Path, config: PluginConfig, timeout: float
) -> _Run:
    manager = PluginManager(config=state.config(), stop_timeout=timeout)
    run = _Run()
    name = manifest.name
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
            except Exception as exc:
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
