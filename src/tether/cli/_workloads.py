"""``tether workloads list``, finding workload plugins, and checking a bench config.

:func:`check_bench_config` is the check ``tether config validate`` makes of a config's
bench sections (``workload``, ``database``, ``bench``): the workload host's
:class:`~tether.hosts.workload.BenchConfig` reads them, and the workload it names is
found and its ``plugin_config`` checked against its manifest.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence

import click
from rich.console import Console
from rich.table import Table

from tether import ConfigPlace, Manifest, TetherConfig, load_manifest, validate_plugin_config
from tether.cli._app import State, pass_state
from tether.cli._output import out
from tether.cli._shared import discover_plugins
from tether.errors import ConfigError, PluginNotFoundError, TetherError
from tether.hosts.workload import (
    REFERENCE_NAMES,
    WORKLOAD_CONTRACT,
    BenchConfig,
    WorkloadConfigError,
    WorkloadSpec,
    resolve_weights,
)

__all__ = [
    "check_bench_config",
    "check_workload_config",
    "declared_weights",
    "find_workload",
    "workloads",
    "workloads_list",
]


# --------------------------------------------------------------------------- finding workloads


def find_workload(state: State, name: str) -> WorkloadSpec:
    """The workload plugin called ``name``, found through the search paths; one of the
    reference's names (``imdb_plugin``) is the built-in workload it stands for, unless a
    plugin is really called so."""
    result = discover_plugins(state)
    found = result.get(name)
    builtin = result.get(REFERENCE_NAMES.get(name, ""))
    if found is None and builtin is not None and builtin.origin == "builtin":
        found, name = builtin, builtin.name
    names = sorted(p.name for p in result.plugins if "workload" in p.manifest.provides)
    if found is None:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "`tether workloads list` shows them"
        raise PluginNotFoundError(
            f"workload not found: '{name}' (workloads: {', '.join(names) or 'none'})",
            plugin=name,
            hint=hint,
        )
    if "workload" not in found.manifest.provides:
        raise TetherError(
            f"plugin '{name}' is not a workload plugin: its manifest does not say "
            "`provides: [workload]`",
            plugin=name,
            path=found.location,
            hint=f"workloads: {', '.join(names) or 'none'} (`tether workloads list`)",
        )
    directory = found.manifest.directory
    return WorkloadSpec(name=name, path=directory, origin=found.origin)


def declared_weights(defaults: object) -> dict[str, int] | None:
    """The operations and default weights a manifest declares (``config.operation_weights``)."""
    if not isinstance(defaults, Mapping):
        return None
    weights = {
        str(k): v for k, v in defaults.items() if isinstance(v, int) and not isinstance(v, bool)
    }
    return weights or None


# --------------------------------------------------------------------------- tether workloads


@click.group("workloads")
def workloads() -> None:
    """The workload plugins tether bench can run."""


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def workloads_list(state: State, as_json: bool) -> None:
    """Built-in and plugin workloads: name, version, origin, operations and description.

    Operations are shown when the manifest declares them (the default of its
    `operation_weights` config key); nothing is imported.
    """
    result = discover_plugins(state)
    rows: list[dict[str, object]] = []
    table = Table(
        "name", "version", "origin", "operations (default weight)", "description", box=None
    )
    for plugin in result.plugins:
        if "workload" not in plugin.manifest.provides:
            continue
        declared = plugin.manifest.config.get("operation_weights")
        weights = declared_weights(declared.default if declared is not None else None)
        m = plugin.manifest
        rows.append(
            {
                "name": m.name,
                "version": m.version,
                "origin": plugin.origin,
                "operations": weights,
                "description": m.description,
                "location": plugin.location,
            }
        )
        operations = (
            ", ".join(f"{k} {v}" for k, v in weights.items()) if weights else "(not declared)"
        )
        table.add_row(m.name, m.version, plugin.origin, operations, m.description)
    if as_json:
        out.print_json(json.dumps({"workloads": rows}))
    elif rows:
        wide = out if out.is_terminal else Console(file=out.file, width=200, highlight=False)
        wide.print(table)
    else:
        out.print("No workload plugins found.")


# --------------------------------------------------------------------------- checking a config


def check_bench_config(state: State, config: TetherConfig) -> list[TetherError]:
    """Problems of a config's bench sections (none when it has no ``workload`` section).

    Prints ``✓ WHERE: workload 'NAME' (ORIGIN)`` when the workload it names checks out.
    """
    if not BenchConfig.present_in(config):
        return []
    try:
        bench_config = BenchConfig.from_config(config)
        bench_config.settings()
    except TetherError as exc:
        return [exc]
    if bench_config.workload.plugin_name is None:
        return []
    try:
        spec = find_workload(state, bench_config.workload.plugin_name)
        manifest_weights = None
        if spec.path is not None:
            manifest = load_manifest(spec.path)
            field_ = manifest.config.get("operation_weights")
            manifest_weights = declared_weights(field_.default if field_ is not None else None)
            check_workload_config(manifest, bench_config.workload.plugin_config, bench_config,
                                  lines=config.key_lines())  # fmt: skip
        if manifest_weights:
            resolve_weights(
                spec.name,
                manifest_weights,
                bench_config.workload.plugin_config.get("operation_weights"),
                source=bench_config.where,
            )
    except TetherError as exc:
        return [exc]
    out.print(f"[green]✓[/] {bench_config.where}: workload '{spec.name}' ({spec.origin})")
    return []


def check_workload_config(
    manifest: Manifest,
    values: Mapping[str, object],
    config: BenchConfig,
    *,
    lines: Mapping[str, int] | None = None,
    given: Sequence[str] = (),
) -> None:
    """The config a run gives a workload (the file's ``plugin_config``, ``--set``'s keys
    over it: ``given``) against its manifest, before anything starts; a
    ``WorkloadConfigError`` names each key where it was written."""
    where = ConfigPlace("workload.plugin_config", config.path, lines or {},
                        {key: f"--set {key}" for key in given})  # fmt: skip
    try:
        validate_plugin_config(manifest.name, manifest.config, values,
                               additional_properties=manifest.open_config,
                               host_keys=WORKLOAD_CONTRACT.config_keys, where=where)  # fmt: skip
    except ConfigError as exc:
        raise WorkloadConfigError(
            str(exc),
            plugin=manifest.name,
            problems=list(exc.problems),
            hint=f"{exc.hint}; `tether plugins info {manifest.name}` shows them",
        ) from None
