"""A plugin's entry module, found and read without importing it (reads files, imports nothing).

``tether plugins validate`` asks :func:`check_entry_source` what importing the entry
would refuse, and the loader asks :func:`with_default_entry` for the entry of a
manifest that gives none. Both find the module's file as the loader's import would,
from the plugin's directory (``a.b`` is ``a/b.py`` or ``a/b/__init__.py``, each
package's ``__init__.py`` on the way run first), and parse it with :mod:`ast`.

The entry's attribute must be defined at module level: a ``class``, a ``def``, an
assignment, an ``import ... as`` or ``from ... import``, also under ``if`` or ``try``.
A module that may define names no parser can see (``from x import *``, a module
``__getattr__``, ``globals()``) gets a warning instead of an error.

The default entry, when the manifest has no ``entry``: the one class deriving from
``tether.Plugin`` defined in ``plugin.py``, else in the package named after the plugin
(``my-plugin`` -> ``my_plugin/__init__.py``), else in ``my_plugin.py``. A class that
others in the file derive from is a base, not a candidate.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib.machinery
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tether._describe import error_line
from tether._documents import DocumentError, read_bytes
from tether._manifest import Manifest, field_line
from tether.errors import PluginLoadError

__all__ = [
    "EntryCheck",
    "EntryFinding",
    "check_entry_source",
    "convention_files",
    "default_entry",
    "with_default_entry",
]

MAX_SOURCE_BYTES = 2 << 20
"""A larger module is not read: its entry is checked when it is loaded."""
_UNSAFE = re.compile(r"\W")
# The import system's order: an extension module, then source, then bytecode.
_SUFFIXES = (*importlib.machinery.EXTENSION_SUFFIXES, ".py", *importlib.machinery.BYTECODE_SUFFIXES)


@dataclass(frozen=True, slots=True)
class EntryFinding:
    """One thing found about the entry: an error (loading would fail) or a warning."""

    message: str
    hint: str | None = None
    warning: bool = False


class _EntryError(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.finding = EntryFinding(message, hint)


# --------------------------------------------------------------------------- locating


@dataclass(frozen=True, slots=True)
class _Module:
    """Where an entry module is: its file (``None`` for a directory without
    ``__init__.py``) and the packages' ``__init__`` files run before it."""

    file: Path | None
    packages: tuple[Path, ...]

    @property
    def is_source(self) -> bool:
        return self.file is not None and self.file.suffix == ".py"


def _init_of(directory: Path) -> Path | None:
    for suffix in _SUFFIXES:
        candidate = directory / f"__init__{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _locate(directory: Path, module: str) -> _Module:
    """The files importing ``module`` from the plugin's ``directory`` would run."""
    parts = module.split(".")
    packages: list[Path] = []
    here = directory
    for part in parts[:-1]:
        here = here / part
        if not here.is_dir():
            raise _missing(directory, module, f"no package directory {here}")
        init = _init_of(here)
        if init is not None:
            packages.append(init)
    last = here / parts[-1]
    if last.is_dir():
        init = _init_of(last)
        if init is not None:
            return _Module(init, tuple(packages))
    for suffix in _SUFFIXES:
        candidate = last.with_name(last.name + suffix)
        if candidate.is_file():
            return _Module(candidate, tuple(packages))
    if last.is_dir():
        return _Module(None, tuple(packages))
    found = f"no {last.name}.py and no {last.name}/__init__.py in {last.parent}"
    raise _missing(directory, module, found)


def _missing(directory: Path, module: str, found: str) -> _EntryError:
    modules = sorted(p.stem for p in directory.glob("*.py") if p.stem.isidentifier())
    close = difflib.get_close_matches(module, modules, n=1)
    rule = (
        "the module part of `entry` names a .py file or a package inside the plugin "
        "directory, dotted for a submodule ('pkg.sub' is pkg/sub.py)"
    )
    return _EntryError(f"entry module '{module}' not found: {found}", _did_you_mean(close, rule))


def _did_you_mean(close: list[str], rule: str) -> str:
    return f"did you mean '{close[0]}'? ({rule})" if close else rule


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A module's tree, and whether its text says ``globals`` at all (when it does not,
    no walk looks for a call to it)."""

    tree: ast.Module
    mentions_globals: bool


class _TooLargeError(_EntryError):
    """A source file over :data:`MAX_SOURCE_BYTES`: not read, so nothing is known of it."""


# The last files parsed, by identity and content stamp: the default entry and the entry
# check read the same file once.
_PARSED: dict[tuple[str, int, int, int], _Parsed] = {}
_PARSED_KEPT = 4


def _parse(file: Path) -> _Parsed:
    try:
        st = file.stat()
    except OSError as exc:
        raise _EntryError(f"cannot read {file}: {exc.strerror or exc}") from None
    if st.st_size > MAX_SOURCE_BYTES:
        raise _TooLargeError(
            f"{file} is {st.st_size:,} bytes, more than the {MAX_SOURCE_BYTES >> 20} MiB "
            "tether reads without importing it",
            "name the entry in the manifest (`entry: module:Attribute`): it is then "
            "checked when the plugin is loaded",
        )
    key = (str(file), st.st_ino, st.st_size, st.st_mtime_ns)
    parsed = _PARSED.get(key)
    if parsed is None:
        parsed = _parse_source(file, st)
        if len(_PARSED) >= _PARSED_KEPT:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = parsed
    return parsed


def _parse_source(file: Path, st: os.stat_result) -> _Parsed:
    try:
        source = read_bytes(file, st=st, limit=MAX_SOURCE_BYTES)
    except DocumentError as exc:
        raise _EntryError(f"cannot read {file}: {exc.problem}") from None
    try:
        tree = ast.parse(source, filename=str(file))
    except SyntaxError as exc:
        line = f", line {exc.lineno}" if exc.lineno else ""
        raise _EntryError(
            f"syntax error in {file}{line}: {exc.msg}",
            f"fix the code there; `python -m py_compile {file}` shows the same error",
        ) from None
    except (RecursionError, MemoryError) as exc:  # Python's compiler gives up on it too
        raise _EntryError(
            f"cannot parse {file}: it is nested too deeply for Python ({error_line(exc)})",
            "split the deeply nested expression or statement; importing the module fails "
            "the same way",
        ) from None
    except ValueError as exc:  # NUL bytes
        raise _EntryError(f"cannot parse {file}: {error_line(exc)}") from None
    return _Parsed(tree, b"globals" in source)


@dataclass(slots=True)
class _Names:
    """The names a module (or class body) defines, and whether it may define others."""

    defined: dict[str, ast.stmt]
    dynamic: str | None = None  # why names may exist that the parser cannot see


def _targets(node: ast.expr) -> Iterator[str]:
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Tuple | ast.List):
        for item in node.elts:
            yield from _targets(item)
    elif isinstance(node, ast.Starred):
        yield from _targets(node.value)


def _imported(statement: ast.Import | ast.ImportFrom, names: _Names) -> list[str]:
    if isinstance(statement, ast.Import):
        return [a.asname or a.name.partition(".")[0] for a in statement.names]
    if any(a.name == "*" for a in statement.names):
        names.dynamic = names.dynamic or f"it uses 'from {statement.module or '.'} import *'"
    return [a.asname or a.name for a in statement.names if a.name != "*"]


def _defined_by(statement: ast.stmt, names: _Names) -> list[str]:  # noqa: PLR0911 - one per kind
    """The names ``statement`` itself defines (not those in statements nested in it)."""
    if isinstance(statement, ast.ClassDef):
        return [statement.name]
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
        if statement.name == "__getattr__":
            names.dynamic = names.dynamic or "it defines __getattr__"
        return [statement.name]
    if isinstance(statement, ast.Assign):
        return [n for target in statement.targets for n in _targets(target)]
    if isinstance(statement, ast.AugAssign | ast.For | ast.AsyncFor) or (
        isinstance(statement, ast.AnnAssign) and statement.value is not None
    ):
        return list(_targets(statement.target))
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return _imported(statement, names)
    if isinstance(statement, ast.With | ast.AsyncWith):
        return [n for i in statement.items if i.optional_vars for n in _targets(i.optional_vars)]
    return []


def _nested(statement: ast.stmt) -> list[ast.stmt]:
    """The statements inside ``statement`` that run at its level (not in a def or class)."""
    if isinstance(statement, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return []
    nested: list[ast.stmt] = []
    for field in ("body", "orelse", "finalbody", "handlers", "cases"):
        for child in getattr(statement, field, ()):
            is_clause = isinstance(child, ast.ExceptHandler | ast.match_case)
            nested += child.body if is_clause else [child]
    return nested


def _names_in(body: list[ast.stmt], *, mentions_globals: bool = False) -> _Names:
    names = _Names({})
    pending = list(reversed(body))
    while pending:
        statement = pending.pop()
        for name in _defined_by(statement, names):
            names.defined.setdefault(name, statement)
        pending.extend(reversed(_nested(statement)))
    if names.dynamic is None and mentions_globals and _calls_globals(body):
        names.dynamic = "it calls globals()"
    return names


def _is_globals_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "globals"
    )


def _calls_globals(body: list[ast.stmt]) -> bool:
    """Whether the code of ``body`` that runs at its level (not in a def, class or lambda)
    calls ``globals()``: one walk over it."""
    pending: list[ast.AST] = list(body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if _is_globals_call(node):
            return True
        pending.extend(ast.iter_child_nodes(node))
    return False


# --------------------------------------------------------------------------- checking


def _check_attribute(parsed: _Parsed, file: Path, attribute: str) -> list[EntryFinding]:
    first, *rest = attribute.split(".")
    names = _names_in(parsed.tree.body, mentions_globals=parsed.mentions_globals)
    found = names.defined.get(first)
    if found is None:
        if names.dynamic is not None:
            return [
                EntryFinding(
                    f"cannot tell without importing it whether {file} defines '{first}': "
                    f"{names.dynamic}",
                    warning=True,
                )
            ]
        shown = sorted(
            n for n, s in names.defined.items() if isinstance(s, ast.ClassDef | ast.FunctionDef)
        )
        close = difflib.get_close_matches(first, shown, n=1)
        listed = f" (it defines {', '.join(shown[:8])})" if shown else ""
        return [
            EntryFinding(
                f"entry attribute '{first}' not found: {file} defines no '{first}' at module "
                f"level{listed}",
                _did_you_mean(
                    close, "the part of `entry` after ':' names the plugin class or factory"
                ),
            )
        ]
    if rest and isinstance(found, ast.ClassDef) and not found.bases and not found.keywords:
        inner = _names_in(found.body).defined
        if rest[0] not in inner:
            return [
                EntryFinding(
                    f"entry attribute '{attribute}' not found: class {first} in {file} "
                    f"defines no '{rest[0]}'",
                    "the part of `entry` after ':' names the plugin class or factory",
                )
            ]
    return []


def _entry_findings(directory: Path, module: str, attribute: str) -> list[EntryFinding]:
    located = _locate(directory, module)
    for package in located.packages:
        if package.suffix == ".py":
            with contextlib.suppress(_TooLargeError):  # left to the import
                _parse(package)  # a syntax error in a package on the way fails the import too
    if located.file is None:
        return [
            EntryFinding(
                f"entry module '{module}' is a directory without __init__.py: it defines "
                f"no '{attribute}'",
                "add the __init__.py, or name a module file inside it in `entry`",
            )
        ]
    if not located.is_source:
        return [
            EntryFinding(
                f"entry module '{module}' is compiled ({located.file.name}): "
                f"'{attribute}' is checked when it is loaded",
                warning=True,
            )
        ]
    try:
        parsed = _parse(located.file)
    except _TooLargeError as exc:
        return [
            EntryFinding(
                f"{exc.finding.message}: '{attribute}' is checked when it is loaded", warning=True
            )
        ]
    return _check_attribute(parsed, located.file, attribute)


@dataclass(frozen=True, slots=True)
class EntryCheck:
    """What :func:`check_entry_source` found: the entry checked (``""`` when there is
    none to check), whether it was found by convention, the findings, and the line of
    ``entry`` in the manifest file (when there are findings and the file has the key)."""

    entry: str
    by_convention: bool
    findings: tuple[EntryFinding, ...]
    line: int | None = None

    @property
    def errors(self) -> tuple[EntryFinding, ...]:
        return tuple(f for f in self.findings if not f.warning)


def check_entry_source(manifest: Manifest) -> EntryCheck:
    """What importing the manifest's entry would find wrong, learnt without importing it.

    Nothing to check for a manifest without a directory (an installed distribution's),
    nor for a plugin whose worker is another program (``command``: nothing is imported).
    """
    directory = manifest.directory
    entry, by_convention = manifest.entry, not manifest.entry
    if directory is None or manifest.command:
        return EntryCheck(entry, by_convention, ())
    try:
        if by_convention:
            entry = default_entry(manifest)
        module, _, attribute = entry.partition(":")
        findings = tuple(_entry_findings(directory, module, attribute))
    except _EntryError as exc:
        findings = (exc.finding,)
    line = field_line(manifest, "entry") if findings and not by_convention else None
    return EntryCheck(entry, by_convention, findings, line)


# --------------------------------------------------------------------------- the default entry


def _module_for(name: str) -> str:
    module = _UNSAFE.sub("_", name)
    return f"_{module}" if module[:1].isdigit() else module


def convention_files(manifest: Manifest) -> list[tuple[str, Path]]:
    """Where the default entry is looked for, in order: (module name, file)."""
    directory = manifest.directory or Path()
    module = _module_for(manifest.name)
    return [
        ("plugin", directory / "plugin.py"),
        (module, directory / module / "__init__.py"),
        (module, directory / f"{module}.py"),
    ]


def _module_statements(tree: ast.Module) -> Iterator[ast.stmt]:
    """Every statement that runs at module level (under ``if``, ``try``, ``with``...)."""
    pending = list(reversed(tree.body))
    while pending:
        statement = pending.pop()
        yield statement
        pending.extend(reversed(_nested(statement)))


def _plugin_bases(tree: ast.Module) -> set[str]:
    """The dotted names that stand for ``tether.Plugin`` in this module."""
    bases: set[str] = set()
    for node in _module_statements(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "tether":
            bases.update(a.asname or a.name for a in node.names if a.name == "Plugin")
        elif isinstance(node, ast.Import):
            bases.update(f"{a.asname or a.name}.Plugin" for a in node.names if a.name == "tether")
    return bases


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a name or a chain of attributes (read without recursion), else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _plugin_classes(tree: ast.Module) -> list[str]:
    """The classes of ``tree`` deriving from ``tether.Plugin`` (directly or through another
    class of the module), less those that others derive from."""
    plugin = _plugin_bases(tree)
    classes = [s for s in tree.body if isinstance(s, ast.ClassDef)]
    bases_of = {id(c): {d for b in c.bases if (d := _dotted(b)) is not None} for c in classes}
    found: dict[str, set[str]] = {}
    changed = True
    while changed:
        changed = False
        for cls in classes:
            bases = bases_of[id(cls)]
            if cls.name not in found and bases & (plugin | set(found)):
                found[cls.name] = bases
                changed = True
    used_as_base = {b for bases in found.values() for b in bases}
    return [c.name for c in classes if c.name in found and c.name not in used_as_base]


def default_entry(manifest: Manifest) -> str:
    """The entry of a manifest without one, by the convention above (``_EntryError`` if none)."""
    looked: list[str] = []
    for module, file in convention_files(manifest):
        if not file.is_file():
            continue
        looked.append(
            file.name if file.parent == manifest.directory else f"{file.parent.name}/{file.name}"
        )
        classes = _plugin_classes(_parse(file).tree)
        if len(classes) == 1:
            return f"{module}:{classes[0]}"
        if len(classes) > 1:
            raise _EntryError(
                f"no `entry`, and {file} defines {len(classes)} tether.Plugin subclasses: "
                f"{', '.join(classes)}",
                f"set `entry` to the one to load, e.g. 'entry: {module}:{classes[0]}'",
            )
    names = ", ".join(
        f"{p.parent.name}/{p.name}" if p.parent != manifest.directory else p.name
        for _, p in convention_files(manifest)
    )
    found = f" ({', '.join(looked)} define none)" if looked else ""
    raise _EntryError(
        f"no `entry`, and no tether.Plugin subclass found by convention in {names}{found}",
        "add `entry: module:Attribute` to the manifest, or define one class deriving from "
        "tether.Plugin in plugin.py",
    )


def with_default_entry(manifest: Manifest) -> Manifest:
    """``manifest`` with its entry filled in by convention when it gives none, else as it is.

    A ``PluginLoadError`` naming the plugin when no default is found.
    """
    if manifest.entry or manifest.directory is None:
        return manifest
    try:
        entry = default_entry(manifest)
    except _EntryError as exc:
        raise PluginLoadError(
            f"plugin '{manifest.name}': {exc.finding.message}",
            plugin=manifest.name,
            path=manifest.source,
            hint=exc.finding.hint,
        ) from None
    return manifest.model_copy(update={"entry": entry})
