"""``tether demo``: discover, resolve, load, start, stop and unload a config's plugins."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from tether import PluginManager, discover, load_config, run_host, search_paths_for
from tether.cli._app import State, pass_state
from tether.cli._output import out
from tether.cli._shared import fail, retries_option

__all__ = ["demo", "run_demo"]


@click.command("demo")
@click.argument(
    "config_file",
    required=False,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
)
@retries_option
@pass_state
def demo(state: State, config_file: Path | None, retry_attempts: int | None) -> None:
    """Walk a config's plugins through their whole life, printing each step.

    Discover, resolve, load, initialize, start, stop and unload the plugins of
    CONFIG_FILE (default: --config, else examples/app.yaml).
    """
    plugin_logger = logging.getLogger("tether.plugin")
    if plugin_logger.getEffectiveLevel() > logging.INFO:
        plugin_logger.setLevel(logging.INFO)  # the demo shows what the plugins say
    path = config_file or state.config_path or Path("examples/app.yaml")
    if not path.is_file():
        raise fail(f"config file not found: {path}", "pass a config file: tether demo FILE")
    run_host(run_demo(path, state.plugin_paths, retry_attempts=retry_attempts))


def _ms(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.1f} ms"


async def run_demo(
    path: Path, plugin_paths: list[Path] | None = None, *, retry_attempts: int | None = None
) -> None:
    config = load_config(path)
    out.print(f"[bold]tether demo[/] with {path}\n")

    started = time.perf_counter()
    paths = search_paths_for(config, plugin_paths=plugin_paths or [])
    found = discover(paths)  # what loading by name searches, entry points included
    out.print(f"[bold]1. discover[/] ({_ms(started)}): {len(found.plugins)} plugin(s) found")
    for plugin in found.plugins:
        out.print(f"   {plugin.name} {plugin.manifest.version}  [dim]{plugin.location}[/]")
    for bad in found.invalid:
        out.print(f"   [red]invalid[/] {bad.location}: {bad.error.problems[0].message}")

    async with PluginManager(config=config, retry_attempts=retry_attempts) as manager:
        started = time.perf_counter()
        await manager.load_plugins_from_config(config)
        order = manager.resolve_dependencies().order
        out.print(f"\n[bold]2. resolve + load[/] ({_ms(started)}): " + " -> ".join(order))
        for name, deps in manager.get_dependency_graph().items():
            out.print(f"   {name} depends on: {', '.join(deps) or 'nothing'}")

        started = time.perf_counter()
        await manager.initialize_all()
        out.print(f"\n[bold]3. initialize[/] ({_ms(started)}) in dependency order")
        started = time.perf_counter()
        await manager.start_all()
        out.print(f"[bold]4. start[/] ({_ms(started)})")
        _status_table(manager)
        for name, failed in manager.failed_plugins().items():
            why = escape(f"{name} ({failed.step}, not required): {failed.reason}")
            out.print(f"   [red]failed[/] {why}")
        _registrations(manager)

        running = [info.name for info in manager.list_plugins()]  # without those set aside
        started = time.perf_counter()
        await manager.stop_all()
        out.print(f"\n[bold]5. stop[/] ({_ms(started)}) in reverse order: "
                  + " -> ".join(reversed(running)))  # fmt: skip
        started = time.perf_counter()
        for name in reversed(running):
            await manager.unload_plugin(name)
        out.print(f"[bold]6. unload[/] ({_ms(started)}): {len(running)} plugin(s) cleaned up")
    out.print("\n[green]done[/]")


def _registrations(manager: PluginManager) -> None:
    runtime = manager.runtime
    table = Table("plugin", "hooks", "subscriptions", "exports", box=None)
    for info in manager.list_plugins():
        hooks = [
            f"{hook}@{priority}"
            for hook in runtime.hooks.hook_types
            for plugin, priority in runtime.hooks.handlers(hook)
            if plugin == info.name
        ]
        subscriptions = [s.pattern for s in runtime.events.subscriptions(info.name)]
        exports = runtime.services.exports_of(info.name)
        table.add_row(info.name, ", ".join(hooks), ", ".join(subscriptions), ", ".join(exports))
    out.print("\n[bold]registered through their contexts[/]")
    out.print(table)


def _status_table(manager: PluginManager) -> None:
    table = Table("plugin", "version", "status", "isolation", "description", box=None)
    for info in manager.list_plugins():
        table.add_row(info.name, info.version, info.status.value, info.isolation, info.description)
    out.print(table)
