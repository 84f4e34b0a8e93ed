"""What is wrong with a framework config, said the way every config error says it (pure).

Each problem names its dotted key (``plugins.plugins[1].colour``), its line in the
file when the format has lines (YAML, JSON), and, for a key nobody reads, the closest
key that exists (difflib). The host sections are checked here too, against the models
their hosts register (:mod:`tether._sections`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel, ValidationError

from tether._expansion import Expanded
from tether.errors import ConfigError, ConfigKeyProblem, ConfigProblem

if TYPE_CHECKING:
    from tether._sections import SectionRegistry

__all__ = [
    "check_host_sections",
    "config_problem",
    "database_misspellings",
    "did_you_mean",
    "invalid_config",
    "line_of",
]

_RECHECK = "`tether config validate` re-checks the file"


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``known``, or ``""``."""
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def dotted(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def line_of(key: str, lines: Mapping[str, int]) -> int | None:
    """The line of ``key``, else of the nearest enclosing key the file has."""
    while key:
        line = lines.get(key)
        if line is not None:
            return line
        cut = max(key.rfind("."), key.rfind("["))
        key = key[:cut] if cut > 0 else ""
    return None


# --------------------------------------------------------------------------- one problem


def _model_in(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` (list indexes skipped)."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return None
        model = inner
    return model


def _message(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "missing required key"
    if kind == "value_error":  # our own checks, such as a ${VAR} that does not convert
        return str(error["ctx"]["error"])
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"must be a mapping of keys to values, got {type(error.get('input')).__name__}"
    return str(error["msg"]).lower()


def config_problem(
    error: Mapping[str, Any],
    model: type[BaseModel],
    lines: Mapping[str, int],
    *,
    prefix: Sequence[str] = (),
) -> ConfigKeyProblem:
    """A pydantic error of ``model`` (at ``prefix`` in the file) as a problem of the file."""
    loc: tuple[int | str, ...] = tuple(error["loc"])
    key = dotted((*prefix, *loc))
    line = line_of(key, lines)
    if error["type"] != "extra_forbidden":
        return ConfigKeyProblem(key, _message(error), line=line)
    parent = _model_at(model, loc[:-1])
    known = tuple(parent.model_fields) if parent is not None else ()
    where = dotted((*prefix, *loc[:-1])) or "the top level"
    hint = f"the keys of {where} are: {', '.join(known)}" if known else ""
    return ConfigKeyProblem(key, "unknown key" + did_you_mean(str(loc[-1]), known), line=line,
                            hint=hint)  # fmt: skip


# --------------------------------------------------------------------------- host sections


def check_host_sections(
    data: Mapping[str, object],
    registry: SectionRegistry,
    lines: Mapping[str, int],
    *,
    framework: Sequence[str],
    typed: dict[str, dict[str, object]] | None = None,
) -> list[ConfigKeyProblem]:
    """Problems of the top-level sections that are not tether's (``framework``): each
    against the model of the host that claims it, and those no host claims.

    A section is checked as written, ``${VAR}`` text included, so a host's field types
    convert what a variable gives (``clients: ${CLIENTS}``). ``typed`` receives, per
    section, the converted value of each key whose value came from a variable.
    """
    problems: list[ConfigKeyProblem] = []
    for name, value in data.items():
        if name in framework:
            continue
        section = registry.get(str(name))
        if section is None:
            problems.append(_unclaimed(str(name), registry, lines, framework))
            continue
        try:
            checked = section.model.model_validate({} if value is None else value)
        except ValidationError as exc:
            problems += [
                config_problem(e, section.model, lines, prefix=(str(name),)) for e in exc.errors()
            ]
            continue
        if typed is not None and isinstance(value, Mapping):
            from_variables = {
                str(key): getattr(checked, str(key))
                for key, raw in value.items()
                if isinstance(raw, Expanded) and str(key) in type(checked).model_fields
            }
            if from_variables:
                typed[str(name)] = from_variables
    return problems


def _unclaimed(
    name: str, registry: SectionRegistry, lines: Mapping[str, int], framework: Sequence[str]
) -> ConfigKeyProblem:
    hosts = [s.name for s in registry.all()]
    known = [*framework, *hosts]
    hint = (
        f"the sections are {', '.join(framework)} (tether's)"
        + (f" and {', '.join(hosts)} (the installed hosts')" if hosts else "")
        + "; a host's section is known once the host that reads it is installed"
    )
    message = "unknown section: no installed host reads it" + did_you_mean(name, known)
    return ConfigKeyProblem(name, message, line=line_of(name, lines), hint=hint)


def database_misspellings(
    section: object, lines: Mapping[str, int], *, known: Sequence[str]
) -> list[ConfigKeyProblem]:
    """Keys of the shared ``database`` section that look like misspellings of its own
    (``known``)."""
    problems = []
    for key in section if isinstance(section, Mapping) else ():
        suggestion = "" if key in known else did_you_mean(str(key), known)
        if suggestion:
            dotted_key = f"database.{key}"
            problems.append(ConfigKeyProblem(
                dotted_key, "unknown key" + suggestion, line=line_of(dotted_key, lines),
                hint="database keeps its hosts' own keys, but not one this close to url or dsn",
            ))  # fmt: skip
    return problems


# --------------------------------------------------------------------------- the error


def invalid_config(problems: Sequence[ConfigProblem], path: Path | None) -> ConfigError:
    """One ``ConfigError`` listing every problem, the first in its message."""
    if not problems:
        return ConfigError(f"invalid config {path}", path=path)

    def place(problem: ConfigProblem) -> tuple[bool, int]:
        line = getattr(problem, "line", None)
        return (line is None, line or 0)

    problems = sorted(problems, key=place)
    where = f" {path}" if path else ""
    # one problem is the message; more are listed under it, the first included
    details = "".join(f"\n  - {p}" for p in problems) if len(problems) > 1 else ""
    hints = {getattr(p, "hint", "") for p in problems}
    hint = next(iter(hints)) if len(hints) == 1 else ""
    fix = "fix the keys listed above" if len(problems) > 1 else "fix that key"
    hint = f"{hint or fix}; {_RECHECK}"
    return ConfigError(
        f"invalid config{where}: {problems[0]}{details}",
        path=path,
        problems=list(problems),
        hint=hint,
    )
