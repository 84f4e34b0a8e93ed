"""``tether config validate|show``: the framework config, checked and shown.

``config validate`` checks the plugin entries and, when the config has bench
sections (``workload``, ``database``, ``bench``), those too, through the same check
``tether bench`` makes (:func:`tether.cli._workloads.check_bench_config`).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import click
import yaml

from tether import (
    ContractRegistry,
    Manifest,
    TetherConfig,
    check_call_chain,
    check_entry,
    format_duration,
    grant_permissions,
    mask_secrets,
    resolve,
    validate_entry_config,
)
from tether.cli._app import State, pass_state
from tether.cli._output import out, print_error
from tether.cli._shared import entry_manifest, fail, framework_version
from tether.cli._types import NonEmptyPath
from tether.cli._workloads import check_bench_config
from tether.errors import TetherError
from tether.packaging import Lock, check_plugin, lock_path, read_lock

__all__ = ["config_group", "config_show", "config_validate"]


@click.group("config")
def config_group() -> None:
    """Check and show the framework config."""


def _require_config(state: State) -> TetherConfig:
    if state.config_path is None:
        raise fail(
            "no config file given",
            "pass --config FILE, set TETHER_CONFIG, or create ./tether.yaml",
        )
    return state.config()


_FILE = click.argument(
    "file",
    required=False,
    type=NonEmptyPath(path_type=Path, dir_okay=False, exists=True),
    metavar="[FILE]",
)


@click.command("validate")
@_FILE
@pass_state
def config_validate(state: State, file: Path | None) -> None:
    """Check the config FILE (else --config, $TETHER_CONFIG or ./tether.yaml), every
    plugin it names, their configs and their dependencies, and its bench sections when
    it has them."""
    state.use_config(file)
    config = _require_config(state)
    bench_problems = check_bench_config(state, config)
    for problem in bench_problems:
        print_error(problem)
    problems = _plugin_problems(state, config)
    for problem in problems:
        print_error(problem)
    if problems:
        raise fail(f"{config.path}: {len(problems)} problem(s)", "fix the problems listed above")
    if bench_problems:
        raise fail(
            f"{state.config_path}: {len(bench_problems)} problem(s) in the bench sections",
            "fix the problems listed above",
        )


def _plugin_problems(state: State, config: TetherConfig) -> list[TetherError]:
    """What is wrong with the plugin entries; prints the load order when nothing is."""
    problems: list[TetherError] = []
    manifests: list[Manifest] = []
    section = config.plugins.call_chain
    if section is not None:
        try:
            check_call_chain(section, where="plugins.call_chain")
        except TetherError as exc:
            problems.append(exc)
    lock = _verified_lock(config, problems)
    named: list[tuple[int, str]] = []
    for index, entry in enumerate(config.plugins.plugins):
        try:
            manifest = entry_manifest(state, config, entry)
            check_entry(manifest, entry, config)
            if lock is not None and entry.enabled:
                check_plugin(manifest, lock)
            grant_permissions(manifest, entry.permissions, path=config.path)
            validate_entry_config(manifest.name, manifest.config, entry, config,
                                  additional_properties=manifest.open_config,
                                  host_keys=_host_keys(manifest))  # fmt: skip
        except TetherError as exc:
            problems.append(exc)
            continue
        named.append((index, manifest.name))
        if entry.enabled:
            manifests.append(manifest)
    try:
        config.check_plugin_names(named)
    except TetherError as exc:
        problems.append(exc)
    if problems:
        return problems
    try:
        order = resolve(
            manifests,
            framework_version=framework_version(),
            priorities={e.name or "": e.priority for e in config.plugins.plugins},
            unavailable={
                e.name: "it is disabled in the config"
                for e in config.plugins.plugins
                if not e.enabled and e.name
            },
        ).order
    except TetherError as exc:
        return [exc]
    out.print(f"[green]✓[/] {config.path}: {len(manifests)} plugin(s); load order: "
              + (" -> ".join(order) or "(none)"))  # fmt: skip
    return []


def _verified_lock(config: TetherConfig, problems: list[TetherError]) -> Lock | None:
    """With ``plugins.verify``, the lock each entry is checked against, as loading does (a
    missing or malformed lock is one problem, not one for each entry)."""
    if not config.plugins.verify:
        return None
    try:
        return read_lock(lock_path(config.path))
    except TetherError as exc:
        problems.append(exc)
        return None


@click.command("show")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
)
@_FILE
@pass_state
def config_show(state: State, fmt: str, file: Path | None) -> None:
    """The config FILE (else --config, $TETHER_CONFIG or ./tether.yaml) as tether sees
    it: env vars expanded, defaults applied, secrets masked."""
    state.use_config(file)
    config = _require_config(state)
    data = config.model_dump(mode="json", exclude_none=True)
    entries = data.get("plugins", {}).get("plugins", [])
    for raw, entry in zip(entries, config.plugins.plugins, strict=True):
        try:
            manifest = entry_manifest(state, config, entry)
        except TetherError:
            continue
        values = validate_entry_config(manifest.name, manifest.config, entry, config,
                                       additional_properties=manifest.open_config,
                                       host_keys=_host_keys(manifest))  # fmt: skip
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


def _host_keys(manifest: Manifest) -> tuple[str, ...]:
    """The config keys the hosts serving the plugin read themselves (its contracts')."""
    try:
        return ContractRegistry().resolve(manifest.name, manifest.provides).config_keys
    except TetherError:  # an unknown contract is the loader's to report
        return ()


def _plain(values: dict[str, object]) -> dict[str, object]:
    return {k: format_duration(v) if isinstance(v, timedelta) else v for k, v in values.items()}
