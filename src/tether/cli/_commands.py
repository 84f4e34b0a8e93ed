"""``tether plugins ...``, ``tether config ...`` and ``tether demo``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import click
import yaml
from rich.table import Table
from rich.tree import Tree

from tether._audit import CapabilityUse, load_capability_uses
from tether._config import (
    PluginConfig,
    TetherConfig,
    grant_permissions,
    mask_secrets,
    validate_plugin_config,
)
from tether._discovery import DiscoveredPlugin, DiscoveryResult, default_search_paths, discover
from tether._discovery import IndexCache as _IndexCache
from tether._manager import PluginManager
from tether._manifest import Manifest, load_manifest
from tether._resolver import dependency_graph, resolve
from tether.cli._app import State, cli, pass_state
from tether.cli._output import out, print_error
from tether.cli._scaffold import scaffold
from tether.errors import ManifestError, PluginNotFoundError, TetherError

# --------------------------------------------------------------------------- shared


def _discover(state: State) -> DiscoveryResult:
    config = state.config()
    directory = config.plugins.directory
    config_dir = None
    if directory:
        config_dir = Path(directory)
        config_dir = config_dir if config_dir.is_absolute() else config.base_directory / config_dir
    paths = default_search_paths(plugin_paths=state.plugin_paths, config_directory=config_dir)
    return discover(paths, cache=_IndexCache())


def _find(state: State, name: str) -> DiscoveredPlugin:
    result = _discover(state)
    found = result.get(name)
    if found is None:
        import difflib

        names = [p.name for p in result.plugins]
        close = difflib.get_close_matches(name, names, n=1)
        hint = (
            f"did you mean '{close[0]}'?" if close else "`tether plugins scan` shows what was found"
        )
        raise PluginNotFoundError(f"plugin not found: '{name}'", plugin=name, hint=hint)
    return found


def _fail(message: str, hint: str | None = None) -> TetherError:
    return TetherError(message, hint=hint)


# --------------------------------------------------------------------------- plugins


@cli.group()
def plugins() -> None:
    """Find, inspect, validate, test and create plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def plugins_list(state: State, as_json: bool) -> None:
    """List the plugins found in every search path."""
    result = _discover(state)
    if as_json:
        rows = [
            {
                "name": p.name,
                "version": p.manifest.version,
                "description": p.manifest.description,
                "author": p.manifest.author,
                "origin": p.origin,
                "location": p.location,
                "isolation": p.manifest.isolation,
                "dependencies": [d.name for d in p.manifest.dependencies],
            }
            for p in result.plugins
        ]
        out.print_json(json.dumps({"plugins": rows, "invalid": len(result.invalid)}))
        return
    table = Table("name", "version", "origin", "description", "location", box=None)
    for p in result.plugins:
        table.add_row(p.name, p.manifest.version, p.origin, p.manifest.description, p.location)
    out.print(table if result.plugins else "No plugins found.")
    if result.invalid or result.conflicts:
        out.print(
            f"[yellow]{len(result.invalid)} invalid, {len(result.conflicts)} conflicting: "
            "run `tether plugins scan` for the reasons.[/]"
        )


@plugins.command("scan")
@pass_state
def plugins_scan(state: State) -> None:
    """Show every path searched, what was found there, and what was invalid and why."""
    result = _discover(state)
    table = Table("origin", "path", "exists", "plugins", "invalid", box=None)
    for s in result.searched:
        table.add_row(
            s.origin, str(s.path), "yes" if s.exists else "no", str(s.found), str(s.invalid)
        )
    out.print("[bold]Searched[/]")
    out.print(table)
    for s in result.searched:
        if s.error:
            out.print(f"[yellow]could not search {s.path}:[/] {s.error}")
    out.print(f"\n[bold]Found {len(result.plugins)} plugin(s)[/]")
    for p in result.plugins:
        out.print(f"  {p.name} {p.manifest.version}  [dim]{p.origin}: {p.location}[/]")
    if result.invalid:
        out.print(f"\n[bold red]Invalid ({len(result.invalid)})[/]")
        for bad in result.invalid:
            out.print(f"  {bad.location}")
            for problem in bad.error.problems:
                out.print(f"    - {problem}", markup=False)
    if result.conflicts:
        out.print(f"\n[bold red]Name conflicts ({len(result.conflicts)})[/]")
        for conflict in result.conflicts:
            out.print(f"  {conflict}", markup=False)
    out.print(f"\n[dim]index cache: {result.cache_hits} hit(s), {result.cache_misses} miss(es)[/]")


@plugins.command("info")
@click.argument("name")
@pass_state
def plugins_info(state: State, name: str) -> None:
    """Everything the manifest of plugin NAME declares, and how its dependencies resolve."""
    result = _discover(state)
    plugin = _find(state, name)
    m = plugin.manifest
    out.print(f"[bold]{m.name}[/] {m.version}  [dim]({plugin.origin}: {plugin.location})[/]")
    out.print(m.description, markup=False)
    out.print(f"author: {m.author}", markup=False)
    out.print(f"entry: {m.entry}   isolation: {m.isolation}   framework: {m.framework.version}")
    if m.provides:
        out.print(f"provides: {', '.join(m.provides)}", markup=False)
    if m.dependencies:
        out.print("\n[bold]Dependencies[/]")
        for d in m.dependencies:
            other = result.get(d.name)
            found = f"found {other.manifest.version}" if other else "[red]not found[/]"
            optional = " (optional)" if d.optional else ""
            out.print(f"  {d.name} {d.version}{optional}: {found}")
    out.print("\n[bold]Permissions[/] " + (", ".join(sorted(m.permissions.granted)) or "none"))
    entry = state.config().entry(m.name)
    if entry is not None:
        granted = grant_permissions(m, entry.permissions, path=state.config_path)
        out.print("granted by config: " + (", ".join(sorted(granted)) or "none"))
    if m.config:
        table = Table("key", "type", "required", "default", "allowed", "description", box=None)
        for key, f in m.config.items():
            default = "****" if f.secret and f.default is not None else f.default
            required = "yes" if f.required else ""
            table.add_row(key, f.type, required, _text(default), f.allowed, f.description)
        out.print("\n[bold]Config[/]")
        out.print(table)
    _print_list("Hooks", [f"{h.type} (priority {h.priority})" for h in m.hooks])
    _print_list("Publishes", list(m.events.publishes))
    _print_list("Subscribes", list(m.events.subscribes))
    _print_list("Exports", [f"{e.name}: {e.description}" for e in m.exports])
    _print_observed(_saved_capabilities(state, m.name))


def _saved_capabilities(state: State, name: str) -> list[CapabilityUse]:
    """Undeclared capabilities recorded by earlier runs, from the state store (if any)."""
    config = state.config()
    target = config.state.target
    if target is None:
        path = config.base_directory / ".tether" / "state.db"
        if not path.is_file():
            return []
        target = str(path)
    from tether._storage import open_state_store

    store = open_state_store(target)
    try:
        return load_capability_uses(store, name)
    finally:
        store.close()


def _print_observed(uses: Sequence[CapabilityUse]) -> None:
    if not uses:
        return
    out.print("\n[bold yellow]Used without declaring the permission[/] (telemetry, not enforced)")
    for use in uses:
        out.print(
            f"  {use.capability}: {use.count} time(s), e.g. {use.example}  "
            f"(last {use.last_seen:%Y-%m-%d %H:%M:%S})",
            markup=False,
        )


def _text(value: object) -> str:
    return "" if value is None else json.dumps(value) if not isinstance(value, str) else value


def _print_list(title: str, items: Sequence[str]) -> None:
    if items:
        out.print(f"\n[bold]{title}[/]")
        for item in items:
            out.print(f"  {item}", markup=False)


@plugins.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def plugins_validate(paths: tuple[Path, ...]) -> None:
    """Check the manifest of each plugin directory or manifest file in PATHS.

    Every problem is listed with its file, field and line. Exits 1 if any is invalid.
    """
    bad = 0
    for path in paths:
        try:
            manifest = load_manifest(path)
        except ManifestError as exc:
            bad += 1
            out.print(f"[red]✗[/] {path}: {len(exc.problems)} problem(s)")
            for problem in exc.problems:
                out.print(f"    - {problem}", markup=False)
        else:
            out.print(f"[green]✓[/] {path}: {manifest.name} {manifest.version}")
    if bad:
        raise _fail(f"{bad} of {len(paths)} manifest(s) invalid", "fix the problems listed above")


@plugins.command("graph")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "dot"]),
    default="text",
    show_default=True,
    help="text: a tree per plugin; dot: Graphviz input.",
)
@pass_state
def plugins_graph(state: State, fmt: str) -> None:
    """The dependency graph of the configured plugins (or of every plugin found)."""
    manifests = _graph_manifests(state)
    graph = dependency_graph(manifests)
    if fmt == "dot":
        out.print("digraph plugins {", markup=False)
        out.print("  rankdir=LR;", markup=False)
        for m in manifests:
            out.print(f'  "{m.name}" [label="{m.name}\\n{m.version}"];', markup=False)
            for d in m.dependencies:
                style = ' [style=dashed, label="optional"]' if d.optional else ""
                out.print(f'  "{m.name}" -> "{d.name}"{style};', markup=False)
        out.print("}", markup=False)
        return
    for m in manifests:
        tree = Tree(f"[bold]{m.name}[/] {m.version}")
        for d in m.dependencies:
            note = " (optional)" if d.optional else ""
            present = d.name in graph
            tree.add(f"{d.name} {d.version}{note}" + ("" if present else " [red]missing[/]"))
        out.print(tree)
    priorities = {e.name: e.priority for e in state.config().plugins.plugins if e.name}
    try:
        order = resolve(manifests, framework_version=_framework(), priorities=priorities).order
    except TetherError as exc:
        out.print(f"\ndoes not resolve: {exc}", markup=False)
        raise _fail("the dependency graph does not resolve", exc.hint) from exc
    out.print("\n[bold]load order:[/] " + " -> ".join(order))


def _framework() -> str:
    from tether import __version__

    return __version__


def _graph_manifests(state: State) -> list[Manifest]:
    config = state.config()
    entries = [e for e in config.plugins.plugins if e.enabled]
    if not entries:
        return [p.manifest for p in _discover(state).plugins]
    return [_entry_manifest(state, config, entry) for entry in entries]


@plugins.command("test")
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
    values = _parse_settings(settings)
    entry = state.config().entry(manifest.name)
    base = entry.config if entry is not None else {}
    config = PluginConfig(
        name=manifest.name,
        config={**base, **values},
        permissions=entry.permissions if entry is not None else None,
    )
    steps, observed = asyncio.run(_exercise(state, manifest, path, config, timeout))
    table = Table("step", "result", "time", box=None)
    for step, error, seconds in steps:
        result = "[green]ok[/]" if error is None else "[red]failed[/]"
        table.add_row(step, result, f"{seconds * 1000:.1f} ms")
    out.print(f"[bold]{manifest.name}[/] {manifest.version}")
    out.print(table)
    failures = [(step, error) for step, error, _ in steps if error is not None]
    for step, error in failures:
        out.print(f"\n[red]{step} failed:[/]")
        out.print(error, markup=False)
    _print_observed(observed)
    if failures:
        raise _fail(f"plugin '{manifest.name}' failed its test", "see the failed step above")


def _parse_settings(settings: Sequence[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        values[key.strip()] = yaml.safe_load(raw)
    return values


_Step = tuple[str, str | None, float]


async def _exercise(
    state: State, manifest: Manifest, path: Path, config: PluginConfig, timeout: float
) -> tuple[list[_Step], list[CapabilityUse]]:
    manager = PluginManager(config=state.config(), stop_timeout=timeout)
    steps: list[_Step] = []
    name = manifest.name

    async def step(label: str, action: Callable[[], Awaitable[object]]) -> bool:
        started = time.perf_counter()
        try:
            await action()
        except TetherError as exc:
            steps.append((label, str(exc), time.perf_counter() - started))
            return False
        steps.append((label, None, time.perf_counter() - started))
        return True

    for dep_name, dep_path in _dependency_paths(state, manifest):
        settings = state.config().entry(dep_name)
        loaded = await step(
            f"load dependency {dep_name}",
            lambda p=dep_path, s=settings: manager.load_plugin(p, s),  # type: ignore[misc]
        )
        if not loaded:
            await manager.aclose()
            return steps, []
    ok = (
        await step("load", lambda: manager.load_plugin(path, config))
        and await step("initialize", manager.initialize_all)
        and await step("start", manager.start_all)
        and await step("stop", lambda: manager.stop_all(timeout=timeout))
    )
    observed = manager.undeclared_capabilities(name)
    if manager.is_loaded(name):
        await step("cleanup", lambda: manager.unload_plugin(name, force=True))
    await manager.aclose()
    _ = ok
    return steps, observed


def _dependency_paths(state: State, manifest: Manifest) -> list[tuple[str, Path]]:
    required = [d for d in manifest.dependencies if not d.optional]
    if not required:
        return []
    result = _discover(state)
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


@plugins.command("new")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("plugins"),
    show_default=True,
    help="Where to create the plugin directory.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json", "toml"]),
    default="yaml",
    show_default=True,
    help="Manifest format.",
)
def plugins_new(name: str, directory: Path, fmt: str) -> None:
    """Create plugin NAME: a manifest, the plugin's code and a passing test."""
    created = scaffold(name, directory, fmt=fmt)
    out.print(f"Created plugin [bold]{name}[/] in {created}:")
    for file in sorted(created.rglob("*")):
        if file.is_file():
            out.print(f"  {file.relative_to(created)}")
    out.print(f"\nNext: `tether plugins test {created}` and `pytest {created}`.")


# --------------------------------------------------------------------------- config


@cli.group("config")
def config_group() -> None:
    """Check and show the framework config."""


def _require_config(state: State) -> TetherConfig:
    if state.config_path is None:
        raise _fail(
            "no config file given",
            "pass --config FILE, set TETHER_CONFIG, or create ./tether.yaml",
        )
    return state.config()


@config_group.command("validate")
@pass_state
def config_validate(state: State) -> None:
    """Check the config file, every plugin it names, their configs and their dependencies."""
    config = _require_config(state)
    problems: list[TetherError] = []
    manifests: list[Manifest] = []
    for entry in config.plugins.plugins:
        try:
            manifest = _entry_manifest(state, config, entry)
            grant_permissions(manifest, entry.permissions, path=config.path)
            validate_plugin_config(manifest.name, manifest.config, entry.config)
        except TetherError as exc:
            problems.append(exc)
            continue
        if entry.enabled:
            manifests.append(manifest)
    if not problems:
        try:
            order = resolve(
                manifests,
                framework_version=_framework(),
                priorities={e.name or "": e.priority for e in config.plugins.plugins},
                unavailable={
                    e.name: "it is disabled in the config"
                    for e in config.plugins.plugins
                    if not e.enabled and e.name
                },
            ).order
        except TetherError as exc:
            problems.append(exc)
        else:
            out.print(f"[green]✓[/] {config.path}: {len(manifests)} plugin(s); load order: "
                      + (" -> ".join(order) or "(none)"))  # fmt: skip
    for problem in problems:
        print_error(problem)
    if problems:
        raise _fail(f"{config.path}: {len(problems)} problem(s)", "fix the problems listed above")


def _entry_manifest(state: State, config: TetherConfig, entry: PluginConfig) -> Manifest:
    if entry.path:
        path = Path(entry.path)
        manifest = load_manifest(path if path.is_absolute() else config.base_directory / path)
        if entry.name and entry.name != manifest.name:
            raise _fail(
                f"plugin at {entry.path} is named '{manifest.name}', the config says "
                f"'{entry.name}'",
                "the config's `name` must match the manifest's `name`",
            )
        return manifest
    return _find(state, entry.name or "").manifest


@config_group.command("show")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
)
@pass_state
def config_show(state: State, fmt: str) -> None:
    """The config as tether sees it: env vars expanded, defaults applied, secrets masked."""
    config = _require_config(state)
    data = config.model_dump(mode="json", exclude_none=True)
    entries = data.get("plugins", {}).get("plugins", [])
    for raw, entry in zip(entries, config.plugins.plugins, strict=True):
        try:
            manifest = _entry_manifest(state, config, entry)
        except TetherError:
            continue
        values = validate_plugin_config(manifest.name, manifest.config, entry.config)
        secrets = frozenset(k for k, f in manifest.config.items() if f.secret)
        raw["config"] = mask_secrets(_plain(values), secret_keys=secrets)
        raw["permissions"] = dict.fromkeys(
            sorted(grant_permissions(manifest, entry.permissions)), True
        )
    masked = mask_secrets(data)
    if fmt == "json":
        out.print_json(json.dumps(masked))
    else:
        out.print(yaml.safe_dump(masked, sort_keys=False).rstrip(), markup=False)


def _plain(values: dict[str, object]) -> dict[str, object]:
    from datetime import timedelta

    from tether._durations import format_duration

    return {k: format_duration(v) if isinstance(v, timedelta) else v for k, v in values.items()}


# --------------------------------------------------------------------------- demo


@cli.command("demo")
@click.argument(
    "config_file",
    required=False,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
)
@pass_state
def demo(state: State, config_file: Path | None) -> None:
    """Walk a config's plugins through their whole life, printing each step.

    Discover, resolve, load, initialize, start, stop and unload the plugins of
    CONFIG_FILE (default: --config, else examples/app.yaml).
    """
    import logging

    from tether.cli._demo import run_demo

    plugin_logger = logging.getLogger("tether.plugin")
    if plugin_logger.getEffectiveLevel() > logging.INFO:
        plugin_logger.setLevel(logging.INFO)  # the demo shows what the plugins say
    path = config_file or state.config_path or Path("examples/app.yaml")
    if not path.is_file():
        raise _fail(f"config file not found: {path}", "pass a config file: tether demo FILE")
    asyncio.run(run_demo(path, state.plugin_paths))
