"""Reading the YAML, JSON and TOML files users hand tether, within bounds (pure but for the read).

Manifests and framework configs are read here, and nothing such a file holds can
take more than its share of the host. The bounds, the same for every format:

==========================  ================================================================
regular files only          a FIFO, a device, a socket or a directory (or a symlink to one)
                            is refused from its ``stat``, before it is opened; the file is
                            opened without blocking and checked again
size                        at most :data:`MAX_BYTES` (1 MiB)
text                        UTF-8, with no lone surrogates (``"\\ud800"`` in JSON)
nesting                     at most :data:`MAX_DEPTH` (64) mappings and lists inside each other
integers                    at most :data:`MAX_INT_DIGITS` (20) digits; JSON's ``NaN`` and
                            ``Infinity`` are not numbers
duplicate keys              an error naming both lines (TOML's parser refuses them itself)
YAML aliases                a document may stand for at most :data:`MAX_VALUES` (100,000)
                            values, an alias counting as a copy of what it names: measured
                            on the node graph, never by expanding it; an alias inside the
                            node it names is refused
==========================  ================================================================

Every failure is a :class:`DocumentError` (the problem in words, the line when known,
and whether the file could not be read or did not parse); whatever a parser raises
(``RecursionError``, ``MemoryError``, ``OverflowError``, ``ValueError``...) comes out
as one. Callers turn it into their own error (``ManifestError``, ``ConfigError``).
Line numbers for JSON and TOML are found only when asked for (an error message needs
them); a YAML syntax error is reported where the construct that went wrong begins (the
quote that is never closed, the bracket that is never matched).
"""

from __future__ import annotations

import bisect
import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import yaml

from tether._describe import error_line
from tether._toml_lines import MAX_PATH_LENGTH, toml_lines

__all__ = [
    "FORMATS",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_VALUES",
    "Document",
    "DocumentError",
    "decode",
    "format_of",
    "parse",
    "read_bytes",
    "read_document",
]

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_INT_DIGITS = 20
MAX_VALUES = 100_000
FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}
_NAMES = {"yaml": "YAML", "json": "JSON", "toml": "TOML"}
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


class DocumentError(Exception):
    """Why a file could not be read (``reading``) or did not parse; ``line`` when known."""

    def __init__(
        self, problem: str, *, line: int | None = None, reading: bool = False, fmt: str = ""
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.reading = reading
        self.fmt = fmt

    @property
    def label(self) -> str:
        """``cannot read`` or ``invalid YAML`` (JSON, TOML): what went wrong, in two words."""
        return "cannot read" if self.reading else f"invalid {_NAMES.get(self.fmt, 'file')}"


# --------------------------------------------------------------------------- reading


def format_of(path: str | Path) -> str | None:
    """``yaml``, ``json`` or ``toml`` from the file's suffix; ``None`` for any other."""
    return FORMATS.get(os.path.splitext(path)[1].lower())  # noqa: PTH122 - str or Path


def read_document(path: str | Path, *, fmt: str | None = None) -> Document:
    """Read, decode and parse one file, in the format its suffix names unless ``fmt``."""
    chosen = fmt or format_of(path)
    if chosen is None:
        raise DocumentError("unknown format: use .yaml, .yml, .json or .toml", reading=True)
    return parse(decode(read_bytes(path)), chosen)


def read_bytes(
    path: str | Path, *, st: os.stat_result | None = None, limit: int | None = MAX_BYTES
) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (``None``: no limit).

    ``st``, when the caller has it, is the file's ``stat`` (saves one call). A file that
    is not regular is refused from it without being opened.
    """
    try:
        if st is None:
            st = os.stat(path)  # noqa: PTH116 - str or Path alike, as os.open below
        _check_file(st, limit)
        handle = os.open(path, _OPEN_FLAGS)
        try:
            _check_file(os.fstat(handle), limit)  # the file may have been swapped since
            return _read_all(handle, limit)
        finally:
            os.close(handle)
    except OSError as exc:
        raise DocumentError(exc.strerror or str(exc), reading=True) from None
    except ValueError as exc:  # a NUL byte in the path, or a path that cannot be encoded
        raise DocumentError(f"not a usable path ({error_line(exc)})", reading=True) from None


def _check_file(st: os.stat_result, limit: int | None) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise DocumentError(f"not a regular file ({_kind(st.st_mode)})", reading=True)
    if limit is not None and st.st_size > limit:
        raise _too_large(st.st_size, limit)


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


def _too_large(size: int | None, limit: int) -> DocumentError:
    found = f"{size:,} bytes" if size is not None else "more than that"
    return DocumentError(f"too large: {found}, at most {_size(limit)} is read", reading=True)


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit:,} bytes"


def _read_all(handle: int, limit: int | None) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        want = (limit + 1 - total) if limit is not None else (1 << 20)
        chunk = os.read(handle, want)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if limit is not None and total > limit:
            raise _too_large(None, limit)


def decode(content: bytes) -> str:
    """UTF-8 text, or a ``DocumentError`` naming the first bad byte and its line."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        problem = f"not UTF-8 text (byte 0x{content[exc.start]:02x} on line {line})"
        raise DocumentError(problem, line=line, reading=True) from None


# --------------------------------------------------------------------------- parsing


class Document:
    """A parsed file: its ``data`` and the line of each dotted key (``lines``).

    ``lines`` maps ``plugins.plugins[0].name``-style paths to 1-based line numbers:
    every key and list item of a YAML, JSON or TOML file (JSON's and TOML's found on
    first use, by walking the text: their parsers give no positions).
    """

    __slots__ = ("_lines", "data", "fmt", "text")

    def __init__(self, data: object, fmt: str, text: str, lines: Mapping[str, int] | None) -> None:
        self.data = data
        self.fmt = fmt
        self.text = text
        self._lines = lines

    @property
    def lines(self) -> Mapping[str, int]:
        if self._lines is None:
            self._lines = _LazyLines(self.text, toml_lines if self.fmt == "toml" else _json_lines)
        return self._lines


def parse(text: str, fmt: str) -> Document:
    """Parse ``text`` as ``fmt`` (``yaml``, ``json``, ``toml``) within the bounds above."""
    try:
        text.encode("utf-8")
        if fmt == "yaml":
            return _parse_yaml(text)
        if fmt == "json":
            return _parse_json(text)
        if fmt == "toml":
            return _parse_toml(text)
    except DocumentError as exc:
        exc.fmt = exc.fmt or fmt
        raise
    except RecursionError:
        raise _too_deep(fmt, None) from None
    except MemoryError:
        raise DocumentError("too large to parse", fmt=fmt) from None
    except UnicodeError:
        raise DocumentError("not Unicode text (a lone surrogate)", fmt=fmt) from None
    except Exception as exc:  # whatever else a parser raises is this file's problem
        raise DocumentError(error_line(exc), fmt=fmt) from None
    raise DocumentError(f"unknown format {fmt!r}", reading=True)


def _too_deep(fmt: str, line: int | None) -> DocumentError:
    return DocumentError(f"nested more than {MAX_DEPTH} deep", line=line, fmt=fmt)


def _int_too_large(text: str, line: int | None, fmt: str) -> DocumentError:
    shown = text if len(text) <= 30 else f"{text[:12]}...{text[-6:]} ({len(text)} characters)"  # noqa: PLR2004
    return DocumentError(
        f"integer {shown} is too large (at most {MAX_INT_DIGITS} digits)", line=line, fmt=fmt
    )


def _check_tree(data: object, *, fmt: str, ints: bool, strings: bool) -> None:
    """Refuse nesting beyond ``MAX_DEPTH`` and, when asked, big integers and lone surrogates."""
    pending: list[tuple[object, int]] = [(data, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise _too_deep(fmt, None)
            items = value.values() if isinstance(value, dict) else value
            pending.extend((item, depth + 1) for item in items)
            if strings and isinstance(value, dict):
                pending.extend((key, depth + 1) for key in value)
        elif ints and isinstance(value, int) and not isinstance(value, bool):
            if abs(value) >= _INT_BOUND:
                raise _int_too_large(str(value), None, fmt)
        elif strings and isinstance(value, str) and not value.isascii():
            value.encode("utf-8")  # UnicodeEncodeError for a lone surrogate


_INT_BOUND = 10**MAX_INT_DIGITS


# --------------------------------------------------------------------------- YAML

_YamlBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE = "tag:yaml.org,2002:merge"


class _YamlLoader(_YamlBase):  # type: ignore[valid-type,misc] # CSafeLoader when libyaml is there
    """The safe loader, with integers and dates that cannot overflow or raise."""


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _bounded_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(node.value)
    if len(text) > 4 * MAX_INT_DIGITS:  # no number this long is small: refuse before int()
        raise _int_too_large(text, _line(node), "yaml")
    try:
        value = yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)  # type: ignore[arg-type]
    except ValueError as exc:
        raise DocumentError(f"invalid integer {text!r}: {exc}", line=_line(node)) from None
    if abs(value) >= _INT_BOUND:
        raise _int_too_large(text, _line(node), "yaml")
    return int(value)


def _checked_timestamp(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)  # type: ignore[arg-type]
    except (ValueError, OverflowError) as exc:
        text = str(node.value)
        raise DocumentError(f"invalid date {text!r}: {exc}", line=_line(node)) from None


_YamlLoader.add_constructor("tag:yaml.org,2002:int", _bounded_int)
_YamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _checked_timestamp)


def _parse_yaml(text: str) -> Document:
    loader = _YamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Document(None, "yaml", text, {})
        lines = _walk_yaml(node)
        return Document(loader.construct_document(node), "yaml", text, lines)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from None
    finally:
        loader.dispose()


# What PyYAML (and libyaml) say while reading something that opens on one line and must
# close later: the error is where it opened, not where the parser gave up (often the end).
_OPENED = {
    "while scanning a quoted scalar": "in a quoted string opened on line {start}",
    "while scanning a simple key": "after the key that starts on line {start}",
    "while parsing a flow sequence": "in a [ list opened on line {start}",
    "while parsing a flow mapping": "in a { mapping opened on line {start}",
}


def _yaml_error(exc: yaml.YAMLError) -> DocumentError:
    """The ``DocumentError`` for a YAML syntax error, at the line the user must fix.

    PyYAML gives two marks: ``problem_mark`` (where it gave up) and ``context_mark``
    (where the construct it was reading began). For a quote, a key or a bracket left
    open, the second is the line to fix; the message names both.
    """
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    line = int(problem_mark.line) + 1 if problem_mark is not None else None
    problem = str(getattr(exc, "problem", None) or exc)
    context = getattr(exc, "context", None)
    opened = _OPENED.get(str(context))
    if opened is not None and context_mark is not None:
        start = int(context_mark.line) + 1
        if "quoted" in opened and "end of stream" in problem:
            problem = f"a quoted string opened on line {start} is never closed"
        else:
            where = f" on line {line}" if line is not None and line != start else ""
            problem = f"{problem}{where}, {opened.replace('{start}', str(start))}"
        return DocumentError(problem, line=start, fmt="yaml")
    if context and problem.startswith("but "):  # "expected ... but found ...": say both
        problem = f"{context} {problem}"
    return DocumentError(problem, line=line, fmt="yaml")


def _walk_yaml(root: yaml.Node) -> dict[str, int]:
    """The line of every key and list item by dotted path, checking the document on the way.

    A first walk over the tree records lines and refuses duplicate keys, nesting beyond
    ``MAX_DEPTH`` and lone surrogates; it enters each collection once, so an alias
    (a collection met again) is neither walked again nor given lines of its own. Only
    a document with aliases is then measured as a graph (:func:`_measure_aliases`).
    """
    walk = _YamlWalk()
    if root.__class__ is _SCALAR_NODE:
        if not root.value.isascii():
            walk.scalar(root)
    else:
        walk.collection(root, "", 0)
    if walk.aliased:
        _measure_aliases(root)
    return walk.lines


class _YamlWalk:
    """The first walk: on the path of every manifest read, so written for speed."""

    __slots__ = ("aliased", "entered", "lines")

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}
        self.entered: set[int] = set()
        self.aliased = False

    @staticmethod
    def scalar(node: yaml.Node) -> None:
        """Refuse a scalar that is not Unicode text (called for those that are not ASCII)."""
        try:
            node.value.encode("utf-8")
        except UnicodeEncodeError:
            problem = "not Unicode text (a lone surrogate)"
            raise DocumentError(problem, line=_line(node)) from None

    def collection(self, node: yaml.Node, path: str | None, depth: int) -> None:
        if id(node) in self.entered:
            self.aliased = True
            return
        if depth >= MAX_DEPTH:
            raise _too_deep("yaml", _line(node))
        self.entered.add(id(node))
        if node.__class__ is _SEQUENCE_NODE:
            self.sequence(node, path, depth + 1)
        else:
            self.mapping(node, path, depth + 1)

    def sequence(self, node: yaml.Node, path: str | None, depth: int) -> None:
        lines = self.lines
        for index, item in enumerate(node.value):
            item_path = None
            if path is not None and len(path) < MAX_PATH_LENGTH:
                item_path = f"{path}[{index}]"
                lines[item_path] = item.start_mark.line + 1
            if item.__class__ is not _SCALAR_NODE:
                self.collection(item, item_path, depth)
            elif not item.value.isascii():  # checked here: most values are ASCII scalars
                self.scalar(item)

    def mapping(self, node: yaml.Node, path: str | None, depth: int) -> None:
        lines = self.lines
        names: list[str] = []
        for key_node, value_node in node.value:
            value_path = None
            if key_node.__class__ is not _SCALAR_NODE:
                self.collection(key_node, None, depth)
            elif key_node.tag != _MERGE:
                if not key_node.value.isascii():
                    self.scalar(key_node)
                name, line = key_node.value, key_node.start_mark.line + 1
                if path is not None and len(path) + len(name) < MAX_PATH_LENGTH:
                    value_path = f"{path}.{name}" if path else name
                    lines[value_path] = line
                names.append(name)
            if value_node.__class__ is not _SCALAR_NODE:
                self.collection(value_node, value_path, depth)
            elif not value_node.value.isascii():
                self.scalar(value_node)
        if len(set(names)) != len(names):
            _refuse_duplicate(node, path)


def _refuse_duplicate(node: yaml.Node, path: str | None) -> None:
    """Refuse the first key a mapping repeats (one with a repeated text: ``1`` and ``"1"``
    have different tags, and are different keys)."""
    seen: dict[tuple[str, str], int] = {}
    for key_node, _ in node.value:
        if key_node.__class__ is not _SCALAR_NODE or key_node.tag == _MERGE:
            continue
        name, line = key_node.value, _line(key_node)
        first = seen.get((key_node.tag, name))
        if first is not None:
            shown = f"{path}.{name}" if path else name
            problem = f"duplicate key {shown!r} on lines {first} and {line}: keep one"
            raise DocumentError(problem, line=line)
        seen[key_node.tag, name] = line


def _measure_aliases(root: yaml.Node) -> None:
    """Refuse a document with aliases that stands for more than ``MAX_VALUES`` values, or
    nests beyond ``MAX_DEPTH`` once they are filled in, or has an alias inside the node
    it names. Each collection is measured once (its values and its height), so this
    takes time in proportion to the file, never to what the aliases would expand to."""
    measured: dict[int, tuple[int, int]] = {}
    entered: set[int] = set()

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        if node.__class__ is _SCALAR_NODE:
            return _ONE
        known = measured.get(id(node))
        if known is None:
            if depth >= MAX_DEPTH:
                raise _too_deep("yaml", _line(node))
            if id(node) in entered:
                problem = "an alias refers to a mapping or list it is part of"
                raise DocumentError(problem, line=_line(node))
            entered.add(id(node))
            parts = node.value if node.__class__ is _SEQUENCE_NODE else _flat(node.value)
            sizes = [measure(part, depth + 1) for part in parts]
            known = (1 + sum(c for c, _ in sizes), 1 + max((h for _, h in sizes), default=0))
            if known[0] > MAX_VALUES:
                raise DocumentError(
                    f"stands for more than {MAX_VALUES:,} values (aliases count as copies "
                    "of what they name)",
                    line=_line(node),
                )
            measured[id(node)] = known
        if depth + known[1] > MAX_DEPTH:
            raise _too_deep("yaml", _line(node))
        return known

    measure(root, 0)


def _flat(pairs: list[tuple[yaml.Node, yaml.Node]]) -> list[yaml.Node]:
    return [part for pair in pairs for part in pair]


_SCALAR_NODE = yaml.ScalarNode
_SEQUENCE_NODE = yaml.SequenceNode
_ONE = (1, 0)


# --------------------------------------------------------------------------- JSON


class _DuplicateKeyError(Exception):
    """Raised by the object hook; the locator then finds where."""


def _json_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKeyError
    return result


def _json_int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise _HookError(_int_too_large(text, None, "json"), text)
    return int(text)


def _json_constant(name: str) -> float:
    raise _HookError(DocumentError(f"{name} is not a JSON number", fmt="json"), name)


class _HookError(Exception):
    """A problem found by a hook, which knows the token but not where it is."""

    def __init__(self, error: DocumentError, token: str) -> None:
        super().__init__(error.problem)
        self.error = error
        self.token = token


_JSON = json.JSONDecoder(
    object_pairs_hook=_json_object, parse_int=_json_int, parse_constant=_json_constant
)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _parse_json(text: str) -> Document:
    try:
        data = _JSON.decode(text)
    except json.JSONDecodeError as exc:
        raise _json_syntax(exc) from None
    except _DuplicateKeyError:
        raise _json_duplicate(text) from None
    except _HookError as exc:
        position = text.find(exc.token)
        exc.error.line = text.count("\n", 0, position) + 1 if position >= 0 else None
        raise exc.error from None
    deep = text.count("{") + text.count("[") > MAX_DEPTH
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    if deep or surrogates:
        _check_tree(data, fmt="json", ints=False, strings=surrogates)
    return Document(data, "json", text, None)


def _json_syntax(exc: json.JSONDecodeError) -> DocumentError:
    """The decoder's complaint, except for the two commonest slips, which it reports on
    the next value's line: a comma before a closing bracket, a comma left out at the
    end of a line."""
    before = exc.doc[: exc.pos].rstrip()
    if before.endswith(",") and exc.doc[exc.pos : exc.pos + 1] in {"}", "]"}:
        line = exc.doc.count("\n", 0, len(before)) + 1
        closing = exc.doc[exc.pos]
        return DocumentError(
            f"a comma before '{closing}' (JSON allows no trailing comma): remove it",
            line=line,
            fmt="json",
        )
    if exc.msg == "Expecting ',' delimiter" and "\n" in exc.doc[len(before) : exc.pos]:
        line = exc.doc.count("\n", 0, len(before)) + 1  # the comma belongs on that line
        return DocumentError("a ',' is missing at the end of this line", line=line, fmt="json")
    return DocumentError(exc.msg, line=exc.lineno, fmt="json")


def _json_duplicate(text: str) -> DocumentError:
    locator = _JsonLocator(text)
    locator.run()
    if locator.duplicate is None:  # pragma: no cover - the decoder found one, so will this
        return DocumentError("duplicate key", fmt="json")
    path, first, again = locator.duplicate
    return DocumentError(
        f"duplicate key {path!r} on lines {first} and {again}: keep one", line=again, fmt="json"
    )


def _json_lines(text: str) -> dict[str, int]:
    locator = _JsonLocator(text)
    locator.run()
    return locator.lines


class _LazyLines(Mapping[str, int]):
    """The lines of a text's keys and items, located (by ``locate``) on first use."""

    def __init__(self, text: str, locate: Callable[[str], dict[str, int]]) -> None:
        self._text = text
        self._locate = locate
        self._found: dict[str, int] | None = None

    def _lines(self) -> dict[str, int]:
        if self._found is None:
            self._found = self._locate(self._text)
        return self._found

    def __getitem__(self, key: str) -> int:
        return self._lines()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._lines())

    def __len__(self) -> int:
        return len(self._lines())


class _StopError(Exception):
    """The text stops being JSON the locator can follow; what it found so far stands."""


_PLAIN_JSON = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null")


def _json_path(path: str | None, key: str) -> str | None:
    """The dotted path of ``key`` under ``path``; ``None`` (no line) when too long."""
    if path is None or len(path) + len(key) >= MAX_PATH_LENGTH:
        return None
    return f"{path}.{key}" if path else key


class _JsonLocator:
    """Walks JSON text for the line of every key and list item (and the first duplicate key).

    Only run when a line is wanted (an error message), so it may be slow; it gives up
    quietly where the text stops being JSON it can follow, or nests too deep.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines: dict[str, int] = {}
        self.duplicate: tuple[str, int, int] | None = None
        self._starts = [m.end() for m in re.finditer("\n", text)]

    def run(self) -> None:
        try:
            self._value(self._space(0), "", 0)
        except (_StopError, IndexError, ValueError):
            return

    def _line(self, position: int) -> int:
        return bisect.bisect_right(self._starts, position) + 1

    def _space(self, position: int) -> int:
        match = _SPACE.match(self.text, position)
        return match.end() if match else position

    def _value(self, position: int, path: str | None, depth: int) -> int:
        char = self.text[position]
        if char in "{[" and depth >= MAX_DEPTH:
            raise _StopError
        if char == "{":
            return self._object(self._space(position + 1), path, depth + 1)
        if char == "[":
            return self._array(self._space(position + 1), path, depth + 1)
        if char == '"':
            return int(_PLAIN_JSON.raw_decode(self.text, position)[1])
        match = _SCALAR.match(self.text, position)
        if match is None:
            raise _StopError
        return match.end()

    def _object(self, position: int, path: str | None, depth: int) -> int:
        seen: dict[str, int] = {}
        if self.text[position] == "}":
            return position + 1
        while True:
            if self.text[position] != '"':
                raise _StopError
            line = self._line(position)
            key, position = _PLAIN_JSON.raw_decode(self.text, position)
            key_path = _json_path(path, key)
            if key in seen and self.duplicate is None:
                self.duplicate = (key_path or f"...{key[-40:]}", seen[key], line)
            seen.setdefault(key, line)
            if key_path is not None:
                self.lines.setdefault(key_path, line)
            position = self._space(position)
            if self.text[position] != ":":
                raise _StopError
            position = self._space(self._value(self._space(position + 1), key_path, depth))
            if self.text[position] == "}":
                return position + 1
            if self.text[position] != ",":
                raise _StopError
            position = self._space(position + 1)

    def _array(self, position: int, path: str | None, depth: int) -> int:
        if self.text[position] == "]":
            return position + 1
        index = 0
        while True:
            item_path = None if path is None or len(path) >= MAX_PATH_LENGTH else f"{path}[{index}]"
            if item_path is not None:
                self.lines.setdefault(item_path, self._line(position))
            position = self._space(self._value(position, item_path, depth))
            if self.text[position] == "]":
                return position + 1
            if self.text[position] != ",":
                raise _StopError
            position = self._space(position + 1)
            index += 1


# --------------------------------------------------------------------------- TOML

_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def _parse_toml(text: str) -> Document:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        line = int(found.group(1)) if found else None
        raise DocumentError(str(exc), line=line, fmt="toml") from None
    _check_tree(data, fmt="toml", ints=True, strings=False)
    return Document(data, "toml", text, None)
