"""``tether plugins list|scan|info|validate|graph|new``: reading manifests, importing nothing.

The commands are defined here and put in the ``plugins`` group by ``tether.cli``. What a
manifest or a path says is printed as text, never as markup, and with anything the
terminal cannot encode (a lone surrogate from an undecodable file name) escaped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Column, Table
from rich.tree import Tree

from tether import (
    CapabilityUse,
    ContractRegistry,
    EntryCheck,
    Manifest,
    PluginConfig,
    TetherConfig,
    check_entry,
    check_entry_source,
    dependency_graph,
    format_duration,
    format_size,
    grant_permissions,
    isolation_of,
    load_capability_uses,
    load_manifest,
    open_state_store,
    resolve,
    resources_of,
)
from tether.cli._app import State, pass_state
from tether.cli._output import out
from tether.cli._scaffold import NAME_HINT, name_problem, scaffold
from tether.cli._shared import (
    discover_plugins,
    entry_manifest,
    fail,
    framework_version,
    locate_plugin,
    print_observed,
)
from tether.cli._types import NonEmptyPath
from tether.errors import (
    ContractError,
    IsolationError,
    ManifestError,
    ManifestProblem,
    TetherError,
)

__all__ = [
    "contract_problems",
    "entry_problems",
    "load_problems",
    "plugins_graph",
    "plugins_info",
    "plugins_list",
    "plugins_new",
    "plugins_scan",
    "plugins_validate",
]


# --------------------------------------------------------------------------- list, scan


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def plugins_list(state: State, as_json: bool) -> None:
    """List the plugins found in every search path."""
    result = discover_plugins(state)
    if as_json:
        rows = [
            {
                "name": p.name,
                "version": p.manifest.version,
                "description": p.manifest.description,
                "author": p.manifest.author,
                "origin": p.origin,
                "location": _raw(p.location),  # a path may hold undecodable bytes
                "isolation": p.manifest.isolation,
                "dependencies": [d.name for d in p.manifest.dependencies],
            }
            for p in result.plugins
        ]
        out.print_json(json.dumps({"plugins": rows, "invalid": len(result.invalid)}))
        return
    location = Column("location", overflow="fold")  # a path is wrapped, never cut
    table = Table("name", "version", "origin", "description", location, box=None)
    for p in result.plugins:
        m = p.manifest
        table.add_row(*map(_shown, (p.name, m.version, p.origin, m.description, p.location)))
    out.print(table if result.plugins else "No plugins found.")
    if result.invalid or result.conflicts:
        out.print(
            f"[yellow]{len(result.invalid)} invalid, {len(result.conflicts)} conflicting: "
            "run `tether plugins scan` for the reasons.[/]"
        )


@click.command("scan")
@pass_state
def plugins_scan(state: State) -> None:
    """Show every path searched, what was found there, and what was invalid and why."""
    result = discover_plugins(state)
    path = Column("path", overflow="fold")
    table = Table("origin", path, "exists", "plugins", "invalid", box=None)
    for s in result.searched:
        exists = "yes" if s.exists else "no"
        table.add_row(s.origin, _shown(s.path), exists, str(s.found), str(s.invalid))
    out.print("[bold]Searched[/]")
    out.print(table)
    for s in result.searched:
        if s.error:
            out.print(f"[yellow]could not search {_shown(s.path)}:[/] {_shown(s.error)}")
    out.print(f"\n[bold]Found {len(result.plugins)} plugin(s)[/]")
    for p in result.plugins:
        where = _shown(f"{p.origin}: {p.location}")
        out.print(f"  {_shown(p.name)} {_shown(p.manifest.version)}  [dim]{where}[/]")
    if result.invalid:
        out.print(f"\n[bold red]Invalid ({len(result.invalid)})[/]")
        for bad in result.invalid:
            out.print(f"  {_raw(bad.location)}", markup=False)
            for problem in bad.error.problems:
                out.print(f"    - {_raw(problem)}", markup=False)
    if result.conflicts:
        out.print(f"\n[bold red]Name conflicts ({len(result.conflicts)})[/]")
        for conflict in result.conflicts:
            out.print(f"  {_raw(conflict)}", markup=False)
    out.print(f"\n[dim]index cache: {result.cache_hits} hit(s), {result.cache_misses} miss(es)[/]")


# --------------------------------------------------------------------------- info


@click.command("info")
@click.argument("name")
@pass_state
def plugins_info(state: State, name: str) -> None:
    """Everything the manifest of plugin NAME declares, the contract it provides, and how
    its dependencies resolve. NAME is a plugin's name or its directory (or manifest
    file)."""
    result = discover_plugins(state)
    m = locate_plugin(state, name)
    searched = result.get(m.name)
    if searched is not None and searched.manifest.source == m.source:
        origin, location = searched.origin, searched.location
    else:
        origin, location = "path", str(m.directory or m.source)
    out.print(f"[bold]{m.name}[/] {m.version}  [dim]({_shown(origin)}: {_shown(location)})[/]")
    out.print(_raw(m.description), markup=False)
    out.print(f"author: {_raw(m.author)}", markup=False)
    shown_entry = m.entry or _convention_entry(m)
    out.print(f"entry: {shown_entry}   isolation: {m.isolation}   framework: {m.framework.version}")
    if m.provides:
        out.print(f"provides: {', '.join(m.provides)}", markup=False)
    _print_contract(m)
    if m.dependencies:
        out.print("\n[bold]Dependencies[/]")
        for d in m.dependencies:
            other = result.get(d.name)
            found = f"found {other.manifest.version}" if other else "[red]not found[/]"
            optional = " (optional)" if d.optional else ""
            out.print(f"  {d.name} {d.version}{optional}: {found}")
    _print_isolation(state, m)
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
            cells = (key, f.type, required, _text(default), f.allowed, f.description)
            table.add_row(*map(_shown, cells))
        out.print("\n[bold]Config[/]")
        out.print(table)
    _print_list("Hooks", [f"{h.type} (priority {h.priority})" for h in m.hooks])
    _print_list("Publishes", list(m.events.publishes))
    _print_list("Subscribes", list(m.events.subscribes))
    _print_list("Exports", [f"{e.name}: {e.description}" for e in m.exports])
    print_observed(_saved_capabilities(state, m.name))


def _print_isolation(state: State, manifest: Manifest) -> None:
    """How the plugin runs (its config entry over its manifest) and a worker's limits."""
    entry = state.config().entry(manifest.name) or PluginConfig(name=manifest.name)
    level = isolation_of(manifest, entry)
    source = "config" if entry.isolation else "manifest"
    out.print(f"\n[bold]Isolation[/] {level} (from the {source})")
    if manifest.command:
        out.print("worker program: " + " ".join(manifest.command), markup=False)
    if level != "process":
        return
    limits = resources_of(manifest, entry)
    memory, cpu = limits["memory"], limits["cpu_time"]
    shown = [
        f"memory {format_size(int(memory)) if memory else 'unlimited'}",
        f"cpu_time {format_duration(timedelta(seconds=cpu)) if cpu else 'unlimited'}",
        f"open_files {int(limits['open_files'] or 0)}",
        f"processes {int(limits['processes'] or 0)}",
    ]
    out.print("limits: " + ", ".join(shown), markup=False)
    paths = manifest.permissions.paths
    if paths.read or paths.write:
        out.print(f"filesystem: read {list(paths.read)}, write {list(paths.write)}", markup=False)
    if manifest.requirements:
        out.print("requirements: " + ", ".join(manifest.requirements), markup=False)
    out.print(f"reload: {'blue/green' if manifest.reload.overlap else 'stop first'}")


def _convention_entry(manifest: Manifest) -> str:
    if manifest.command:
        return "none (its worker is a program of its own: see `worker program`)"
    found = check_entry_source(manifest).entry
    if found:
        return f"{found} (by convention)"
    return "none given and none found by convention (`tether plugins validate` says why)"


def _print_contract(manifest: Manifest) -> None:
    """The contract the plugin must fulfil, from the registry every installed host fills."""
    out.print("\n[bold]Contract[/]")
    try:
        contract = ContractRegistry().resolve(manifest.name, manifest.provides)
    except ContractError as exc:
        out.print(f"  [bold red]Error:[/] {escape(str(exc))}")
        if exc.hint:
            out.print(f"  [dim]Hint:[/] {escape(exc.hint)}")
        return
    out.print(f"  {contract.name}: {contract.description}", markup=False)
    out.print(f"  host: {contract.host or 'any host'}", markup=False)
    out.print(f"  required methods: {_names(contract.required)}", markup=False)
    out.print(f"  optional methods: {_names(contract.optional)}", markup=False)


def _names(methods: Sequence[str]) -> str:
    return ", ".join(methods) or "none"


def _saved_capabilities(state: State, name: str) -> list[CapabilityUse]:
    """Undeclared capabilities recorded by earlier runs, from the state store (if any)."""
    config = state.config()
    target = config.state.target
    if target is None:
        path = config.base_directory / ".tether" / "state.db"
        if not path.is_file():
            return []
        target = str(path)
    store = open_state_store(target)
    try:
        return load_capability_uses(store, name)
    finally:
        store.close()


def _text(value: object) -> str:
    return "" if value is None else json.dumps(value) if not isinstance(value, str) else value


def _raw(value: object) -> str:
    """``value`` as text the terminal can take: what it cannot encode is escaped."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _shown(value: object) -> str:
    """``value`` for a markup string or a table cell: shown as written, never as markup."""
    return escape(_raw(value))


def _print_list(title: str, items: Sequence[str]) -> None:
    if items:
        out.print(f"\n[bold]{title}[/]")
        for item in items:
            out.print(f"  {_raw(item)}", markup=False)


# --------------------------------------------------------------------------- validate


def contract_problems(
    manifest: Manifest, registry: ContractRegistry
) -> list[tuple[ManifestProblem, str | None]]:
    """What is wrong with the manifest's ``provides``: each problem with its hint."""
    path = manifest.source or Path(manifest.name)
    problems: list[tuple[ManifestProblem, str | None]] = []
    for name in dict.fromkeys(manifest.provides):
        try:
            registry.get(name)
        except ContractError as exc:
            problems.append((ManifestProblem(path, "provides", str(exc)), exc.hint))
    if not problems:
        try:
            registry.resolve(manifest.name, manifest.provides)
        except ContractError as exc:
            problems.append((ManifestProblem(path, "provides", str(exc)), exc.hint))
    return problems


def entry_problems(
    manifest: Manifest, check: EntryCheck, *, warnings: bool = False
) -> list[tuple[ManifestProblem, str | None]]:
    """The findings of ``check`` (errors, or with ``warnings`` the warnings) as problems of
    the manifest's ``entry`` field, at its line."""
    chosen = [f for f in check.findings if f.warning == warnings]
    if not chosen:
        return []
    path = manifest.source or Path(manifest.name)
    return [(ManifestProblem(path, "entry", f.message, check.line), f.hint) for f in chosen]


def load_problems(manifest: Manifest) -> list[tuple[ManifestProblem, str | None]]:
    """What loading the manifest would refuse before importing its code, with no config
    around it (``isolation: process``, for one): ``tether.check_entry`` with a bare entry."""
    path = manifest.source or Path(manifest.name)
    try:
        check_entry(manifest, PluginConfig(), TetherConfig())
    except TetherError as exc:
        field = "isolation" if isinstance(exc, IsolationError) else ""
        return [(ManifestProblem(path, field, str(exc)), exc.hint)]
    return []


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def plugins_validate(paths: tuple[Path, ...]) -> None:
    """Check the manifest of each plugin directory or manifest file in PATHS.

    Every problem is listed with its file, field and line, and so is a contract in
    `provides` that no installed host serves, an isolation level this tether cannot
    give, and an `entry` whose module or attribute does not exist or does not parse
    (found by reading the code, never importing it). Exits 1 if any is invalid.
    """
    registry = ContractRegistry()
    bad = 0
    for path in paths:
        try:
            manifest = load_manifest(path)
        except ManifestError as exc:
            bad += 1
            out.print(f"[red]✗[/] {_shown(path)}: {len(exc.problems)} problem(s)")
            for problem in exc.problems:
                out.print(f"    - {_raw(problem)}", markup=False)
            continue
        entry = check_entry_source(manifest)
        problems = (
            contract_problems(manifest, registry)
            + load_problems(manifest)
            + entry_problems(manifest, entry)
        )
        if problems:
            bad += 1
            out.print(f"[red]✗[/] {_shown(path)}: {len(problems)} problem(s)")
            _print_problems(problems, "-")
        else:
            found = f" (entry {entry.entry}, by convention)" if entry.by_convention else ""
            if manifest.command:
                found = f" (worker: {' '.join(manifest.command)})"
            out.print(f"[green]✓[/] {_shown(path)}: {manifest.name} {manifest.version}{found}")
        _print_problems(entry_problems(manifest, entry, warnings=True), "warning:")
    if bad:
        raise fail(f"{bad} of {len(paths)} manifest(s) invalid", "fix the problems listed above")


def _print_problems(problems: list[tuple[ManifestProblem, str | None]], bullet: str) -> None:
    for problem, hint in problems:
        out.print(f"    {bullet} {_raw(problem)}", markup=False)
        if hint:
            out.print(f"      hint: {_raw(hint)}", markup=False)


# --------------------------------------------------------------------------- graph


@click.command("graph")
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
        order = resolve(manifests, framework_version=framework_version(), priorities=priorities)
    except TetherError as exc:
        out.print(f"\ndoes not resolve: {exc}", markup=False)
        raise fail("the dependency graph does not resolve", exc.hint) from exc
    out.print("\n[bold]load order:[/] " + " -> ".join(order.order))


def _graph_manifests(state: State) -> list[Manifest]:
    config = state.config()
    entries = [(i, e) for i, e in enumerate(config.plugins.plugins) if e.enabled]
    if not entries:
        return [p.manifest for p in discover_plugins(state).plugins]
    manifests = [entry_manifest(state, config, entry) for _, entry in entries]
    config.check_plugin_names([(i, m.name) for (i, _), m in zip(entries, manifests, strict=True)])
    return manifests


# --------------------------------------------------------------------------- new


def _new_name(_ctx: click.Context, _param: click.Parameter, name: str) -> str:
    problem = name_problem(name)
    if problem is not None:
        raise click.BadParameter(f"{problem} ({NAME_HINT})")
    return name


@click.command("new")
@click.argument("name", callback=_new_name)
@click.option(
    "--dir",
    "directory",
    type=NonEmptyPath(path_type=Path, file_okay=False),
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
