"""The line of every key of a TOML text, for error messages (pure).

``tomllib`` gives no positions, so a problem found in a TOML manifest or config (a bad
``version``, an unknown key) would have no line. :func:`toml_lines` walks text that
``tomllib`` has already accepted and maps each dotted path, in the shape the other
formats use (``dependencies[1].version``, ``config.port.type``), to its 1-based line:
keys of ``key = value`` pairs (dotted keys too), ``[table]`` and ``[[array of tables]]``
headers, and the items of arrays and the keys of inline tables inside values.

It runs only when a line is wanted, and gives up quietly where the text stops being
TOML it can follow: what it found until then stands. A path longer than
:data:`MAX_PATH_LENGTH` characters gets no line, nor does anything under it (an error
there is reported at the line of the nearest shorter path): a long key over a long
array would otherwise cost its length once per item, in time and in memory.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import tomllib

__all__ = ["MAX_PATH_LENGTH", "toml_lines"]

MAX_PATH_LENGTH = 1000
"""The longest dotted path the line finders (TOML, JSON, YAML) record."""
_UNTRACKED = "\0"  # the path of what lies under a path too long to record

_BLANK = re.compile(r"(?:[ \t\r\n]|#[^\n]*)*")
_SPACE = re.compile(r"[ \t]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BASIC = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_LITERAL = re.compile(r"'[^'\n]*'")
_MULTI_BASIC = re.compile(r'"""(?:[^\\]|\\.)*?""""{0,2}', re.DOTALL)
_MULTI_LITERAL = re.compile(r"'''.*?''''{0,2}", re.DOTALL)
# Numbers, booleans, dates and times; a date and a time may be separated by a space.
_SCALAR = re.compile(r"[^\s,\]}#]+(?: [0-9][^\s,\]}#]*)?")


class _StopError(Exception):
    """The text stops being TOML the walk can follow."""


def toml_lines(text: str) -> dict[str, int]:
    """The line of each key, table and array item of ``text`` by dotted path."""
    walk = _Walk(text)
    with contextlib.suppress(_StopError, IndexError, ValueError, tomllib.TOMLDecodeError):
        walk.document()
    return walk.lines


class _Walk:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines: dict[str, int] = {}
        self.arrays: dict[str, int] = {}  # array of tables -> index of its last table
        self._starts = [m.end() for m in re.finditer("\n", text)]

    def line(self, position: int) -> int:
        return bisect.bisect_right(self._starts, position) + 1

    def note(self, path: str, position: int) -> None:
        if path and path is not _UNTRACKED:
            self.lines.setdefault(path, self.line(position))

    def document(self) -> None:
        text, table, position = self.text, "", 0
        while True:
            position = _after(_BLANK, text, position)
            if position >= len(text):
                return
            start = position
            if text.startswith("[[", position):
                keys, position = self.key(position + 2)
                position = self.expect(position, "]]")
                base = _joined(self.header(keys[:-1], start), keys[-1])
                index = self.arrays.get(base, -1) + 1
                self.arrays[base] = index
                table = _item(base, index)
                self.note(base, start)
                self.note(table, start)
            elif text[position] == "[":
                keys, position = self.key(position + 1)
                position = self.expect(position, "]")
                table = self.header(keys, start)
            else:
                position = self.pair(position, table)
            end = text.find("\n", position)
            position = len(text) if end < 0 else end + 1

    def header(self, keys: list[str], start: int) -> str:
        """A table header's path (each part noted at ``start`` unless seen before): parts
        that name an array of tables mean its last table."""
        path = ""
        for key in keys:
            path = _joined(path, key)
            if path in self.arrays:
                path = _item(path, self.arrays[path])
            self.note(path, start)
        return path

    def expect(self, position: int, token: str) -> int:
        position = _after(_SPACE, self.text, position)
        if not self.text.startswith(token, position):
            raise _StopError
        return position + len(token)

    def key(self, position: int) -> tuple[list[str], int]:
        """A dotted key's parts, bare or quoted, and the position after it."""
        text, parts = self.text, []
        while True:
            position = _after(_SPACE, text, position)
            quoted = _BASIC.match(text, position) or _LITERAL.match(text, position)
            if quoted is not None:
                parts.append(str(tomllib.loads(f"k = {quoted.group()}")["k"]))
                position = quoted.end()
            else:
                bare = _BARE_KEY.match(text, position)
                if bare is None:
                    raise _StopError
                parts.append(bare.group())
                position = bare.end()
            position = _after(_SPACE, text, position)
            if position >= len(text) or text[position] != ".":
                return parts, position
            position += 1

    def pair(self, position: int, table: str) -> int:
        """``key = value`` inside ``table``; its key (and each part of a dotted key) noted."""
        start = position
        keys, position = self.key(position)
        path = table
        for key in keys:
            path = _joined(path, key)
            self.note(path, start)
        position = self.expect(position, "=")
        position = _after(_SPACE, self.text, position)
        return self.value(position, path)

    def value(self, position: int, path: str) -> int:
        text = self.text
        char = text[position]
        if char == "[":
            return self.array(position + 1, path)
        if char == "{":
            return self.inline_table(position + 1, path)
        for pattern in (_MULTI_BASIC, _MULTI_LITERAL, _BASIC, _LITERAL, _SCALAR):
            match = pattern.match(text, position)
            if match is not None:
                return match.end()
        raise _StopError

    def array(self, position: int, path: str) -> int:
        text, index = self.text, 0
        while True:
            position = _after(_BLANK, text, position)
            if text[position] == "]":
                return position + 1
            item = _item(path, index)
            self.note(item, position)
            position = _after(_BLANK, text, self.value(position, item))
            if text[position] == ",":
                position, index = position + 1, index + 1
            elif text[position] != "]":
                raise _StopError

    def inline_table(self, position: int, path: str) -> int:
        text = self.text
        while True:
            position = _after(_BLANK, text, position)
            if text[position] == "}":
                return position + 1
            position = _after(_BLANK, text, self.pair(position, path))
            if text[position] == ",":
                position += 1
            elif text[position] != "}":
                raise _StopError


def _after(pattern: re.Pattern[str], text: str, position: int) -> int:
    """Where a run of what ``pattern`` matches (possibly none) ends."""
    match = pattern.match(text, position)
    return match.end() if match is not None else position


def _joined(path: str, key: str) -> str:
    if path is _UNTRACKED or len(path) + len(key) >= MAX_PATH_LENGTH:
        return _UNTRACKED
    return f"{path}.{key}" if path else key


def _item(path: str, index: int) -> str:
    if path is _UNTRACKED or len(path) >= MAX_PATH_LENGTH:
        return _UNTRACKED
    return f"{path}[{index}]"
