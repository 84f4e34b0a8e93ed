"""What several commands share: finding plugins, reading ``--set`` values, printing telemetry.

Kept apart from the commands so that any command module can use it without importing
another command module (no import circles, no order of registration to respect).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import click
import yaml

from tether import (
    CapabilityUse,
    DiscoveredPlugin,
    DiscoveryResult,
    IndexCache,
    Manifest,
    PluginConfig,
    TetherConfig,
    __version__,
    discover,
    load_manifest,
    search_paths_for,
)
from tether.cli._app import State
from tether.cli._output import out
from tether.cli._types import retries_option
from tether.errors import PluginNotFoundError, TetherError

__all__ = [
    "discover_plugins",
    "entry_manifest",
    "fail",
    "find_plugin",
    "framework_version",
    "locate_plugin",
    "parse_settings",
    "plugin_settings",
    "print_observed",
    "retries_option",
]


def fail(message: str, hint: str | None = None) -> TetherError:
    """An error for the CLI to print as ``Error: message`` / ``Hint: hint`` (exit 1)."""
    return TetherError(message, hint=hint)


def framework_version() -> str:
    return __version__


def discover_plugins(state: State) -> DiscoveryResult:
    """Every plugin in the search paths: the defaults (unless the config's
    ``plugins.enable_discovery`` is false), ``--plugin-path``, ``plugins.directory`` and
    ``plugins.paths``."""
    paths = search_paths_for(state.config(), plugin_paths=state.plugin_paths)
    return discover(paths, cache=IndexCache())


def find_plugin(state: State, name: str) -> DiscoveredPlugin:
    """The plugin called ``name`` in the search paths; not found names a close match."""
    result = discover_plugins(state)
    found = result.get(name)
    if found is None:
        names = [p.name for p in result.plugins]
        close = difflib.get_close_matches(name, names, n=1)
        hint = (
            f"did you mean '{close[0]}'?" if close else "`tether plugins scan` shows what was found"
        )
        raise PluginNotFoundError(f"plugin not found: {_shown(name)}", plugin=name, hint=hint)
    return found


def entry_manifest(state: State, config: TetherConfig, entry: PluginConfig) -> Manifest:
    """The manifest a config entry means: at its ``path``, else found by its ``name``."""
    if entry.path:
        path = Path(entry.path)
        manifest = load_manifest(path if path.is_absolute() else config.base_directory / path)
        if entry.name and entry.name != manifest.name:
            raise fail(
                f"plugin at {entry.path} is named '{manifest.name}', the config says "
                f"'{entry.name}'",
                "the config's `name` must match the manifest's `name`",
            )
        return manifest
    return find_plugin(state, entry.name or "").manifest


def locate_plugin(state: State, name: str) -> Manifest:
    """The manifest NAME means: a plugin directory or manifest file, else the config's
    entry, else a search."""
    path = Path(name)
    if _exists(path):
        return load_manifest(path)
    if "/" in name or name.startswith("."):
        raise PluginNotFoundError(
            f"no plugin directory at {_shortened(name)}",
            path=path,
            hint="check the path, or give a plugin name (`tether plugins list` shows them)",
        )
    config = state.config()
    entry = config.entry(name)
    if entry is not None:
        return entry_manifest(state, config, entry)
    return find_plugin(state, name).manifest


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; a name the system cannot even look up (too long) does not."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def parse_settings(items: Sequence[str]) -> dict[str, object]:
    """``--set KEY=VALUE`` items as a dict; each VALUE is parsed as YAML (exit 2 if bad).

    A value YAML reads as nothing (a lone tag ``!``, an anchor, a comment ``#x``) is
    the text itself; only an empty value, ``~`` or ``null`` is None. Aliases
    (``*name``) are refused and nesting is bounded (:data:`MAX_SETTING_DEPTH`), so a
    value is never expanded beyond what was typed.
    """
    values: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--set")
        try:
            value = _read_setting(raw)
        except (yaml.YAMLError, ValueError) as exc:
            problem = getattr(exc, "problem", None) or str(exc) or "not valid YAML"
            if problem.startswith("Exceeds the limit"):
                problem = "an integer with more digits than Python reads"
            raise click.BadParameter(
                f"the value of {key.strip()!r} is not valid YAML ({problem}): {_shown(raw)}; "
                "quote it to pass it as a string",
                param_hint="--set",
            ) from None
        if value is None and raw.strip() not in _NULLS:
            value = raw
        values[key.strip()] = value
    return values


MAX_SETTING_DEPTH = 32
"""How deeply lists and mappings may nest in one ``--set`` value."""


class _SettingLoader(yaml.SafeLoader):
    """PyYAML's safe loader for one ``--set`` value: no aliases, nesting bounded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise ValueError("aliases (*name) are not taken in a --set value")
        self._depth += 1
        try:
            if self._depth > MAX_SETTING_DEPTH:
                raise ValueError(f"nested more than {MAX_SETTING_DEPTH} deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _read_setting(raw: str) -> object:
    loader = _SettingLoader(raw)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _shown(text: str, limit: int = 80) -> str:
    """``text`` quoted for a message, shortened when it is long."""
    return _shortened(repr(text), limit)


def _shortened(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


def plugin_settings(state: State, name: str, values: dict[str, object]) -> PluginConfig:
    """The settings to load plugin ``name`` with: its config entry (if any), ``values`` on top."""
    entry = state.config().entry(name)
    if entry is None:
        return PluginConfig(name=name, config=values)
    return entry.model_copy(update={"config": {**entry.config, **values}})


def print_observed(uses: Sequence[CapabilityUse]) -> None:
    """The capabilities a plugin used without declaring them (telemetry, not enforced)."""
    if not uses:
        return
    out.print("\n[bold yellow]Used without declaring the permission[/] (telemetry, not enforced)")
    for use in uses:
        out.print(
            f"  {use.capability}: {use.count} time(s), e.g. {use.example}  "
            f"(last {use.last_seen:%Y-%m-%d %H:%M:%S})",
            markup=False,
        )
