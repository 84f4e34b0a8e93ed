"""Plugin manifests: ``plugin.yaml``, ``plugin.json`` or ``plugin.toml`` (parse and validate).

``load_manifest(path)`` returns a frozen :class:`Manifest` or raises
:class:`~tether.errors.ManifestError` listing *every* problem at once, each with the
file, the field and the line (YAML, JSON and TOML alike). Messages follow the
reference wording (``missing required field: name`` and so on). Files are read by
:mod:`tether._documents`, within its bounds (1 MiB, regular files, nesting, integers,
duplicate keys, YAML aliases); whatever goes wrong reading or checking one file is a
``ManifestError`` for that file, never another exception.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from tether._describe import error_line
from tether._documents import DocumentError, decode, format_of, parse, read_bytes
from tether._durations import Seconds, format_duration, parse_duration
from tether._sizes import Bytes
from tether._versions import constraint_problem, version_problem
from tether.errors import ManifestError, ManifestProblem

__all__ = [
    "CONFIG_TYPES",
    "HOOK_TYPES",
    "MANIFEST_NAMES",
    "PERMISSIONS",
    "TIMEOUT_STEPS",
    "ConfigField",
    "Dependency",
    "Events",
    "Export",
    "HookDeclaration",
    "Manifest",
    "Permissions",
    "Timeouts",
    "check_name",
    "document_error",
    "field_line",
    "find_manifest",
    "load_manifest",
    "parse_manifest",
    "read_manifest_data",
    "validate_manifest_data",
]

MANIFEST_NAMES = ("plugin.yaml", "plugin.yml", "plugin.json", "plugin.toml")
PERMISSIONS = ("database", "cache", "router", "config", "filesystem", "network", "exec")
TIMEOUT_STEPS = ("initialize", "start", "stop", "call")
CONFIG_TYPES = ("string", "integer", "float", "boolean", "duration", "array", "object")
HOOK_TYPES = (
    "startup",
    "shutdown",
    "pre_request",
    "post_request",
    "pre_response",
    "post_response",
    "error",
)
# Whole-string patterns, always used with fullmatch (``$`` would accept a trailing newline).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ENTRY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_IDENT = re.compile(r"[A-Za-z_][\w.:-]*")
_EVENT = re.compile(r"[A-Za-z0-9_][\w.-]*(\.\*)?|\*")
_MAX_PROBLEMS = 50  # listed for one file; the rest are counted

_Strict = ConfigDict(frozen=True, extra="forbid")


def check_name(value: str) -> str:
    """``value`` if it is a valid plugin name, else a ``ValueError`` saying the rule."""
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"invalid plugin name {value!r}: use letters, digits, '.', '_' or '-' "
            "(at most 64 characters, starting with a letter or digit)"
        )
    return value


class FilesystemAccess(BaseModel):
    """``permissions.filesystem: {read: [...], write: [...]}``: paths a process plugin's
    worker may read, or read and write, beside its own directory and data directory
    (absolute, or relative to the plugin's directory; ``~`` is the user's home)."""

    model_config = _Strict

    read: tuple[StrictStr, ...] = ()
    write: tuple[StrictStr, ...] = ()


class Permissions(BaseModel):
    """What a plugin may touch. Manifests declare; configs grant."""

    model_config = _Strict

    database: StrictBool = False
    cache: StrictBool = False
    router: StrictBool = False
    config: StrictBool = False
    filesystem: StrictBool | FilesystemAccess = False
    network: StrictBool = False
    exec: StrictBool = False

    @property
    def granted(self) -> frozenset[str]:
        return frozenset(p for p in PERMISSIONS if getattr(self, p) not in (False, None))

    @property
    def paths(self) -> FilesystemAccess:
        """The paths ``filesystem`` lists (none for ``true``/``false``)."""
        access = self.filesystem
        return access if isinstance(access, FilesystemAccess) else FilesystemAccess()


class Dependency(BaseModel):
    model_config = _Strict

    name: StrictStr
    version: StrictStr = "*"
    optional: StrictBool = False

    _n = field_validator("name")(check_name)

    @field_validator("version", mode="before")
    @classmethod
    def _constraint(cls, value: object) -> object:
        problem = constraint_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


_TYPE_CHECKS: dict[str, tuple[str, Any]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "float": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    "boolean": ("a boolean", lambda v: isinstance(v, bool)),
    "array": ("an array", lambda v: isinstance(v, list | tuple)),
    "object": ("an object", lambda v: isinstance(v, dict)),
}


class ConfigField(BaseModel):
    """One key of a plugin's config schema.

    ``minimum``/``maximum`` bound an integer, float or duration key (inclusive; a
    duration's bounds are durations); ``choices`` lists the values a string,
    integer or float key may take. :meth:`problem_with` checks a value against them.
    """

    model_config = _Strict

    type: Literal["string", "integer", "float", "boolean", "duration", "array", "object"]
    required: StrictBool = False
    default: Any = None
    description: StrictStr = ""
    secret: StrictBool = False
    minimum: Any = None
    maximum: Any = None
    choices: tuple[Any, ...] | None = None

    @model_validator(mode="after")
    def _default_matches(self) -> ConfigField:
        if self.default is None:
            return self
        if self.required:
            raise ValueError(
                "invalid config schema: a required key has no use for a default; "
                "drop `required` or the `default`"
            )
        if self.type == "duration":
            try:
                parse_duration(self.default)
            except ValueError as exc:
                raise ValueError(f"invalid config schema: default {exc}") from None
            return self
        what, check = _TYPE_CHECKS[self.type]
        if not check(self.default):
            found = type(self.default).__name__
            raise ValueError(f"invalid config schema: default must be {what}, got {found}")
        return self

    @model_validator(mode="after")
    def _constraints_hold(self) -> ConfigField:
        problems = _constraint_problems(self)
        if problems:
            raise ValueError("invalid config schema: " + "; ".join(problems))
        return self

    @property
    def allowed(self) -> str:
        """The constraints in words (``from 1 to 10``, ``one of a, b``), or ``""``."""
        if self.choices is not None:
            return "one of " + ", ".join(_shown(c, quote=False) for c in self.choices)
        low, high = _bound(self, self.minimum), _bound(self, self.maximum)
        if low is not None and high is not None:
            return f"from {_shown(low)} to {_shown(high)}"
        if low is not None:
            return f"at least {_shown(low)}"
        return f"at most {_shown(high)}" if high is not None else ""

    def problem_with(self, value: object) -> str | None:
        """Why ``value`` (already of the key's type) breaks the constraints, or ``None``."""
        if self.choices is not None:
            return None if value in self.choices else f"must be {self.allowed}, got {value!r}"
        low, high = _bound(self, self.minimum), _bound(self, self.maximum)
        if (low is not None and value < low) or (high is not None and value > high):
            return f"must be {self.allowed}, got {_shown(value)}"
        return None


# --------------------------------------------------------------------------- config constraints

_BOUNDED = ("integer", "float", "duration")
_CHOOSABLE = ("string", "integer", "float")


def _bound(field: ConfigField, value: object) -> Any:  # noqa: ANN401 - a number or a timedelta, compared with the key's values
    """A bound as values of the key compare with it (durations parsed); checked beforehand."""
    if value is None:
        return None
    return parse_duration(value) if field.type == "duration" else value


def _shown(value: object, *, quote: bool = True) -> str:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:  # noqa: PLR2004
        return str(int(value))
    return repr(value) if quote and isinstance(value, str) else str(value)


def _bound_problem(field: ConfigField, name: str, value: object) -> str | None:
    if field.type == "duration":
        try:
            parse_duration(value)
        except ValueError as exc:
            return f"{name} {exc}"
        return None
    what, check = _TYPE_CHECKS[field.type]
    if not check(value):
        return f"{name} must be {what}, got {type(value).__name__}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name} must be a finite number, got {value}"
    return None


def _constraint_problems(field: ConfigField) -> list[str]:
    """What is wrong with a field's minimum, maximum and choices (and its default against them)."""
    bounds = {
        n: v for n, v in (("minimum", field.minimum), ("maximum", field.maximum)) if v is not None
    }
    if not bounds and field.choices is None:
        return []
    if bounds and field.choices is not None:
        return ["give choices or minimum/maximum, not both"]
    if bounds and field.type not in _BOUNDED:
        return [f"minimum and maximum apply to integer, float and duration keys, not {field.type}"]
    if field.choices is not None and field.type not in _CHOOSABLE:
        return [f"choices apply to string, integer and float keys, not {field.type}"]
    problems = [p for n, v in bounds.items() if (p := _bound_problem(field, n, v)) is not None]
    if field.choices is not None:
        problems += _choice_problems(field.type, field.choices)
    if not problems and len(bounds) == 2:  # noqa: PLR2004 - both bounds given
        low, high = _bound(field, field.minimum), _bound(field, field.maximum)
        if low > high:
            problems.append(f"minimum {_shown(low)} is above maximum {_shown(high)}")
    if not problems and field.default is not None:
        default = parse_duration(field.default) if field.type == "duration" else field.default
        problem = field.problem_with(default)
        problems += [f"default {problem}"] if problem else []
    return problems


def _choice_problems(kind: str, choices: tuple[object, ...]) -> list[str]:
    if not choices:
        return ["choices must list at least one value"]
    what, check = _TYPE_CHECKS[kind]
    problems = [f"choice {c!r} must be {what}" for c in choices if not check(c)]
    repeated = sorted({repr(c) for i, c in enumerate(choices) if c in choices[:i]})
    return problems + [f"choice {c} is listed twice" for c in repeated]


class HookDeclaration(BaseModel):
    model_config = _Strict

    type: StrictStr
    priority: StrictInt = 100

    @field_validator("type")
    @classmethod
    def _hook_type(cls, value: str) -> str:
        if not _IDENT.fullmatch(value):
            raise ValueError(f"invalid hook type {value!r}: use a name like 'pre_request'")
        return value


def _check_events(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if not _EVENT.fullmatch(value):
            raise ValueError(
                f"invalid event name {value!r}: use dotted names like 'user.created' "
                "(subscriptions may end in '.*')"
            )
    return values


class Events(BaseModel):
    model_config = _Strict

    publishes: tuple[StrictStr, ...] = ()
    subscribes: tuple[StrictStr, ...] = ()

    _p = field_validator("publishes", "subscribes")(_check_events)

    @field_validator("publishes")
    @classmethod
    def _concrete(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            if "*" in value:
                raise ValueError(
                    f"invalid event name {value!r} in publishes: a plugin publishes concrete "
                    "events; wildcards belong in subscribes"
                )
        return values


class Export(BaseModel):
    model_config = _Strict

    name: StrictStr
    description: StrictStr = ""

    @field_validator("name")
    @classmethod
    def _ident(cls, value: str) -> str:
        if not _IDENT.fullmatch(value):
            raise ValueError(f"invalid export name {value!r}: use an identifier")
        return value


class Timeouts(BaseModel):
    """``timeouts``: how long each step of the plugin may take (durations).

    ``call`` bounds every async call into the plugin (hooks, handlers, service calls,
    routes, operations); a sync call in-process cannot be interrupted. The framework
    config can override any of them, for every plugin or for one.
    """

    model_config = _Strict

    initialize: Annotated[Seconds, Field(gt=0)] = 30.0
    start: Annotated[Seconds, Field(gt=0)] = 30.0
    stop: Annotated[Seconds, Field(gt=0)] = 10.0
    call: Annotated[Seconds, Field(gt=0)] = 30.0


class Resources(BaseModel):
    """``resources``: what a process plugin's worker may use, for the kernel to enforce
    (``tether.isolation``'s sandbox; not yet applied to the workers tether starts).

    ``memory`` (a size: ``256MiB``), ``cpu_time`` (a duration of CPU, for the worker's
    whole life: past it the worker is killed and restarted), ``open_files`` and
    ``processes`` (the worker's and its children's). Defaults: 512MiB, no CPU limit, 256
    files, 32 processes. The framework config may override any of them per plugin.
    """

    model_config = _Strict

    memory: Bytes = 512 << 20
    cpu_time: Annotated[Seconds, Field(gt=0)] | None = None
    open_files: Annotated[StrictInt, Field(ge=16, le=1 << 20)] = 256
    processes: Annotated[StrictInt, Field(ge=1, le=1 << 16)] = 32


class ReloadPolicy(BaseModel):
    """``reload``: how a reload replaces the running version. ``overlap: false`` (a plugin
    that owns something exclusive, a listening port) stops the old version before the
    new one starts; by default a process plugin's new worker starts beside the old one
    (blue/green) and the old one stops only once the new one is up and healthy."""

    model_config = _Strict

    overlap: StrictBool = True


class FrameworkRequirement(BaseModel):
    model_config = _Strict

    version: StrictStr = "*"

    @field_validator("version", mode="before")
    @classmethod
    def _constraint(cls, value: object) -> object:
        problem = constraint_problem(value, what="framework")
        if problem is not None:
            raise ValueError(problem)
        return value


class Manifest(BaseModel):
    """A validated plugin manifest. ``source`` is the file it came from (when it came from one)."""

    model_config = _Strict

    name: StrictStr
    version: StrictStr
    description: StrictStr
    author: StrictStr
    entry: StrictStr = ""  # "": found by convention when loaded (tether._entry_source)
    framework: FrameworkRequirement = FrameworkRequirement()
    dependencies: tuple[Dependency, ...] = ()
    permissions: Permissions = Permissions()
    config: dict[str, ConfigField] = Field(default_factory=dict)
    open_config: StrictBool = Field(default=False, validation_alias="config.additional_properties")
    """``config: {additional_properties: true}``: the plugin takes config keys its schema
    does not list (passed through unchanged); otherwise such a key is an error."""
    hooks: tuple[HookDeclaration, ...] = ()
    events: Events = Events()
    exports: tuple[Export, ...] = ()
    isolation: Literal["inprocess", "process"] = "inprocess"
    command: tuple[StrictStr, ...] = ()
    """The program that runs the plugin's worker when it is not written in Python
    (``[node, plugin.js]``), run in the plugin's directory; needs ``isolation: process``."""
    provides: tuple[StrictStr, ...] = ()
    timeouts: Timeouts = Timeouts()
    resources: Resources = Resources()
    reload: ReloadPolicy = ReloadPolicy()
    requirements: tuple[StrictStr, ...] = ()
    """PEP 508 requirements of the plugin's own code (``httpx>=0.27``): a process plugin
    gets a virtual environment of its own with them; an in-process plugin's are checked
    against the host's environment."""
    source: Annotated[Path | None, Field(exclude=True)] = None

    _n = field_validator("name")(check_name)

    @model_validator(mode="before")
    @classmethod
    def _config_flag(cls, data: object) -> object:
        """``config.additional_properties`` is the schema's flag, not one of its keys."""
        if isinstance(data, dict):
            config = data.get("config")
            if isinstance(config, dict) and "additional_properties" in config:
                keys = {k: v for k, v in config.items() if k != "additional_properties"}
                flag = config["additional_properties"]
                return {**data, "config": keys, "config.additional_properties": flag}
        return data

    @model_serializer(mode="wrap")
    def _dump_config_flag(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        flag = data.pop("open_config", None)
        if flag is not None and (flag or "open_config" in self.model_fields_set):
            data["config"] = {**data.get("config", {}), "additional_properties": flag}
        return data

    @field_validator("version", mode="before")
    @classmethod
    def _semver(cls, value: object) -> object:
        problem = version_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("entry")
    @classmethod
    def _entry(cls, value: str) -> str:
        if not _ENTRY.fullmatch(value):
            module, dot, attribute = value.rpartition(".")
            guess = f"{module}:{attribute}"
            suggestion = f" (did you mean {guess!r}?)" if dot and _ENTRY.fullmatch(guess) else ""
            raise ValueError(
                f"invalid entry {value!r}: write 'module:attribute', e.g. "
                f"'auth_plugin:AuthPlugin'{suggestion}"
            )
        return value

    @field_validator("dependencies")
    @classmethod
    def _unique(cls, dependencies: tuple[Dependency, ...]) -> tuple[Dependency, ...]:
        seen: set[str] = set()
        for dep in dependencies:
            if dep.name in seen:
                raise ValueError(f"dependency '{dep.name}' is listed twice")
            seen.add(dep.name)
        return dependencies

    @field_validator("requirements")
    @classmethod
    def _pep508(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        from packaging.requirements import InvalidRequirement, Requirement

        for value in values:
            try:
                Requirement(value)
            except InvalidRequirement as exc:
                raise ValueError(
                    f"invalid requirement {value!r}: {str(exc).splitlines()[0]} (write it as "
                    "pip does: 'name>=1.0', 'name[extra]==2.1')"
                ) from None
        return values

    @model_validator(mode="after")
    def _command_needs_a_worker(self) -> Manifest:
        if self.command and self.isolation != "process":
            raise ValueError(
                "a plugin with a `command` runs in a worker process of its own: add "
                "`isolation: process`"
            )
        if any(not part for part in self.command):
            raise ValueError("`command` has an empty part: list the program and its arguments")
        return self

    @model_validator(mode="after")
    def _not_self(self) -> Manifest:
        if self.dependency(self.name) is not None:
            raise ValueError(f"plugin '{self.name}' cannot depend on itself")
        return self

    @property
    def directory(self) -> Path | None:
        return self.source.parent if self.source is not None else None

    @property
    def entry_module(self) -> str:
        return self.entry.partition(":")[0]

    @property
    def entry_attribute(self) -> str:
        return self.entry.partition(":")[2]

    def dependency(self, name: str) -> Dependency | None:
        return next((d for d in self.dependencies if d.name == name), None)


# --------------------------------------------------------------------------- reading


def find_manifest(directory: Path) -> Path | None:
    """The manifest file inside ``directory``, or ``None``. Several is an error.

    Anything by a manifest's name counts, a FIFO or a directory too: reading it then
    says what it is, rather than the directory seeming to hold no manifest.
    """
    found = [directory / n for n in MANIFEST_NAMES if (directory / n).exists()]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ManifestError(
            found[0],
            [ManifestProblem(found[0], "", f"more than one manifest in {directory}: {names}")],
        )
    return found[0] if found else None


def _format_of(path: Path) -> str:
    fmt = format_of(path)
    if fmt is None:
        problem = "unknown manifest format: use .yaml, .yml, .json or .toml"
        raise ManifestError(path, [ManifestProblem(path, "", problem)])
    return fmt


def document_error(path: Path, error: DocumentError) -> ManifestError:
    """The ``ManifestError`` for a file that could not be read or parsed."""
    problem = ManifestProblem(path, "", f"{error.label}: {error.problem}", error.line)
    return ManifestError(path, [problem])


def read_manifest_data(text: str, *, fmt: str, path: Path) -> tuple[object, Mapping[str, int]]:
    """Parse the text; return the data and a map from field path to line number."""
    try:
        document = parse(text, fmt)
    except DocumentError as exc:
        raise document_error(path, exc) from None
    return document.data, document.lines


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


_TOP_FIELDS = tuple(n for n in Manifest.model_fields if n not in {"source", "open_config"})
_SHAPES = {
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "an integer",
}


def _problem_message(error: Mapping[str, Any]) -> str:  # noqa: PLR0911 - one return per case
    loc: tuple[int | str, ...] = tuple(error["loc"])
    kind = error["type"]
    if kind == "missing":
        return f"missing required field: {_dotted(loc)}"
    if kind == "extra_forbidden":
        if len(loc) == 2 and loc[0] == "permissions":  # noqa: PLR2004
            return f"unknown permission: {loc[1]}"
        known = _TOP_FIELDS if len(loc) == 1 else ()
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        suggestion = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown field: {_dotted(loc)}{suggestion}"
    if kind == "literal_error" and len(loc) >= 2 and loc[0] == "config" and loc[-1] == "type":  # noqa: PLR2004
        return f"invalid config schema: type must be one of [{', '.join(CONFIG_TYPES)}]"
    if kind == "literal_error" and loc == ("isolation",):
        return "invalid isolation: must be one of [inprocess, process]"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    what = _SHAPES.get(kind)
    if what is not None and loc:
        return f"invalid value for {_dotted(loc)}: must be {what}"
    return f"invalid value for {_dotted(loc)}: {error['msg'].lower()}" if loc else str(error["msg"])


def validate_manifest_data(
    data: object, *, path: Path, lines: Mapping[str, int] | None = None
) -> Manifest:
    """Validate parsed manifest data; raise ``ManifestError`` with every problem found."""
    lines = lines or {}
    if not isinstance(data, dict):
        found = "an empty file" if data is None else type(data).__name__
        problem = ManifestProblem(path, "", f"a manifest must be a mapping of fields, got {found}")
        raise ManifestError(path, [problem])
    try:
        return Manifest.model_validate({**data, "source": path})
    except ValidationError as exc:
        raise ManifestError(path, _problems(exc, path, lines)) from None
    except Exception as exc:  # a value no check foresaw: this file's problem, not the host's
        problem = ManifestProblem(path, "", f"cannot be checked: {error_line(exc)}")
        raise ManifestError(path, [problem]) from None


def _problems(exc: ValidationError, path: Path, lines: Mapping[str, int]) -> list[ManifestProblem]:
    problems = []
    errors = exc.errors()
    for error in errors[:_MAX_PROBLEMS]:
        field = _dotted(tuple(error["loc"]))
        line = _line_for(field, lines)
        message = _printable(_problem_message(error))
        problems.append(ManifestProblem(path, _printable(field), message, line))
    problems.sort(key=lambda p: (p.line is None, p.line or 0))
    if len(errors) > _MAX_PROBLEMS:
        more = len(errors) - _MAX_PROBLEMS
        problems.append(ManifestProblem(path, "", f"{more} more problem(s) not listed"))
    return problems


def _printable(text: str) -> str:
    """``text`` with control characters (and anything else unprintable) escaped."""
    return text if text.isprintable() else repr(text)[1:-1]


def _line_for(field: str, lines: Mapping[str, int]) -> int | None:
    while field:
        if field in lines:
            return lines[field]
        cut = max(field.rfind("."), field.rfind("["))
        field = field[:cut] if cut > 0 else ""
    return None


def parse_manifest(text: str, *, fmt: str, path: Path) -> Manifest:
    """Parse and validate manifest text (``fmt``: ``yaml``, ``json`` or ``toml``)."""
    data, lines = read_manifest_data(text, fmt=fmt, path=path)
    return validate_manifest_data(data, path=path, lines=lines)


def load_manifest(path: Path) -> Manifest:
    """Read and validate one manifest file (or the manifest inside a plugin directory).

    Whatever goes wrong is a ``ManifestError`` naming the file: an unreadable or odd
    path, a file that is not regular, too large, not UTF-8 or beyond the parser's bounds.
    """
    path = Path(path)
    try:
        if path.is_dir():
            path = _manifest_in(path)
        fmt = _format_of(path)
        data, lines = read_manifest_data(decode(read_bytes(path)), fmt=fmt, path=path)
    except ManifestError:
        raise
    except DocumentError as exc:
        raise document_error(path, exc) from None
    except (OSError, ValueError) as exc:  # a path too long, or holding a NUL byte
        problem = ManifestProblem(path, "", f"cannot read: {_reason(exc)}")
        raise ManifestError(path, [problem]) from None
    return validate_manifest_data(data, path=path, lines=lines)


def field_line(manifest: Manifest, field: str) -> int | None:
    """The line of ``field`` (dotted) in the manifest's file, or ``None`` (no file, no such
    key, or the file changed into something unreadable since it was loaded)."""
    if manifest.source is None:
        return None
    try:
        fmt = _format_of(manifest.source)
        document = parse(decode(read_bytes(manifest.source)), fmt)
    except (DocumentError, ManifestError):
        return None
    return _line_for(field, document.lines)


def _manifest_in(directory: Path) -> Path:
    found = find_manifest(directory)
    if found is None:
        names = ", ".join(MANIFEST_NAMES)
        problem = ManifestProblem(directory, "", f"no manifest in {directory} (looked for {names})")
        raise ManifestError(directory, [problem])
    return found


def _reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"not a usable path ({error_line(exc)})"
