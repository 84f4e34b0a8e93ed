"""Framework configuration files and per-plugin config (pure apart from reading the file).

The shape is the reference's::

    plugins:
      enabled: true
      directory: ./plugins
      plugins:
        - name: auth-plugin
          enabled: true
          path: ./plugins/auth-plugin
          priority: 200
          config: {jwt_secret: "${JWT_SECRET}"}
          permissions: {database: true}

Every key is checked: an unknown one is an error naming its dotted path, its line and
the closest known key. Other top-level sections (``bench``, ``serve``...) belong to the
hosts: each is checked against the schema the host that reads it registers
(:mod:`tether._sections`), and a section no installed host claims is an error. The
file is read within :mod:`tether._documents`' bounds
(1 MiB, a regular file, nesting, integers, duplicate keys, YAML aliases). ``${VAR}`` and
``${VAR:-default}`` are expanded in every string after parsing and before validation
(:mod:`tether._expansion`): the result is text, which a field that is not a string
converts by its type's rules. The same plugin listed twice is an error naming both
entries.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    model_validator,
)

from tether._config_names import CONFIG_NAMES
from tether._config_problems import (
    check_host_sections,
    config_problem,
    database_misspellings,
    did_you_mean,
    invalid_config,
    line_of,
)
from tether._describe import error_line
from tether._documents import DocumentError, decode, format_of, parse, read_bytes, read_document
from tether._durations import parse_duration
from tether._expansion import (
    EnvBool,
    EnvFloat,
    EnvInt,
    EnvSeconds,
    Expanded,
    convert,
    expand_env,
    plain,
)
from tether._manifest import MANIFEST_NAMES, PERMISSIONS, ConfigField, Manifest, check_name
from tether._sections import SectionRegistry, config_sections
from tether._sizes import Bytes
from tether.errors import ConfigError, ConfigKeyProblem, ConfigProblem, PermissionMismatchError

__all__ = [
    "CONFIG_NAMES",
    "FRAMEWORK_SECTIONS",
    "ConfigPlace",
    "ErrorThresholdSettings",
    "PluginConfig",
    "PluginsSection",
    "RetrySettings",
    "TetherConfig",
    "TimeoutSettings",
    "check_plugin_names",
    "expand_env",
    "grant_permissions",
    "load_config",
    "mask_secrets",
    "parse_config",
    "validate_entry_config",
    "validate_plugin_config",
]

_SECRET_KEY = re.compile(
    r"(^|[_.-])(secret|password|passwd|pass|token|api[_-]?key|private[_-]?key|credentials?)$",
    re.IGNORECASE,
)
_DSN_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@/\s]+)(@)")
_INLINE_SECRET = re.compile(
    r"((?<![A-Za-z0-9])[A-Za-z0-9_.-]*?(?:password|passwd|pwd|secret|token|api[_-]?key)\s*=\s*)"
    r"('[^']*'|[^&\s;]+)",
    re.IGNORECASE,
)
MASK = "****"


class TimeoutSettings(BaseModel):
    """``plugins.timeouts`` (every plugin) or a plugin entry's ``timeouts``.

    The manifest's ``timeouts`` keys; only the keys given override what the plugin's
    manifest says (an entry's over the section's).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    initialize: Annotated[EnvSeconds, Field(gt=0)] | None = None
    start: Annotated[EnvSeconds, Field(gt=0)] | None = None
    stop: Annotated[EnvSeconds, Field(gt=0)] | None = None
    call: Annotated[EnvSeconds, Field(gt=0)] | None = None


class ResourceSettings(BaseModel):
    """A plugin entry's ``resources``: the manifest's keys; only those given override it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    memory: Bytes | None = None
    cpu_time: Annotated[EnvSeconds, Field(gt=0)] | None = None
    open_files: Annotated[EnvInt, Field(ge=16, le=1 << 20)] | None = None
    processes: Annotated[EnvInt, Field(ge=1, le=1 << 16)] | None = None


class ErrorThresholdSettings(BaseModel):
    """``plugins.error_threshold`` (every plugin) or a plugin entry's ``error_threshold``.

    The reference's block plus ``warn_at`` (the fraction of ``max_errors`` that logs
    the "approaching" warning) and ``cooldown`` (after which a plugin the threshold
    disabled is tried again; ``null``: it stays disabled until an operator enables
    it). In a plugin entry, only the keys given override the section's.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: EnvBool = True
    max_errors: Annotated[EnvInt, Field(gt=0)] = 100
    time_window: EnvSeconds = 300.0
    action: Literal["disable", "log", "alert"] = "disable"
    reset_on_success: EnvBool = True
    warn_at: Annotated[EnvFloat, Field(gt=0, le=1)] = 0.95
    cooldown: EnvSeconds | None = None


class RetrySettings(BaseModel):
    """A plugin entry's ``retries``: how many times bringing the plugin up is tried.

    ``attempts`` counts every try, the first included (1: no retry); the wait after
    the first failed try is ``backoff``, and it doubles after each further one.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: Annotated[EnvInt, Field(ge=1, le=100)] = 3
    backoff: Annotated[EnvSeconds, Field(ge=0, le=3600)] = 1.0


class PluginConfig(BaseModel):
    """One entry of ``plugins.plugins``; also what ``load_plugin`` takes.

    ``required: false`` lets a host start without the plugin when it fails to come up
    (after its ``retries``); see ``tether._retries``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[StrictStr, AfterValidator(check_name)] | None = None
    enabled: EnvBool = True
    path: StrictStr | None = None
    priority: EnvInt = 0
    config: dict[str, Any] = Field(default_factory=dict)
    permissions: dict[str, EnvBool] | None = None
    isolation: Literal["inprocess", "process"] | None = None
    error_threshold: ErrorThresholdSettings | None = None
    timeouts: TimeoutSettings | None = None
    resources: ResourceSettings | None = None
    call_chain: tuple[StrictStr, ...] | None = None
    retries: RetrySettings | None = None
    required: EnvBool = True


class PluginsSection(BaseModel):
    """``plugins``: where plugins are found, the entries to load, and every plugin's defaults.

    ``directory`` and ``paths`` (the reference's list) are searched for plugins named
    by an entry without a ``path``; ``enable_discovery: false`` searches no directory
    at all, so giving either with it is an error rather than a setting that does nothing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: EnvBool = True
    directory: StrictStr | None = None
    paths: tuple[StrictStr, ...] = ()
    enable_discovery: EnvBool = True
    strict: EnvBool = False
    verify: EnvBool = False  # refuse plugins whose files differ from tether.lock
    plugins: tuple[PluginConfig, ...] = ()
    error_threshold: ErrorThresholdSettings | None = None
    health_check_interval: Annotated[EnvSeconds, Field(gt=0)] = 30.0
    health_check_timeout: Annotated[EnvSeconds, Field(gt=0)] = 5.0
    timeouts: TimeoutSettings | None = None
    call_chain: tuple[StrictStr, ...] | None = None

    @model_validator(mode="after")
    def _searched_only_with_discovery(self) -> PluginsSection:
        if not self.enable_discovery and (self.directory is not None or self.paths):
            given = " and ".join(
                f"plugins.{key}"
                for key, value in (("directory", self.directory), ("paths", self.paths))
                if value
            )
            raise ValueError(
                f"{given} would never be searched: plugins.enable_discovery is false "
                "(search no directory); remove one of them"
            )
        return self


class EventsSection(BaseModel):
    """``events``: the event bus's queues."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue_size: Annotated[EnvInt, Field(gt=0)] = 1000
    policy: Literal["wait", "drop_oldest"] = "wait"


class ReloadSection(BaseModel):
    """``reload``: how callers are held while a plugin reloads, and how long a new version
    is watched (``grace_period``) before its previous one is let go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue_timeout: EnvSeconds = 30.0
    max_queue_size: Annotated[EnvInt, Field(gt=0)] = 1000
    strategy: Literal["block", "reject"] = "block"
    grace_period: EnvSeconds = 30.0


class _Store(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: StrictStr | None = None
    dsn: StrictStr | None = None

    @property
    def target(self) -> str | None:
        return self.url or self.dsn


class StateSection(_Store):
    """``state``: where plugin storage and the plugin state tables are kept (``url``/``dsn``),
    and how often and how long observability writes them."""

    flush_interval: Annotated[EnvSeconds, Field(gt=0)] | None = None
    retention: Annotated[EnvSeconds, Field(gt=0)] | None = None


class CacheSection(_Store):
    """``cache``: the cache behind ``ctx.cache`` (``url``; none: in memory)."""


class DatabaseSection(_Store):
    """``database``: the database behind ``ctx.database`` (``url``/``dsn``).

    The section is shared: hosts and their drivers keep their own connection settings
    here (a pool size, a data directory), so it keeps keys it does not know, as plain
    values; a key that looks like a misspelling of ``url`` or ``dsn`` is refused.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _plain_extras(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        return {k: v if k in cls.model_fields else plain(v) for k, v in data.items()}


class TetherConfig(BaseModel):
    """A whole framework config file. ``path`` is where it was read from.

    Host sections are kept as given (plain values, after ``${VAR}`` expansion);
    :func:`parse_config` checks them against the schemas their hosts register.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    plugins: PluginsSection = PluginsSection()
    events: EventsSection = EventsSection()
    reload: ReloadSection = ReloadSection()
    state: StateSection = StateSection()
    database: DatabaseSection = DatabaseSection()
    cache: CacheSection = CacheSection()
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _plain_extras(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        return {k: v if k in cls.model_fields else plain(v) for k, v in data.items()}

    @property
    def base_directory(self) -> Path:
        """Relative plugin paths in the file are relative to the file's directory."""
        return self.path.parent if self.path is not None else Path.cwd()

    def section(self, name: str) -> dict[str, Any]:
        """A top-level section as a dict, e.g. ``config.section("workload")`` for a host's own."""
        if name in type(self).model_fields and name != "path":
            value: object = plain(getattr(self, name).model_dump(exclude_none=True))
        else:
            value = (self.model_extra or {}).get(name)
        return dict(value) if isinstance(value, dict) else {}

    def key_lines(self) -> Mapping[str, int]:
        """The line of each dotted key (``workload.plugin_name``, ``plugins.plugins[0]``) in
        the file the config was read from: for messages, so read again (within the same
        bounds), and empty for a TOML file, a config built in code, or a file that no
        longer reads."""
        return _lines_of(self.path)

    def plugin_directories(self) -> tuple[Path, ...]:
        """The directories the config adds to the search paths: ``plugins.directory``,
        then ``plugins.paths``, relative ones made absolute against
        :attr:`base_directory` (``~`` is the home directory)."""
        written = [self.plugins.directory] if self.plugins.directory else []
        found: dict[Path, None] = {}
        for text in (*written, *self.plugins.paths):
            path = Path(text).expanduser()
            found.setdefault(path if path.is_absolute() else self.base_directory / path)
        return tuple(found)

    def entry(self, name: str) -> PluginConfig | None:
        return next((p for p in self.plugins.plugins if p.name == name), None)

    def check_plugin_names(self, names: Sequence[tuple[int, str]]) -> None:
        """Refuse two entries whose manifests turn out to name one plugin (``ConfigError``).

        ``names`` pairs an entry's index in ``plugins.plugins`` with its manifest's
        name: an entry by ``name`` and another by ``path`` to the same plugin, say. (Two
        entries with one ``name``, or one ``path``, are refused when the file is read.)
        """
        check_plugin_names(self, names)


FRAMEWORK_SECTIONS = tuple(name for name in TetherConfig.model_fields if name != "path")
"""The top-level sections tether reads itself; every other belongs to a host."""


# --------------------------------------------------------------------------- files


def _read(path: Path) -> tuple[object, Mapping[str, int]]:
    """The file's data and the line of each dotted key (for YAML and JSON)."""
    try:
        text = decode(read_bytes(path))
    except DocumentError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.problem}",
            path=path,
            hint="check the path given to --config (a regular file of at most 1 MiB)",
        ) from None
    fmt = format_of(path)
    if fmt is None:
        raise ConfigError(
            f"unknown config format: {path.name}",
            path=path,
            hint="use a .yaml, .yml, .json or .toml file",
        )
    try:
        document = parse(text, fmt)
    except DocumentError as exc:
        where = f", line {exc.line}" if exc.line is not None else ""
        raise ConfigError(f"{exc.label} in {path}{where}: {exc.problem}", path=path) from None
    return document.data, document.lines


def parse_config(
    data: object,
    *,
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    lines: Mapping[str, int] | None = None,
    sections: SectionRegistry | None = None,
) -> TetherConfig:
    """Validate already-parsed config data (after expanding environment variables).

    ``lines`` (dotted key to line number) lets errors say where a key is. Host sections
    are checked against ``sections`` (default: the process's
    :data:`tether.config_sections`).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config must be a mapping at the top level, got {type(data).__name__}", path=path
        )
    expanded = cast("dict[str, object]", expand_env(data, environ=environ, path=path))
    lines = lines or {}
    registry = config_sections if sections is None else sections
    typed: dict[str, dict[str, object]] = {}
    problems = check_host_sections(
        expanded, registry, lines, framework=FRAMEWORK_SECTIONS, typed=typed
    )
    for name, values in typed.items():  # what variables gave, as the host's types read it
        expanded[name] = {**cast("dict[str, object]", expanded[name]), **values}
    problems += database_misspellings(
        expanded.get("database"), lines, known=tuple(DatabaseSection.model_fields)
    )
    config = None
    try:
        config = TetherConfig.model_validate({**expanded, "path": path})
    except ValidationError as exc:
        problems += [config_problem(e, TetherConfig, lines) for e in exc.errors()]
    except (TypeError, ValueError, RecursionError) as exc:  # a shape no check foresaw
        raise ConfigError(f"invalid config {path}: {error_line(exc)}", path=path) from None
    if problems or config is None:
        raise invalid_config(problems, path)
    _check_unique_entries(config, lines)
    return config


# --------------------------------------------------------------------------- one entry per plugin


def _check_unique_entries(config: TetherConfig, lines: Mapping[str, int]) -> None:
    """Refuse a plugin listed twice: by the same ``name``, or by ``path`` to one directory."""
    entries = config.plugins.plugins
    names: dict[str, int] = {}
    places: dict[str, int] = {}
    pairs: dict[tuple[int, int], str] = {}
    for index, entry in enumerate(entries):
        if entry.name is not None:
            first = names.setdefault(entry.name, index)
            if first != index:
                pairs.setdefault((first, index), f"plugin '{entry.name}'")
        if entry.path is not None:
            first = places.setdefault(_place(config.base_directory, entry.path), index)
            if first != index:
                pairs.setdefault((first, index), f"the plugin at {entry.path}")
    if pairs:
        _refuse_twice(config, [(what, *pair) for pair, what in pairs.items()], lines)


def check_plugin_names(config: TetherConfig, names: Sequence[tuple[int, str]]) -> None:
    """Refuse two entries that turn out to name one plugin once their manifests are read.

    ``names`` pairs an entry's index in ``plugins.plugins`` with its manifest's name
    (an entry by ``name`` and another by ``path`` to the same plugin, say).
    """
    first_of: dict[str, int] = {}
    pairs = []
    for index, name in names:
        first = first_of.setdefault(name, index)
        if first != index:
            pairs.append((f"plugin '{name}'", first, index))
    if pairs:
        _refuse_twice(config, pairs, _lines_of(config.path))


def _refuse_twice(
    config: TetherConfig, pairs: Sequence[tuple[str, int, int]], lines: Mapping[str, int]
) -> None:
    problems = [_listed_twice(what, first, again, lines) for what, first, again in pairs]
    details = "\n".join(f"  - {p.message}" for p in problems)
    raise ConfigError(
        f"invalid config{f' {config.path}' if config.path else ''}: {problems[0].message}"
        + (f"\n{details}" if len(problems) > 1 else ""),
        path=config.path,
        problems=problems,
        hint="keep one entry per plugin: merge the two entries' settings into one",
    )


def _lines_of(path: Path | None) -> Mapping[str, int]:
    """The lines of a config file's keys, read again for an error message (none if it fails)."""
    if path is None:
        return {}
    try:
        return read_document(path).lines
    except DocumentError:
        return {}


def _place(base: Path, written: str) -> str:
    """The plugin directory an entry's ``path`` names, normalised without touching the disk."""
    place = os.path.normpath(os.path.join(base, written))  # noqa: PTH118 - no resolving
    head, tail = os.path.split(place)
    return head if tail in MANIFEST_NAMES else place


def _listed_twice(what: str, first: int, again: int, lines: Mapping[str, int]) -> ConfigProblem:
    def entry(index: int) -> str:
        line = lines.get(f"plugins.plugins[{index}]")
        return f"plugins.plugins[{index}]" + (f" (line {line})" if line is not None else "")

    key = f"plugins.plugins[{again}]"
    return ConfigProblem(key, f"{what} is listed twice: {entry(first)} and {entry(again)}")


def load_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> TetherConfig:
    """Read a YAML, JSON or TOML framework config file."""
    path = Path(path)
    data, lines = _read(path)
    return parse_config(data, path=path, environ=environ, lines=lines)


# --------------------------------------------------------------------------- plugin config


_TYPE_NAMES = {
    "duration": "a duration",
    "string": "a string",
    "integer": "an integer",
    "float": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}


def _coerce(key: str, field: ConfigField, value: object) -> object:
    if isinstance(value, Expanded):  # text from ${VAR}: converted by the key's type
        try:
            value = convert(value, field.type, secret=field.secret)
        except ValueError as exc:
            raise ValueError(f"configuration '{key}': {exc}") from None
    if field.type == "duration":
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"configuration '{key}' must be a duration: {exc}") from None
    ok = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list | tuple),
        "object": lambda v: isinstance(v, dict),
    }[field.type](value)
    if not ok:
        raise ValueError(
            f"configuration '{key}' must be {_TYPE_NAMES[field.type]}, got {type(value).__name__}"
        )
    return float(value) if field.type == "float" else value  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ConfigPlace:
    """Where a plugin's config values are written, for messages: ``at`` is the dotted key
    of the mapping (``plugins.plugins[0].config``) in ``path`` (with its ``lines``);
    ``given`` names keys given elsewhere (``{"scale": "--set scale"}``)."""

    at: str | None = None
    path: Path | None = None
    lines: Mapping[str, int] = field(default_factory=dict)
    given: Mapping[str, str] = field(default_factory=dict)

    def of(self, key: str) -> str | None:
        """``line N: plugins.plugins[0].config.KEY``, ``--set KEY``, or ``None``."""
        if key in self.given:
            return self.given[key]
        if self.at is None:
            return None
        dotted_key = f"{self.at}.{key}"
        line = line_of(dotted_key, self.lines)
        return f"line {line}: {dotted_key}" if line is not None else dotted_key

    def line(self, key: str) -> int | None:
        return (
            None
            if key in self.given or self.at is None
            else line_of(f"{self.at}.{key}", self.lines)
        )


def validate_plugin_config(
    plugin: str,
    schema: Mapping[str, ConfigField],
    values: Mapping[str, object],
    *,
    additional_properties: bool = False,
    host_keys: Collection[str] = (),
    where: ConfigPlace | None = None,
) -> dict[str, object]:
    """Check a plugin's config against its schema; apply defaults and parse durations.

    Values must have the key's type and keep to its ``minimum``/``maximum`` or
    ``choices`` (see :class:`ConfigField`). A key the schema does not list is an error
    naming the closest key it does, unless ``additional_properties`` (the manifest's
    ``config.additional_properties: true``): then it is passed through unchanged.
    ``host_keys`` (its contract's ``config_keys``) are taken as such too. ``where``
    says where the values are written, for the messages.

    Text a ``${VAR}`` gave converts by the key's type (see :func:`tether._expansion.convert`).
    Every problem is reported at once in a ``ConfigError``.
    """
    where = where or ConfigPlace()
    result: dict[str, object] = {k: plain(v) for k, v in values.items()}
    declared = {**dict.fromkeys(host_keys), **schema}
    unknown = [] if additional_properties else _unknown_keys(declared, values, where)
    problems: list[ConfigProblem] = list(unknown)
    for key, field_ in schema.items():
        if key not in values or values[key] is None:
            if field_.required:
                problems.append(ConfigProblem(key, f"required configuration '{key}' is missing"))
                continue
            if field_.default is None:
                result.pop(key, None)
                continue
            value: object = field_.default
        else:
            value = values[key]
        try:
            result[key] = _coerce(key, field_, value)
        except ValueError as exc:
            problems.append(ConfigProblem(key, str(exc)))
            continue
        broken = field_.problem_with(result[key])
        if broken is not None:
            problems.append(ConfigProblem(key, f"configuration '{key}' {broken}"))
    if problems:
        raise _invalid_plugin_config(plugin, schema, problems, unknown=bool(unknown), where=where)
    return result


def validate_entry_config(
    plugin: str,
    schema: Mapping[str, ConfigField],
    settings: PluginConfig,
    config: TetherConfig,
    *,
    additional_properties: bool = False,
    host_keys: Collection[str] = (),
) -> dict[str, object]:
    """:func:`validate_plugin_config` for a plugin entry: problems name the entry's dotted
    key in ``config`` and its line (the file is read again for them only on failure)."""
    index = next((i for i, e in enumerate(config.plugins.plugins) if e is settings), None)
    at = f"plugins.plugins[{index}].config" if index is not None else None
    check = functools.partial(validate_plugin_config, plugin, schema, settings.config,
                              additional_properties=additional_properties,
                              host_keys=host_keys)  # fmt: skip
    try:
        return check(where=ConfigPlace(at, config.path))
    except ConfigError:
        if at is None or config.path is None:
            raise
    return check(where=ConfigPlace(at, config.path, config.key_lines()))  # fails again, with lines


def _unknown_keys(
    schema: Mapping[str, object], values: Mapping[str, object], where: ConfigPlace
) -> list[ConfigKeyProblem]:
    problems: list[ConfigKeyProblem] = []
    for key in values:
        if key in schema:
            continue
        suggestion = did_you_mean(str(key), list(schema))
        place = where.of(key)
        message = (
            f"unknown configuration key '{key}'{suggestion}"
            if place is None
            else f"{place}: unknown configuration key{suggestion}"
        )
        problems.append(ConfigKeyProblem(key, message, line=where.line(key)))
    return problems


def _invalid_plugin_config(
    plugin: str,
    schema: Mapping[str, ConfigField],
    problems: Sequence[ConfigProblem],
    *,
    unknown: bool,
    where: ConfigPlace,
) -> ConfigError:
    details = "\n".join(f"  - {p.message}" for p in problems)
    elsewhere = [where.given[p.key] for p in problems if p.key in where.given]
    at = where.at or f"plugins.plugins[name={plugin}].config"
    at = ", ".join(elsewhere) if len(elsewhere) == len(problems) else at
    if unknown:
        keys = f"its keys are: {', '.join(schema)}" if schema else "it declares no keys"
        hint = (
            f"fix {at}: plugin '{plugin}' takes the keys its manifest's `config` section "
            f"declares ({keys}); a plugin taking any key says `additional_properties: true` there"
        )
    else:
        hint = f"fix {at}; the manifest's `config` section lists each key, its type and default"
    file = f" in {where.path}" if where.path is not None else ""
    return ConfigError(
        f"invalid configuration for plugin '{plugin}'{file}: {problems[0].message}"
        + (f"\n{details}" if len(problems) > 1 else ""),
        plugin=plugin,
        path=where.path,
        problems=list(problems),
        hint=hint,
    )


def grant_permissions(
    manifest: Manifest, requested: Mapping[str, bool] | None, *, path: Path | None = None
) -> frozenset[str]:
    """The permissions a plugin gets.

    Without a ``permissions`` block in the config, the plugin gets what its manifest
    declares. With one, the block is authoritative and may only grant permissions
    the manifest declares.
    """
    declared = manifest.permissions.granted
    if requested is None:
        return declared
    granted: set[str] = set()
    for name, allowed in requested.items():
        if name not in PERMISSIONS:
            raise ConfigError(
                f"unknown permission: {name}",
                plugin=manifest.name,
                path=path,
                hint=f"permissions are {', '.join(PERMISSIONS)}",
            )
        if not allowed:
            continue
        if name not in declared:
            raise PermissionMismatchError(manifest.name, name, path=path)
        granted.add(name)
    return frozenset(granted)


# --------------------------------------------------------------------------- display


def mask_secrets(data: object, *, secret_keys: frozenset[str] = frozenset()) -> object:
    """A copy of ``data`` with secret-looking values replaced by ``****``.

    A value is secret when its key looks like one (password, token, secret, api_key...),
    when its key is in ``secret_keys`` (schema fields marked ``secret: true``), or when
    it is a URL carrying a password (only the password is masked).
    """
    if isinstance(data, dict):
        out: dict[str, object] = {}
        for key, value in data.items():
            if isinstance(value, str | int | float) and (
                _SECRET_KEY.search(str(key)) or key in secret_keys
            ):
                out[key] = MASK
            else:
                out[key] = mask_secrets(value, secret_keys=secret_keys)
        return out
    if isinstance(data, list | tuple):
        return [mask_secrets(v, secret_keys=secret_keys) for v in data]
    if isinstance(data, str):
        masked = _DSN_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), data)
        return _INLINE_SECRET.sub(lambda m: m.group(1) + MASK, masked)
    if isinstance(data, timedelta):
        return str(data)
    return data
