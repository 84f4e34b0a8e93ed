"""How a bench run is shaped, and the bench config file that shapes it (checked on creation).

:class:`BenchSettings` is one run's settings, as :func:`run_bench` takes them.
:class:`BenchConfig` is a bench config file's ``workload``, ``database`` and
``bench`` sections, one model each (:class:`WorkloadSection`,
:class:`DatabaseSection`, :class:`BenchSection`)::

    workload:
      type: plugin                 # the only type: built-in workloads are plugins too
      plugin_name: tpcb
      plugin_config: {scale: 1, operation_weights: {tpcb_like: 1, select_only: 0}}
    database:
      dsn: postgresql://bench:secret@127.0.0.1:5432/bench   # else $TETHER_DSN / embedded
      data_directory: ~/.tether/pgdata                       # the embedded server's
    bench: {clients: 8, duration: 30s, warmup: 5s, max_error_rate: 1%}

Every key is optional. ``BenchConfig.from_config`` reports every problem of the
three sections at once in a :class:`WorkloadConfigError` whose problems
(:class:`BenchConfigProblem`) name the file, the dotted field and the line.
:meth:`BenchConfig.settings` lays options (a :class:`BenchSection` made by
:meth:`BenchSection.from_options`) over the file and the defaults.
"""

from __future__ import annotations

import difflib
import math
import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictStr,
    ValidationError,
)

# The one private import of the workload host: tether has no public duration parser yet,
# and bench durations must read as every other duration in tether does.
from tether import ConfigSection, Expanded, TetherConfig, convert_expanded, parse_duration
from tether.errors import ConfigProblem
from tether.hosts.workload._cores import (
    CLIENTS_PER_PROCESS,
    MAX_PROCESSES,
    auto_processes,
    usable_cores,
)
from tether.hosts.workload._errors import WorkloadConfigError
from tether.hosts.workload._workload import REFERENCE_NAMES, WorkloadSpec

__all__ = [
    "BENCH_CONFIG_SECTION",
    "CLIENTS_PER_PROCESS",
    "DEFAULT_DURATION",
    "DSN_ENV",
    "ENGINES",
    "WORKLOAD_CONFIG_SECTION",
    "BenchConfig",
    "BenchConfigProblem",
    "BenchSection",
    "BenchSettings",
    "DatabaseSection",
    "WorkloadSection",
    "auto_processes",
    "usable_cores",
]

DEFAULT_DURATION = 10.0
ENGINES = ("auto", "multiplexed", "per-client")
"""``engine``: auto (multiplexed when the workload declares its statements), or either one."""
DSN_ENV = "TETHER_DSN"
_T = TypeVar("_T")

# --------------------------------------------------------------------------- the rules
# One rule per setting, shared by BenchSettings (the API) and BenchSection (the file and
# the options): a message without the setting's name, or None when the value is fine.


def _at_least_one(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"must be an integer of at least 1, got {value!r}"
    return None


MAX_CLIENTS = 10_000  # each client is a connection: far beyond any server's max_connections
MAX_TRANSACTIONS = 10**15


def _between(low: int, high: int) -> Callable[[object], str | None]:
    def rule(value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"must be an integer from {low} to {high:,}, got {value!r}"
        return None

    return rule


def _positive(value: object) -> str | None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return f"must be a positive number, got {value!r}"
    return None


def _not_negative(value: object) -> str | None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return f"must not be negative, got {value!r}"
    return None


def _share(value: object) -> str | None:
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        return f"must be a fraction from 0 to 1 (or a percentage like '5%'), got {value}"
    return None


_RULES: dict[str, Callable[[object], str | None]] = {
    "clients": _between(1, MAX_CLIENTS),
    "processes": _between(1, MAX_PROCESSES),
    "transactions": _between(1, MAX_TRANSACTIONS),
    "duration": _positive,
    "rate": _positive,
    "warmup": _not_negative,
    "max_error_rate": _share,
}


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """One run's settings. Give ``duration`` (seconds) or ``transactions`` (total), not both.

    ``dsn=None`` starts the embedded PostgreSQL in ``data_directory`` (default
    ``~/.tether/pgdata``). ``max_error_rate`` is a fraction (0.01 = 1%).
    ``source`` names where the settings came from, for error messages.
    """

    clients: int = 1
    duration: float | None = None
    transactions: int | None = None
    rate: float | None = None
    warmup: float = 0.0
    setup: bool = True
    cleanup: bool = False
    seed: int = 0
    processes: int = 1
    max_error_rate: float | None = None
    dsn: str | None = None
    data_directory: Path | None = None
    tick: float = 0.5
    engine: str = "auto"
    auto_processes: bool = False  # processes came from `auto`: the engine may choose again
    source: str = "the bench settings"

    def __post_init__(self) -> None:
        if self.duration is None and self.transactions is None:
            object.__setattr__(self, "duration", DEFAULT_DURATION)
        self._check()

    def _check(self) -> None:
        problems = [
            f"{name} {problem}"
            for name, rule in _RULES.items()
            if (value := getattr(self, name)) is not None and (problem := rule(value))
        ]
        if self.duration is not None and self.transactions is not None:
            problems.append("give either duration or transactions, not both")
        if self.engine not in ENGINES:
            problems.append(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        numbers = isinstance(self.processes, int) and isinstance(self.clients, int)
        if numbers and self.processes > self.clients:
            problems.append(
                f"processes ({self.processes}) must not exceed clients ({self.clients}): "
                "each process runs at least one client"
            )
        if problems:
            more = "".join(f"\n  - {p}" for p in problems) if len(problems) > 1 else ""
            raise WorkloadConfigError(
                f"invalid bench settings ({self.source}): {problems[0]}{more}",
                hint="fix the option or the `bench:` section of the config; "
                "`tether bench --help` lists every setting",
            )


# --------------------------------------------------------------------------- parsing values

_NUMBER = re.compile(r"\d+(\.\d*)?|\.\d+")


def _integer(value: object) -> int:
    if isinstance(value, Expanded):  # ${VAR} text: what the variable gives
        value = convert_expanded(value, "integer")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, got {value!r}")  # noqa: TRY004 - see _checked
    return value


def _boolean(value: object) -> bool:
    if isinstance(value, Expanded):
        value = convert_expanded(value, "boolean")
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")  # noqa: TRY004 - see _checked
    return value


def _seconds(value: object) -> float:
    """A duration: ``30s``, ``1m30s``, ``500ms``, or a plain number of seconds."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    return parse_duration(value).total_seconds()


def _fraction(value: object) -> float:
    """A fraction (``0.01``) or a percentage (``1%``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(
            f"not a rate: {value!r} (write a fraction like 0.01 or a percentage like 1%)"
        ) from None


def _checked(
    parse: Callable[[object], _T], rule: Callable[[object], str | None] | None = None
) -> PlainValidator:
    """Parse, then apply the rule; a ``ValueError`` (not a ``TypeError``) for pydantic to report."""

    def validate(value: object) -> _T:
        parsed = parse(value)
        problem = rule(parsed) if rule is not None else None
        if problem is not None:
            raise ValueError(problem)
        return parsed

    return PlainValidator(validate)


_Clients = Annotated[int, _checked(_integer, _RULES["clients"])]
_Transactions = Annotated[int, _checked(_integer, _RULES["transactions"])]


def _processes(value: object) -> int | str:
    """A number of processes, or ``auto`` (see :func:`auto_processes`)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        if not text.lstrip("-").isdigit():
            raise ValueError(f"must be an integer or auto, got {value!r}")
        value = int(text)
    number = _integer(value)
    problem = _RULES["processes"](number)
    if problem is not None:
        raise ValueError(problem)
    return number


_Processes = Annotated[int | str, PlainValidator(_processes)]
_Seed = Annotated[int, _checked(_integer)]
_Switch = Annotated[bool, _checked(_boolean)]
_Length = Annotated[float, _checked(_seconds, _positive)]
_Warmup = Annotated[float, _checked(_seconds, _not_negative)]
_Rate = Annotated[float, _checked(_fraction, _positive)]
_ErrorRate = Annotated[float, _checked(_fraction, _share)]


def _empty_if_none(value: object) -> object:
    return {} if value is None else value


def _directory(value: object) -> object:
    if value in (None, ""):
        return None
    return Path(value).expanduser() if isinstance(value, str) else value


# --------------------------------------------------------------------------- the sections

_Section = ConfigDict(frozen=True, extra="forbid")


class WorkloadSection(BaseModel):
    """``workload:``: which workload plugin to run, and its ``plugin_config``."""

    model_config = _Section

    type: Literal["plugin"] = "plugin"
    plugin_name: StrictStr | None = None
    plugin_config: Annotated[dict[str, Any], BeforeValidator(_empty_if_none)] = Field(
        default_factory=dict
    )


class DatabaseSection(BaseModel):
    """``database:``: the server to run against, else the embedded one's data directory.

    The section is shared: the framework reads ``url`` and ``dsn`` for
    ``ctx.database``, and other hosts may keep their own keys here, so only a key
    that looks like a misspelling of one of these is refused.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    dsn: StrictStr | None = None
    url: StrictStr | None = None
    data_directory: Annotated[Path | None, BeforeValidator(_directory)] = None


class BenchSection(BaseModel):
    """``bench:``, and the ``tether bench`` options of the same names (``None``: not given)."""

    model_config = _Section

    clients: _Clients | None = None
    duration: _Length | None = None
    transactions: _Transactions | None = None
    rate: _Rate | None = None
    warmup: _Warmup | None = None
    setup: _Switch | None = None
    cleanup: _Switch | None = None
    seed: _Seed | None = None
    processes: _Processes | None = None
    max_error_rate: _ErrorRate | None = None
    engine: Literal["auto", "multiplexed", "per-client"] | None = None

    @classmethod
    def from_options(cls, **options: object) -> BenchSection:
        """The command line's settings; a problem names its option (``--max-error-rate``)."""
        try:
            return cls.model_validate({k: v for k, v in options.items() if v is not None})
        except ValidationError as exc:
            problems = [
                _problem(e, ("--" + "-".join(str(e["loc"][0]).split("_")),)) for e in exc.errors()
            ]
            raise _error(problems, path=None) from None

    def given(self) -> dict[str, Any]:
        """The settings given, by name."""
        return self.model_dump(exclude_none=True)


WORKLOAD_CONFIG_SECTION = ConfigSection(
    "workload", "tether bench", WorkloadSection, "the workload plugin to run and its plugin_config"
)
"""The ``workload:`` section, claimed through the ``tether.config_sections`` entry points."""
BENCH_CONFIG_SECTION = ConfigSection(
    "bench", "tether bench", BenchSection, "a run's settings: clients, duration, rate..."
)
"""The ``bench:`` section, claimed through the ``tether.config_sections`` entry points."""

_SECTIONS: dict[str, type[BaseModel]] = {
    "workload": WorkloadSection,
    "database": DatabaseSection,
    "bench": BenchSection,
}


# --------------------------------------------------------------------------- the whole file


class BenchConfig(BaseModel):
    """The sections of a bench config file that ``tether bench`` reads, checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workload: WorkloadSection = WorkloadSection()
    database: DatabaseSection = DatabaseSection()
    bench: BenchSection = BenchSection()
    path: Annotated[Path | None, Field(exclude=True)] = None

    @classmethod
    def from_config(cls, config: TetherConfig) -> BenchConfig:
        """The bench sections of ``config``; every problem at once in a ``WorkloadConfigError``."""
        raw = {name: _raw_section(config, name) for name in _SECTIONS}
        data = {name: section for name, section in raw.items() if section is not None}
        lines = config.key_lines()
        problems = _misspelled("database", data.get("database"), config.path, lines)
        try:
            found = cls.model_validate({**data, "path": config.path})
        except ValidationError as exc:
            problems += [_problem(e, e["loc"], config.path, lines) for e in exc.errors()]
        if problems:
            problems.sort(key=lambda p: (p.line is None, p.line or 0))
            raise _error(problems, path=config.path)
        return found

    @staticmethod
    def present_in(config: TetherConfig) -> bool:
        """Whether ``config`` is a bench config: has a ``workload`` or ``bench`` section."""
        return any(_raw_section(config, name) is not None for name in ("workload", "bench"))

    @property
    def where(self) -> str:
        return str(self.path) if self.path else "the command line"

    def workload_name(self, option: str | None = None) -> str:
        """The workload to run: the one the option names, else ``workload.plugin_name``."""
        name = option or self.workload.plugin_name
        if name is None:
            raise WorkloadConfigError(
                "no workload given",
                path=self.path,
                hint="pass --workload NAME, or set workload.plugin_name in the config "
                "(`tether workloads list` shows them)",
            )
        return name

    def is_ignoring_plugin_config(self, name: str) -> bool:
        """Whether running ``name`` leaves out the file's ``plugin_config`` (another workload's)."""
        named = self.workload.plugin_name
        return named is not None and not _names(named, name) and bool(self.workload.plugin_config)

    def spec_for(self, found: WorkloadSpec, overrides: Mapping[str, object] = {}) -> WorkloadSpec:
        """What to run: ``found`` with the file's ``plugin_config`` (when it is the file's
        workload, or the file names none) updated by ``overrides`` (``--set``)."""
        named = self.workload.plugin_name
        own = named is None or _names(named, found.name)
        config = {**(self.workload.plugin_config if own else {}), **overrides}
        return WorkloadSpec(
            name=found.name,
            path=found.path,
            config=config,
            origin=found.origin,
            config_source=self.where,
        )

    def settings(
        self,
        options: BenchSection | None = None,
        *,
        dsn: str | None = None,
        data_directory: Path | None = None,
    ) -> BenchSettings:
        """``options`` over the file's ``bench:`` section over the defaults.

        A length among the options (``duration`` or ``transactions``) replaces both
        of the file's. The DSN is ``dsn``, else ``$TETHER_DSN``, else ``database.dsn``;
        without a seed, a random one is drawn (and reported).
        """
        given = (options or BenchSection()).given()
        values = self.bench.given()
        if "duration" in given or "transactions" in given:
            values = {k: v for k, v in values.items() if k not in {"duration", "transactions"}}
        values.update(given)
        values.setdefault("seed", random.SystemRandom().randrange(1 << 31))
        if values.get("processes", "auto") == "auto":
            values["processes"] = auto_processes(values.get("clients", 1))
            values["auto_processes"] = True
        return BenchSettings(
            **values,
            dsn=dsn or os.environ.get(DSN_ENV) or self.database.dsn or None,
            data_directory=data_directory or self.database.data_directory,
            source=self.where,
        )


def _raw_section(config: TetherConfig, name: str) -> object:
    if name in type(config).model_fields:
        return config.section(name)
    return (config.model_extra or {}).get(name)


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True, slots=True)
class BenchConfigProblem(ConfigProblem):
    """One thing wrong with a bench config: the file, the dotted key, the line and what to do."""

    path: Path | None = None
    line: int | None = None
    hint: str = ""

    def __str__(self) -> str:
        if self.path is None:
            return f"{self.key}: {self.message}"
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where} [{self.key}]: {self.message}"


def _problem(
    error: Mapping[str, Any],
    loc: Sequence[int | str],
    path: Path | None = None,
    lines: Mapping[str, int] | None = None,
) -> BenchConfigProblem:
    key = ".".join(str(part) for part in loc)
    message, hint = _explain(error, loc, key)
    return BenchConfigProblem(key, message, path=path, line=_line_for(key, lines or {}), hint=hint)


def _explain(error: Mapping[str, Any], loc: Sequence[int | str], key: str) -> tuple[str, str]:
    """The problem's message and what to do about it."""
    kind, given = error["type"], error.get("input")
    if kind == "extra_forbidden":
        return _unknown(str(loc[-1]), _known(loc[0]))
    if kind == "value_error":
        setting = (
            str(loc[-1]).lstrip("-").replace("-", "_")
        )  # bench.max_error_rate, --max-error-rate
        return str(error["ctx"]["error"]), _HINTS.get(setting, _RANGE_HINT)
    if kind == "literal_error":
        hint = "every workload is a plugin, the built-in ones included: type: plugin"
        return f"must be {error['ctx']['expected']}, got {given!r}", hint
    if kind in {"model_type", "dict_type"}:
        return "must be a mapping", f"write {key} as key: value pairs"
    if kind == "string_type":
        return f"must be a string, got {given!r}", f"set {key} to a string"
    return str(error["msg"]).lower(), f"fix {key}"


_RANGE_HINT = "`tether bench --help` lists every setting and what it takes"
_HINTS = {
    "duration": "write a duration like 30s, 500ms or 1m30s",
    "warmup": "write a duration like 30s, 500ms or 1m30s",
    "rate": "write a number of transactions per second",
    "max_error_rate": "write a fraction (0.01) or a percentage (1%)",
}


def _known(section: int | str) -> tuple[str, ...]:
    model = _SECTIONS.get(str(section))
    return tuple(model.model_fields) if model is not None else tuple(_SECTIONS)


def _unknown(key: str, known: Sequence[str]) -> tuple[str, str]:
    close = difflib.get_close_matches(key, known, n=1)
    suggestion = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key{suggestion}", f"the keys are: {', '.join(known)}"


def _misspelled(
    section: str, data: object, path: Path | None, lines: Mapping[str, int]
) -> list[BenchConfigProblem]:
    """Keys of a shared section that look like misspellings of the bench's own."""
    known = _known(section)
    problems = []
    for key in data if isinstance(data, Mapping) else ():
        if key not in known and difflib.get_close_matches(str(key), known, n=1):
            message, hint = _unknown(str(key), known)
            dotted = f"{section}.{key}"
            line = _line_for(dotted, lines)
            problems.append(BenchConfigProblem(dotted, message, path=path, line=line, hint=hint))
    return problems


def _error(problems: Sequence[BenchConfigProblem], *, path: Path | None) -> WorkloadConfigError:
    first = problems[0]
    where = f"{path}: " if path else ""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    details = "".join(f"\n  - {p}" for p in problems) if path or len(problems) > 1 else ""
    hints = {p.hint for p in problems}
    several = f"fix each {'key' if path else 'option'} listed above"
    hint = first.hint if len(hints) == 1 else several
    if path is not None:
        hint += "; `tether config validate` re-checks the file"
    return WorkloadConfigError(
        f"{where}{first.key}: {first.message}{more}{details}",
        path=path,
        hint=hint,
        problems=list(problems),
    )


# --------------------------------------------------------------------------- lines


def _line_for(key: str, lines: Mapping[str, int]) -> int | None:
    """The line of ``key``, else of the nearest enclosing key the file has."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        line = lines.get(".".join(parts[:end]))
        if line is not None:
            return line
    return None


def _names(named: str, workload: str) -> bool:
    """Whether ``workload.plugin_name: named`` means the workload called ``workload``
    (its own name, or the reference's name for a built-in one: ``imdb_plugin``)."""
    return named == workload or REFERENCE_NAMES.get(named) == workload
