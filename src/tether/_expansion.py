"""``${VAR}`` in config files: expanded after parsing, then converted by the field's type (pure).

Expansion turns every string value of a parsed config (never a key) into text:

``${NAME}``            the variable's value; an error if it is not set
``${NAME:-default}``   the value if set and not empty, else ``default`` (taken literally)
``$$``                 a literal ``$``

A variable's value is used as it is: never parsed as YAML, never expanded again (so a
variable cannot refer to itself). Any other ``${`` is an error: not closed, a reference
inside another (``${A${B}}``, ``${A:-${B}}``), or not a variable name.

The result of a string holding a reference is an :class:`Expanded` (a ``str`` that
remembers its variables). A field that is not a string converts it with
:func:`convert`, by the rules of its type, and says which variable gave what when it
does not convert:

========  ==================================================================================
integer   an optional sign and 1 to 20 digits: ``8080``, ``-1``
float     a decimal number: ``0.5``, ``2``, ``1e-3`` (finite)
boolean   ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``, in any letter case
duration  a duration (``30s``, ``1h30m``) or a number of seconds (``30``, ``0.5``)
string    the text as it is
========  ==================================================================================

Surrounding spaces are ignored for every type but strings. Values written in the file
itself are not converted: ``priority: "7"`` stays a string, and is refused.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Self

from pydantic import BeforeValidator, StrictBool, StrictInt

from tether._durations import Seconds, parse_duration
from tether.errors import ConfigError, EnvVarError

__all__ = [
    "BOOLEAN_FALSE",
    "BOOLEAN_TRUE",
    "EnvBool",
    "EnvFloat",
    "EnvInt",
    "EnvSeconds",
    "Expanded",
    "convert",
    "expand_env",
    "plain",
]

BOOLEAN_TRUE = frozenset({"true", "yes", "on", "1"})
BOOLEAN_FALSE = frozenset({"false", "no", "off", "0"})
_REFERENCE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME_START = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)")
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_HINT = "write ${NAME} or ${NAME:-default} (NAME: letters, digits and _), and $$ for a literal $"


class Expanded(str):
    """Text that ``${VAR}`` expansion made; ``variables`` names the variables in it."""

    __slots__ = ("variables",)
    variables: tuple[str, ...]

    def __new__(cls, text: str, variables: tuple[str, ...] = ()) -> Self:
        value = super().__new__(cls, text)
        value.variables = variables
        return value

    @property
    def references(self) -> str:
        """``${PORT}`` (or ``${HOST}, ${PORT}``): where the text came from, for messages."""
        return ", ".join(f"${{{name}}}" for name in self.variables)


# --------------------------------------------------------------------------- expanding


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


def _expand_string(text: str, env: Mapping[str, str], path: Path | None, key: str) -> str:
    if "$" not in text:
        return text
    parts: list[str] = []
    variables: list[str] = []
    position = 0
    while (dollar := text.find("$", position)) >= 0:
        parts.append(text[position:dollar])
        following = text[dollar + 1 : dollar + 2]
        if following != "{":
            parts.append("$")
            position = dollar + (2 if following == "$" else 1)
            continue
        match = _REFERENCE.match(text, dollar + 1)
        if match is None or "${" in (match.group(2) or ""):
            raise _reference_error(text, dollar, key, path)
        name, default = match.group(1), match.group(2)
        parts.append(_value(name, default, env, key, path))
        variables.append(name)
        position = match.end()
    parts.append(text[position:])
    joined = "".join(parts)
    return Expanded(joined, tuple(dict.fromkeys(variables))) if variables else joined


def _value(
    name: str, default: str | None, env: Mapping[str, str], key: str, path: Path | None
) -> str:
    value = env.get(name)
    if value is None or (value == "" and default is not None):
        if default is None:
            raise EnvVarError(name, key=key, path=path)
        return default
    return value


def _reference_error(text: str, dollar: int, key: str, path: Path | None) -> ConfigError:
    close = text.find("}", dollar)
    shown = text[dollar : close + 1] if close >= 0 else text[dollar:]
    shown = shown if len(shown) <= 40 else f"{shown[:37]}..."  # noqa: PLR2004
    named = _NAME_START.match(text, dollar + 1)
    if close < 0:
        detail = f"{shown!r} is not closed with '}}'"
    elif "${" in text[dollar + 2 : close + 1] or (named and text[named.end() :].startswith("$")):
        detail = f"{shown!r}: a reference cannot hold another (not even in its default)"
    else:
        detail = f"{shown!r} is not a reference to a variable"
    where = f" in {path}" if path is not None else ""
    return ConfigError(f"invalid ${{...}} at '{key}'{where}: {detail}", path=path, hint=_HINT)


# --------------------------------------------------------------------------- converting

_WHAT = {
    "integer": "an integer (an optional sign and at most 20 digits)",
    "float": "a number (such as 0.5, 2 or 1e-3)",
    "boolean": "a boolean (true/false, yes/no, on/off or 1/0, in any letter case)",
    "duration": "a duration (such as 30s or 1h30m) or a number of seconds",
    "array": "an array (a variable gives text, never an array)",
    "object": "an object (a variable gives text, never an object)",
}


def convert(value: Expanded, kind: str, *, secret: bool = False) -> object:
    """``value`` as a ``kind`` (``integer``, ``float``, ``boolean``, ``duration``, ``string``).

    Raises ``ValueError`` naming the variable(s), what they gave (unless ``secret``) and
    what the type accepts.
    """
    if kind == "string":
        return str(value)
    text = value.strip()
    converted = _CONVERTERS.get(kind, _never)(text)
    if converted is None:
        shown = "a value that does not fit" if secret else f"{_shown(value)}"
        raise ValueError(f"{value.references} gives {shown}, which is not {_WHAT[kind]}")
    return converted


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 40 else f"{value[:37]!r}... ({len(value)} characters)"  # noqa: PLR2004


def _integer(text: str) -> int | None:
    return int(text) if _INTEGER.fullmatch(text) else None


def _float(text: str) -> float | None:
    if not _FLOAT.fullmatch(text):
        return None
    number = float(text)
    return number if math.isfinite(number) else None


def _boolean(text: str) -> bool | None:
    lowered = text.lower()
    if lowered in BOOLEAN_TRUE:
        return True
    return False if lowered in BOOLEAN_FALSE else None


def _duration(text: str) -> object:
    number = _float(text)
    try:
        return parse_duration(number if number is not None else text)
    except ValueError:
        return None


def _never(_text: str) -> None:
    return None


_CONVERTERS: dict[str, Callable[[str], object]] = {
    "integer": _integer,
    "float": _float,
    "boolean": _boolean,
    "duration": _duration,
}


def _from_env(kind: str) -> BeforeValidator:
    def validate(value: object) -> object:
        return convert(value, kind) if isinstance(value, Expanded) else value

    return BeforeValidator(validate)


EnvBool = Annotated[StrictBool, _from_env("boolean")]
"""A boolean field: ``true``/``false`` in the file, or a ``${VAR}`` giving one."""
EnvInt = Annotated[StrictInt, _from_env("integer")]
"""An integer field: a number in the file, or a ``${VAR}`` giving one."""
EnvFloat = Annotated[float, _from_env("float")]
"""A number field: a number in the file, or a ``${VAR}`` giving one."""
EnvSeconds = Annotated[Seconds, _from_env("duration")]
"""A duration field (seconds): ``30s`` or a number in the file, or a ``${VAR}`` giving one."""


def plain(value: object) -> object:
    """``value`` with every :class:`Expanded` inside it turned back into a plain ``str``."""
    if isinstance(value, Expanded):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
