"""``tether plugins test``: exercise one plugin through its whole life in a fresh manager.

The steps: load (its dependencies first), initialize, start, stop, cleanup. They stop
at the first failure; cleanup still runs when the plugin was loaded.
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
    Manifest,
    PluginConfig,
    PluginManager,
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
from tether.errors import TetherError

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
@click.option("--timeout", default=10.0, show_default=True, help="Seconds allowed for stop().")
@pass_state
def plugins_test(state: State, path: Path, settings: tuple[str, ...], timeout: float) -> None:
    """Load, initialize, start, stop and clean up the plugin at PATH in a fresh manager.

    Required dependencies are found through the search paths and brought up first.
    Prints each step's time; exits 1 if any step fails.
    """
    manifest = load_manifest(path)
    config = plugin_settings(state, manifest.name, parse_settings(settings))
    run = asyncio.run(_exercise(state, manifest, path, config, timeout))
    out.print(f"[bold]{manifest.name}[/] {manifest.version}")
    table = Table("step", "result", "time", box=None)
    for step in run.steps:
        result = "[green]ok[/]" if step.error is None else "[red]failed[/]"
        table.add_row(step.label, result, f"{step.seconds * 1000:.1f} ms")
    out.print(table)
    failures = [step for step in run.steps if step.error is not None]
    for step in failures:
        out.print(f"\n[red]{step.label} failed:[/]")
        out.print(step.error, markup=False)
    print_observed(run.observed)
    if failures:
        raise fail(f"plugin '{manifest.name}' failed its test", "see the failed step above")


@dataclass(frozen=True, slots=True)
class _Step:
    label: str
    error: str | None
    seconds: float


@dataclass(slots=True)
class _Run:
    steps: list[_Step] = field(default_factory=list)
    observed: list[CapabilityUse] = field(default_factory=list)

    async def step(self, label: str, action: Callable[[], Awaitable[object]]) -> bool:
        """Run one step, record its outcome and time; whether it passed."""
        started = time.perf_counter()
        try:
            await action()
        except TetherError as exc:
            self.steps.append(_Step(label, str(exc), time.perf_counter() - started))
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
        and await run.step("start", manager.start_all)
        and await run.step("stop", lambda: manager.stop_all(timeout=timeout))
    )
    run.observed = manager.undeclared_capabilities(name)
    if manager.is_loaded(name):
        await run.step("cleanup", lambda: manager.unload_plugin(name, force=True))
    await manager.aclose()
    return run


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
