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

Other top-level sections (``database``, ``workload``, ``server``...) belong to the
hosts and are kept as given. ``${VAR}`` and ``${VAR:-default}`` are expanded in
every string before validation; an unset variable without a default is an error
naming it and where it is used.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from tether._durations import Seconds, parse_duration
from tether._manifest import PERMISSIONS, ConfigField, Manifest
from tether.errors import ConfigError, ConfigProblem, EnvVarError, PermissionMismatchError

__all__ = [
    "CONFIG_NAMES",
    "ErrorThresholdSettings",
    "PluginConfig",
    "PluginsSection",
    "TetherConfig",
    "TimeoutSettings",
    "expand_env",
    "grant_permissions",
    "load_config",
    "mask_secrets",
    "parse_config",
    "validate_plugin_config",
]

CONFIG_NAMES = ("tether.yaml", "tether.yml", "tether.toml", "tether.json")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")
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

    initialize: Annotated[Seconds, Field(gt=0)] | None = None
    start: Annotated[Seconds, Field(gt=0)] | None = None
    stop: Annotated[Seconds, Field(gt=0)] | None = None
    call: Annotated[Seconds, Field(gt=0)] | None = None


class ErrorThresholdSettings(BaseModel):
    """``plugins.error_threshold`` (every plugin) or a plugin entry's ``error_threshold``.

    The reference's block plus ``warn_at`` (the fraction of ``max_errors`` that logs
    the "approaching" warning) and ``cooldown`` (after which a plugin the threshold
    disabled is tried again; ``null``: it stays disabled until an operator enables
    it). In a plugin entry, only the keys given override the section's.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: StrictBool = True
    max_errors: Annotated[StrictInt, Field(gt=0)] = 100
    time_window: Seconds = 300.0
    action: Literal["disable", "log", "alert"] = "disable"
    reset_on_success: StrictBool = True
    warn_at: Annotated[float, Field(gt=0, le=1)] = 0.95
    cooldown: Seconds | None = None


class PluginConfig(BaseModel):
    """One entry of ``plugins.plugins``; also what ``load_plugin`` takes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: StrictStr | None = None
    enabled: StrictBool = True
    path: StrictStr | None = None
    priority: StrictInt = 0
    config: dict[str, Any] = Field(default_factory=dict)
    permissions: dict[str, StrictBool] | None = None
    isolation: Literal["inprocess", "process"] | None = None
    error_threshold: ErrorThresholdSettings | None = None
    timeouts: TimeoutSettings | None = None
    call_chain: tuple[StrictStr, ...] | None = None


class PluginsSection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    enabled: StrictBool = True
    directory: StrictStr | None = None
    strict: StrictBool = False
    plugins: tuple[PluginConfig, ...] = ()
    error_threshold: ErrorThresholdSettings | None = None
    health_check_interval: Annotated[Seconds, Field(gt=0)] = 30.0
    health_check_timeout: Annotated[Seconds, Field(gt=0)] = 5.0
    timeouts: TimeoutSettings | None = None
    call_chain: tuple[StrictStr, ...] | None = None


class EventsSection(BaseModel):
    """``events``: the event bus's queues."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue_size: Annotated[StrictInt, Field(gt=0)] = 1000
    policy: Literal["wait", "drop_oldest"] = "wait"


class ReloadSection(BaseModel):
    """``reload``: how callers are held while a plugin reloads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue_timeout: Seconds = 30.0
    max_queue_size: Annotated[StrictInt, Field(gt=0)] = 1000
    strategy: Literal["block", "reject"] = "block"


class StoreSection(BaseModel):
    """``state``, ``database``, ``cache``: where a service keeps its data (``url``/``dsn``)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    url: StrictStr | None = None
    dsn: StrictStr | None = None

    @property
    def target(self) -> str | None:
        return self.url or self.dsn


class TetherConfig(BaseModel):
    """A whole framework config file. ``path`` is where it was read from."""

    model_config = ConfigDict(frozen=True, extra="allow")

    plugins: PluginsSection = PluginsSection()
    events: EventsSection = EventsSection()
    reload: ReloadSection = ReloadSection()
    state: StoreSection = StoreSection()
    database: StoreSection = StoreSection()
    cache: StoreSection = StoreSection()
    path: Path | None = Field(default=None, exclude=True)

    @property
    def base_directory(self) -> Path:
        """Relative plugin paths in the file are relative to the file's directory."""
        return self.path.parent if self.path is not None else Path.cwd()

    def section(self, name: str) -> dict[str, Any]:
        """A top-level section as a dict, e.g. ``config.section("workload")`` for a host's own."""
        if name in type(self).model_fields and name != "path":
            value: object = getattr(self, name).model_dump(exclude_none=True)
        else:
            value = (self.model_extra or {}).get(name)
        return dict(value) if isinstance(value, dict) else {}

    def entry(self, name: str) -> PluginConfig | None:
        return next((p for p in self.plugins.plugins if p.name == name), None)


# --------------------------------------------------------------------------- env vars


def expand_env(
    data: object,
    *,
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
    key: str = "",
) -> object:
    """Expand ``${VAR}`` / ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    env = os.environ if environ is None else environ
    if isinstance(data, str):
        return _expand_string(data, env, path, key)
    if isinstance(data, dict):
        return {
            k: expand_env(v, environ=env, path=path, key=f"{key}.{k}" if key else str(k))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [
            expand_env(v, environ=env, path=path, key=f"{key}[{i}]") for i, v in enumerate(data)
        ]
    return data


def _expand_string(text: str, env: Mapping[str, str], path: Path | None, key: str) -> object:
    whole = _VAR.fullmatch(text)
    expanded = _substitute(text, env, path, key)
    if whole is not None and whole.group(0) != "$$":
        # A value that is exactly one reference takes the type its text spells, as YAML
        # reads it: "${PORT}" with PORT=8080 is the integer 8080, "${DEBUG}" may be true.
        return _scalar(expanded)
    return expanded


def _scalar(text: str) -> object:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, bool | int | float) and text.strip() else text


def _substitute(text: str, env: Mapping[str, str], path: Path | None, key: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise EnvVarError(name, key=key, path=path)
            return default
        return value

    return _VAR.sub(replace, text)


# --------------------------------------------------------------------------- files


def _read(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror or exc}",
            path=path,
            hint="check the path given to --config",
        ) from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in {".yaml", ".yml"}:
            return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON in {path}, line {exc.lineno}: {exc.msg}", path=path
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}", path=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(f"invalid YAML in {path}{where}: {problem}", path=path) from None
    raise ConfigError(
        f"unknown config format: {path.name}",
        path=path,
        hint="use a .yaml, .yml, .json or .toml file",
    )


def _dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_config(
    data: object, *, path: Path | None = None, environ: Mapping[str, str] | None = None
) -> TetherConfig:
    """Validate already-parsed config data (after expanding environment variables)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config must be a mapping at the top level, got {type(data).__name__}", path=path
        )
    expanded = expand_env(data, environ=environ, path=path)
    try:
        return TetherConfig.model_validate({**expanded, "path": path})  # type: ignore[dict-item]
    except ValidationError as exc:
        problems = [ConfigProblem(_dotted(e["loc"]), _config_message(e)) for e in exc.errors()]
        where = f" {path}" if path else ""
        details = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(
            f"invalid config{where}: {problems[0]}\n{details}",
            path=path,
            problems=problems,
            hint="fix the keys listed above; `tether config validate` re-checks the file",
        ) from None


def _config_message(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "missing required key"
    return str(error["msg"]).lower()


def load_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> TetherConfig:
    """Read a YAML, JSON or TOML framework config file."""
    path = Path(path)
    return parse_config(_read(path), path=path, environ=environ)


# --------------------------------------------------------------------------- plugin config


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "float": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}


def _coerce(key: str, field: ConfigField, value: object) -> object:
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


def validate_plugin_config(
    plugin: str,
    schema: Mapping[str, ConfigField],
    values: Mapping[str, object],
) -> dict[str, object]:
    """Check a plugin's config against its schema; apply defaults and parse durations.

    Values must have the key's type and keep to its ``minimum``/``maximum`` or
    ``choices`` (see :class:`ConfigField`).

    Keys the schema does not know are passed through unchanged (plugins may take
    free-form settings). Every problem is reported at once in a ``ConfigError``.
    """
    result: dict[str, object] = dict(values)
    problems: list[ConfigProblem] = []
    for key, field in schema.items():
        if key not in values or values[key] is None:
            if field.required:
                problems.append(ConfigProblem(key, f"required configuration '{key}' is missing"))
                continue
            if field.default is None:
                result.pop(key, None)
                continue
            value: object = field.default
        else:
            value = values[key]
        try:
            result[key] = _coerce(key, field, value)
        except ValueError as exc:
            problems.append(ConfigProblem(key, str(exc)))
            continue
        broken = field.problem_with(result[key])
        if broken is not None:
            problems.append(ConfigProblem(key, f"configuration '{key}' {broken}"))
    if problems:
        details = "\n".join(f"  - {p.message}" for p in problems)
        raise ConfigError(
            f"invalid configuration for plugin '{plugin}': {problems[0].message}"
            + (f"\n{details}" if len(problems) > 1 else ""),
            plugin=plugin,
            problems=problems,
            hint=f"fix plugins.plugins[name={plugin}].config; the manifest's `config` section "
            "lists each key, its type and default",
        )
    return result


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
