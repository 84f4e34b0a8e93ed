"""Where a plugin the manager is asked to load comes from, and what it is loaded with.

``locate`` turns one entry of a config's ``plugins.plugins`` into a manifest and a
place (its ``path``, or its ``name`` through the search paths); the helpers check that
the config and the manifest agree, and work out a plugin's config schema, time limits
and call chain from the manifest, the framework config and the plugin's own entry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from tether._chain import CallChain, ErrorPolicy
from tether._config import PluginConfig, TetherConfig
from tether._manifest import TIMEOUT_STEPS, ConfigField, Manifest, load_manifest
from tether.errors import ConfigError, IsolationError, PluginNotFoundError

if TYPE_CHECKING:
    from tether._discovery import DiscoveryResult

__all__ = [
    "Found",
    "Locator",
    "call_chain",
    "check_isolation",
    "check_name",
    "config_schema",
    "isolation_of",
    "resources_of",
    "settings_of",
    "timeouts_of",
]


@dataclass(frozen=True, slots=True)
class Found:
    """A plugin to load: its manifest, where it came from, and how to import it."""

    manifest: Manifest
    location: str
    private: bool  # a private module namespace (directories) or real names (entry points)


def settings_of(config: PluginConfig | Mapping[str, object] | None) -> PluginConfig:
    if config is None:
        return PluginConfig()
    if isinstance(config, PluginConfig):
        return config
    try:
        return PluginConfig.model_validate(dict(config))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(
            f"invalid plugin settings: {where}: {first['msg']}",
            hint="the settings are those of a plugins.plugins entry: name, path, config, "
            "permissions, priority, enabled, isolation, timeouts, call_chain, error_threshold",
        ) from None


def check_name(manifest: Manifest, settings: PluginConfig, path: Path) -> None:
    if settings.name is not None and settings.name != manifest.name:
        raise ConfigError(
            f"plugin at {path} is named '{manifest.name}' in its manifest, but the config "
            f"calls it '{settings.name}'",
            plugin=settings.name,
            path=path,
            hint="the config's `name` must match the manifest's `name`",
        )


def isolation_of(manifest: Manifest, settings: PluginConfig) -> str:
    """``inprocess`` or ``process``: the config's ``isolation`` wins over the manifest's."""
    return settings.isolation or manifest.isolation


def check_isolation(manifest: Manifest, settings: PluginConfig) -> None:
    """Refuse ``isolation: process`` where worker processes cannot run (not on Linux or
    macOS: the worker needs Unix sockets and process groups), and ``inprocess`` for a
    plugin whose worker is another program (``command``)."""
    if manifest.command and isolation_of(manifest, settings) != "process":
        raise IsolationError(
            f"plugin '{manifest.name}' runs as the program {manifest.command[0]!r} (its "
            "manifest's `command`), which cannot be loaded in-process",
            plugin=manifest.name,
            path=manifest.source,
            hint="remove `isolation: inprocess` from its config entry",
        )
    if isolation_of(manifest, settings) == "process" and os.name != "posix":
        where = "the config" if settings.isolation == "process" else "its manifest"
        raise IsolationError(
            f"plugin '{manifest.name}' asks for isolation: process (in {where}), which "
            "needs a POSIX system (Unix sockets, process groups)",
            plugin=manifest.name,
            path=manifest.source,
            hint="set `isolation: inprocess` to run it in the host's process",
        )


def check_entry(manifest: Manifest, settings: PluginConfig, config: TetherConfig) -> None:
    """What loading this config entry would refuse before importing any code: its
    isolation and its call chain (``tether config validate`` asks)."""
    check_isolation(manifest, settings)
    call_chain(manifest, settings, config, ErrorPolicy())


def config_schema(manifest: Manifest, instance: object) -> dict[str, ConfigField]:
    """The manifest's config schema, plus keys the plugin class declares itself."""
    declared = getattr(instance, "config_schema", None)
    schema = dict(manifest.config)
    if isinstance(declared, Mapping):
        for key, spec in declared.items():
            if key in schema:
                continue
            try:
                schema[key] = ConfigField.model_validate(spec)
            except ValidationError as exc:
                raise ConfigError(
                    f"plugin '{manifest.name}': invalid config_schema entry '{key}': "
                    f"{exc.errors()[0]['msg']}",
                    plugin=manifest.name,
                    hint="each config_schema entry needs a `type` (string, integer, float, "
                    "boolean, duration, array or object)",
                ) from None
    return schema


def resources_of(manifest: Manifest, settings: PluginConfig) -> dict[str, float | None]:
    """The plugin's ``resources``: its manifest's, with its config entry's on top
    (``memory`` in bytes, ``cpu_time`` in seconds or None, ``open_files``, ``processes``)."""
    chosen: dict[str, float | None] = dict(manifest.resources.model_dump())
    if settings.resources is not None:
        chosen.update(settings.resources.model_dump(exclude_none=True))
    return chosen


def timeouts_of(
    manifest: Manifest,
    settings: PluginConfig,
    config: TetherConfig,
    host_defaults: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Each step's time limit: the entry's, else the section's, else the one the manifest
    sets, else the host's default for the step (``host_defaults``: the manager's
    ``stop_timeout``), else the manifest's default."""
    section = config.plugins.timeouts
    entry = settings.timeouts
    declared = manifest.timeouts.model_fields_set
    chosen: dict[str, float] = {}
    for step in TIMEOUT_STEPS:
        value = getattr(entry, step) if entry is not None else None
        if value is None and section is not None:
            value = getattr(section, step)
        if value is None and step not in declared and host_defaults:
            value = host_defaults.get(step)
        chosen[step] = value if value is not None else getattr(manifest.timeouts, step)
    return chosen


def call_chain(
    manifest: Manifest, settings: PluginConfig, config: TetherConfig, policy: ErrorPolicy
) -> CallChain:
    """The plugin's call chain: its entry's ``call_chain``, else the section's, else the default."""
    links, where = settings.call_chain, "its config entry's call_chain"
    if links is None:
        links, where = config.plugins.call_chain, "plugins.call_chain"
    timeout = timeouts_of(manifest, settings, config)["call"]
    return CallChain.parse(links, plugin=manifest.name, timeout=timeout, policy=policy,
                           where=where)  # fmt: skip


class Locator:
    """Finds the manifest of each entry of a config (its ``path``, or its ``name``)."""

    def __init__(self, config: TetherConfig) -> None:
        self.config = config
        self._discovered: DiscoveryResult | None = None

    def locate(self, entry: PluginConfig) -> Found:
        base = self.config.base_directory
        if entry.path is not None:
            path = Path(entry.path)
            path = path if path.is_absolute() else base / path
            if not path.exists():
                raise PluginNotFoundError(
                    f"failed to load plugin: plugin file not found: {path}",
                    plugin=entry.name,
                    path=path,
                    hint="check `path` in the config; relative paths are relative to the "
                    "config file",
                )
            manifest = load_manifest(path)
            check_name(manifest, entry, path)
            return Found(manifest, str(manifest.directory or path), private=True)
        if entry.name is None:
            raise ConfigError(
                "a plugin entry needs a `name` or a `path`",
                path=self.config.path,
                hint="give each entry of plugins.plugins a name (found by discovery) or a path",
            )
        return self.discover(entry.name)

    def discover(self, name: str) -> Found:
        from tether._discovery import IndexCache, discover, search_paths_for

        if self._discovered is None:
            paths = search_paths_for(self.config)
            self._discovered = discover(paths, cache=IndexCache())
        plugin = self._discovered.get(name)
        if plugin is None:
            if not self.config.plugins.enable_discovery:
                raise PluginNotFoundError(
                    f"missing plugin: no plugin named '{name}' ships with tether or is "
                    "installed, and plugins.enable_discovery is false (no directory is "
                    "searched)",
                    plugin=name,
                    path=self.config.path,
                    hint=f"give the entry of '{name}' a `path`, or set "
                    "plugins.enable_discovery: true to search plugins.paths and the default "
                    "directories",
                )
            raise PluginNotFoundError(
                f"missing plugin: no plugin named '{name}' in any search path",
                plugin=name,
                hint="set its `path` in the config, or put it in a searched directory "
                "(plugins.paths, plugins.directory; `tether plugins scan` lists them)",
            )
        return Found(plugin.manifest, plugin.location, private=plugin.origin != "entry-point")
