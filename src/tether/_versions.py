"""Semantic versions and version constraints (pure).

Manifests use strict semantic versions (``X.Y.Z`` with optional ``-prerelease`` and
``+build``), compared by the SemVer 2.0 rules. PEP 440 (what ``packaging`` speaks)
orders pre-releases differently and has no ``^``/``~``, so this module implements
the small part of SemVer the resolver needs instead of translating.

Constraints::

    ">=1.0.0,<2.0.0"   every comma-separated clause must hold
    ">=1.0 || ^3.1"    any ``||``-separated alternative may hold
    "^1.2.3"           >=1.2.3,<2.0.0   (^0.2.3 -> <0.3.0, ^0.0.3 -> <0.0.4)
    "~1.2.3"           >=1.2.3,<1.3.0   (~1.2 -> <1.3.0, ~1 -> <2.0.0)
    "~=1.2.3", "~=1.2" as PEP 440: >=1.2.3,<1.3.0 and >=1.2.0,<2.0.0
    "1.2.x", "1.*"     wildcards
    "1.2.3", "=1.2.3", "==1.2.3", "!=1.2.3", ">", ">=", "<", "<="
    "*", "", "latest"  anything, pre-releases included

Numbers are ASCII digits without leading zeros. As in npm and cargo, a pre-release
satisfies a bounded constraint only when one of its bounds names a pre-release of the
same ``X.Y.Z`` (``>=1.0.0`` does not match ``2.0.0-rc.1``; ``>=2.0.0-rc.0`` does).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from functools import total_ordering

__all__ = [
    "Constraint",
    "SemVer",
    "constraint_problem",
    "parse_constraint",
    "parse_version",
    "suggest_constraint",
    "suggest_version",
    "version_problem",
]

# ASCII only: \d would also accept other scripts' digits ("1\u0661.0.0" parsing as 11.0.0).
# Numbers have at most 20 digits (2**64 has 20): a version is not a place for big data.
_NUM = r"(?:0|[1-9][0-9]{0,19})"
_PRE_ID = r"(?:0|[1-9][0-9]{0,19}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_LONG_NUMBER = re.compile(r"[0-9]{21}", re.ASCII)
_PRE = rf"{_PRE_ID}(?:\.{_PRE_ID})*"
_SEMVER = re.compile(
    rf"({_NUM})\.({_NUM})\.({_NUM})(?:-({_PRE}))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?",
    re.ASCII,
)
_PART = rf"({_NUM}|[xX*])"
_PARTIAL = re.compile(rf"v?{_PART}(?:\.{_PART})?(?:\.{_PART})?(?:-({_PRE}))?", re.ASCII)
_TOKEN = re.compile(r"(?:>=|<=|==|!=|~=|>|<|=|\^|~)?\s*[^\s,<>=!~^|]+", re.ASCII)
_CLAUSE = re.compile(r"^(>=|<=|==|!=|~=|>|<|=|\^|~)?\s*(.+)$", re.ASCII)


@total_ordering
@dataclass(frozen=True, slots=True)
class SemVer:
    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()
    build: str = ""

    @property
    def release(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(p) for p in self.prerelease)
        if self.build:
            text += "+" + self.build
        return text

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # A release sorts after all of its pre-releases; numeric identifiers sort
        # before alphanumeric ones. Build metadata does not take part.
        pre = tuple((0, p) if isinstance(p, int) else (1, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() < other._key()


def parse_version(text: str) -> SemVer:
    """Parse a strict semantic version; raise ``ValueError`` with the reference's wording.

    Strict means exactly SemVer 2.0: no ``v`` prefix, no surrounding whitespace, no
    leading zeros, ASCII digits only.
    """
    match = _SEMVER.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        if isinstance(text, str) and _LONG_NUMBER.search(text):
            raise ValueError(
                "invalid version format: must be semantic version (X.Y.Z), "
                "each number at most 20 digits"
            )
        raise ValueError("invalid version format: must be semantic version (X.Y.Z)")
    major, minor, patch, pre, build = match.groups()
    prerelease = tuple(int(p) if p.isdigit() else p for p in pre.split(".")) if pre else ()
    return SemVer(int(major), int(minor), int(patch), prerelease, build or "")


@dataclass(frozen=True, slots=True)
class _Bound:
    op: str  # one of > >= < <= == !=
    version: SemVer

    def allows(self, v: SemVer) -> bool:
        if self.op == ">=":
            return v >= self.version
        if self.op == ">":
            return v > self.version
        if self.op == "<=":
            return v <= self.version
        if self.op == "<":
            return v < self.version
        if self.op == "==":
            return v == self.version
        return v != self.version


@dataclass(frozen=True, slots=True)
class Constraint:
    """A parsed constraint: a disjunction of conjunctions of bounds."""

    text: str
    alternatives: tuple[tuple[_Bound, ...], ...]

    def allows(self, version: SemVer | str) -> bool:
        v = parse_version(version) if isinstance(version, str) else version
        for bounds in self.alternatives:
            if all(b.allows(v) for b in bounds) and _prerelease_allowed(v, bounds):
                return True
        return False

    def __str__(self) -> str:
        return self.text


def _prerelease_allowed(v: SemVer, bounds: tuple[_Bound, ...]) -> bool:
    # As npm and cargo do: a pre-release only satisfies a constraint that names a
    # pre-release of the same X.Y.Z, so ">=1.0.0" does not pull in "2.0.0-rc.1".
    # An alternative without bounds ("*") allows anything, pre-releases included.
    if not v.prerelease or not bounds:
        return True
    return any(b.version.prerelease and b.version.release == v.release for b in bounds)


MAX_CONSTRAINT = 1_000
"""The longest constraint parsed (real ones are a few dozen characters)."""

_ECHO = 80


def _echo(text: str) -> str:
    """``text`` for a message: whole when short, else its start and its length."""
    if len(text) <= _ECHO:
        return text
    return f"{text[: _ECHO - 3]}... ({len(text):,} characters)"


def _bad(text: str) -> ValueError:
    return ValueError(f"invalid dependency version constraint: {_echo(text)}")


def _partial(text: str, whole: str) -> tuple[list[int], tuple[int | str, ...]]:
    """Parse ``1``, ``1.2``, ``1.2.3``, ``1.2.x`` into the given numbers (wildcards cut)."""
    match = _PARTIAL.fullmatch(text)
    if match is None:
        raise _bad(whole)
    parts: list[int] = []
    pieces = [p for p in match.groups()[:3] if p is not None]
    for index, piece in enumerate(pieces):
        if piece in "xX*":
            if any(p not in "xX*" for p in pieces[index:]):  # "1.x.3": a number after a wildcard
                raise _bad(whole)
            break
        parts.append(int(piece))
    pre = match.group(4)
    if pre and len(parts) < 3:  # noqa: PLR2004 - X.Y.Z has three parts
        raise _bad(whole)
    prerelease = tuple(int(p) if p.isdigit() else p for p in pre.split(".")) if pre else ()
    return parts, prerelease


def _ver(parts: list[int], pre: tuple[int | str, ...] = ()) -> SemVer:
    padded = [*parts, 0, 0, 0][:3]
    return SemVer(padded[0], padded[1], padded[2], pre)


def _upper_for_partial(parts: list[int]) -> SemVer:
    # "1.2" means 1.2.*: below 1.3.0. "1" means below 2.0.0.
    return _ver([*parts[:-1], parts[-1] + 1])


def _range_upper(op: str, parts: list[int], whole: str) -> SemVer:
    """The exclusive upper bound of a ``^``, ``~`` or ``~=`` range."""
    if op == "^":
        # Bump the first non-zero part given (or the last part given, if all are zero).
        cut = next((i for i, p in enumerate(parts) if p > 0), len(parts) - 1)
        return _upper_for_partial(parts[: cut + 1])
    if op == "~":
        return _upper_for_partial(parts[:2])
    # PEP 440: drop the last part given and bump the one before (~=1.2 -> <2.0.0).
    if len(parts) < 2:  # noqa: PLR2004 - "~=1" means nothing in PEP 440
        raise _bad(whole)
    return _upper_for_partial(parts[:-1])


def _clause(text: str, whole: str) -> list[_Bound]:  # noqa: C901, PLR0911
    match = _CLAUSE.match(text.strip())
    if match is None:
        raise _bad(whole)
    op, rest = match.group(1) or "", match.group(2).strip()
    if rest in {"*", "x", "X"}:
        if op in {"", "=", "=="}:
            return []
        raise _bad(whole)
    parts, pre = _partial(rest, whole)
    if not parts:
        if op in {"", "=", "=="}:
            return []
        raise _bad(whole)
    low = _ver(parts, pre)
    if op in {"^", "~", "~="}:
        return [_Bound(">=", low), _Bound("<", _range_upper(op, parts, whole))]
    exact = len(parts) == 3  # noqa: PLR2004
    if op in {"", "=", "=="}:
        if exact:
            return [_Bound("==", low)]
        return [_Bound(">=", low), _Bound("<", _upper_for_partial(parts))]
    if op == "!=":
        if not exact:
            raise _bad(whole)
        return [_Bound("!=", low)]
    if op == ">" and not exact:
        return [_Bound(">=", _upper_for_partial(parts))]
    if op == "<=" and not exact:
        return [_Bound("<", _upper_for_partial(parts))]
    return [_Bound(op, low)]


@functools.lru_cache(maxsize=1024)
def parse_constraint(text: str) -> Constraint:
    """Parse a constraint; raise ``ValueError`` (reference wording) when it is malformed."""
    if not isinstance(text, str):
        raise _bad(repr(text))
    if len(text) > MAX_CONSTRAINT:
        raise ValueError(
            f"invalid dependency version constraint: {_echo(text)}: longer than "
            f"{MAX_CONSTRAINT:,} characters"
        )
    stripped = text.strip()
    if stripped in {"", "*", "x", "X", "latest"}:
        return Constraint(stripped or "*", ((),))
    alternatives: list[tuple[_Bound, ...]] = []
    for alternative in stripped.split("||"):
        bounds: list[_Bound] = []
        position = 0
        for match in _TOKEN.finditer(alternative):
            if alternative[position : match.start()].strip(" ,\t"):
                raise _bad(text)
            position = match.end()
            bounds.extend(_clause(match.group(0), text))
        if not alternative.strip() or alternative[position:].strip(" ,\t"):
            raise _bad(text)
        alternatives.append(tuple(bounds))
    return Constraint(stripped, tuple(alternatives))


# --------------------------------------------------------------------------- suggestions

_LOOSE_VERSION = re.compile(
    r"[vV]?\s*([0-9]{1,20})(?:\.([0-9]{1,20}))?(?:\.([0-9]{1,20}))?([-+][0-9A-Za-z.+-]*)?",
    re.ASCII,
)
_OPERATOR_FIXES = (("=>", ">="), ("=<", "<="), ("&&", ","))
_HYPHEN_RANGE = re.compile(r"\s*(\S+)\s+-\s+(\S+)\s*", re.ASCII)


def suggest_version(text: str) -> str | None:
    """The strict version ``text`` was probably meant to be (``1.0`` -> ``1.0.0``,
    ``v1.2.3`` -> ``1.2.3``, ``01.2.3`` -> ``1.2.3``), or ``None`` when nothing is close."""
    match = _LOOSE_VERSION.fullmatch(text.strip())
    if match is None:
        return None
    major, minor, patch, rest = match.groups()
    numbers = [str(int(n)) for n in (major, minor or "0", patch or "0")]
    candidate = ".".join(numbers) + (rest or "")
    try:
        parse_version(candidate)
    except ValueError:
        return None
    return candidate if candidate != text else None


def _shown_value(value: object) -> tuple[str, str | None]:
    """How to echo a value that should have been a version string, and its text."""
    if isinstance(value, str):
        return (repr(value), value) if len(value) <= _ECHO else (repr(_echo(value)), value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"the number {_echo(str(value))}", str(value)
    return f"{type(value).__name__} {value!r}"[:60], None


def version_problem(value: object) -> str | None:
    """Why ``value`` is not a strict semantic version, echoing it with a fix, or ``None``.

    ``version_problem("1.0")`` is ``invalid version format: must be semantic version
    (X.Y.Z), got '1.0': did you mean '1.0.0'?``; a number (YAML reads an unquoted
    ``1.0`` as one) is echoed as ``the number 1.0``.
    """
    try:
        parse_version(value if isinstance(value, str) else "")
    except ValueError as exc:
        shown, text = _shown_value(value)
        message = f"{exc}, got {shown}"
        suggestion = suggest_version(text) if text is not None and len(text) <= _ECHO else None
        if suggestion is not None:
            message += f": did you mean '{suggestion}'?"
        return message
    return None


def suggest_constraint(text: str) -> str | None:
    """The constraint ``text`` was probably meant to be (``=>1.0`` -> ``>=1.0``, ``1.0 - 2.0``
    -> ``>=1.0,<=2.0``, ``>=1.0 && <2`` -> ``>=1.0,<2``), or ``None``."""
    candidate = text.strip()
    for wrong, right in _OPERATOR_FIXES:
        candidate = candidate.replace(wrong, right)
    hyphen = _HYPHEN_RANGE.fullmatch(candidate)
    if hyphen is not None:
        candidate = f">={hyphen.group(1)},<={hyphen.group(2)}"
    if candidate == text:
        return None
    try:
        parse_constraint(candidate)
    except ValueError:
        return None
    return candidate


def constraint_problem(value: object, *, what: str = "dependency") -> str | None:
    """Why ``value`` is not a version constraint, with a fix when one is close, or ``None``.

    ``what`` names the constraint in the message (``dependency``, ``framework``).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (
            f"invalid {what} version constraint: got the number {value}: "
            f"did you mean '{value}' (in quotes: a constraint is a string)?"
        )
    if not isinstance(value, str):
        return f"invalid {what} version constraint: must be a string, got {type(value).__name__}"
    try:
        parse_constraint(value)
    except ValueError:
        message = f"invalid {what} version constraint: {_echo(value)}"
        if len(value) > MAX_CONSTRAINT:
            return f"{message}: longer than {MAX_CONSTRAINT:,} characters"
        suggestion = suggest_constraint(value)
        return message + (f" (did you mean '{suggestion}'?)" if suggestion else "")
    return None
