# ruff: noqa: PTH116, PTH118, PTH119, PTH120 - str paths and os.stat on the scan's hot path
# (pathlib nearly doubles the per-plugin cost of looking for manifests: 16 us vs 9 us)
"""Plugin discovery: search paths, entry points and an index cache. Imports no plugin code.

Where plugins are looked for, in order (the first plugin to claim a name wins)::

    ./plugins                        relative to the working directory   origin "cwd"
    ~/.tether/plugins                                                     origin "user"
    /usr/local/lib/tether/plugins                                         origin "system"
    $TETHER_PLUGIN_PATH              colon-separated, empty entries skipped  origin "env"
    --plugin-path DIR ...                                                 origin "cli"
    plugins.directory, then plugins.paths, of the config                  origin "config"
    tether/builtin (the plugins that ship with tether)                    origin "builtin"
    entry points in the group ``tether.plugins`` of installed distributions  "entry-point"

A config with ``plugins.enable_discovery: false`` searches none of the directories
before ``--plugin-path`` (:func:`search_paths_for`): its plugins are those its entries
give a ``path`` to, those that ship with tether and installed entry points.

A search directory holds plugin directories: every immediate subdirectory with a
manifest (``plugin.yaml``, ``plugin.yml``, ``plugin.json`` or ``plugin.toml``) is a
plugin. A search path that itself holds a manifest (or is a manifest file) is one
plugin, and its subdirectories are its own code, not more plugins. Hidden
directories and ``__pycache__`` are skipped; nothing deeper than one level is read.

An entry point's plugin is described by the manifest in its top-level package's
directory when there is one, else by its distribution's metadata. Its ``entry`` is
the entry point's value (``pkg.module:Class``): the code of an installed distribution
is imported by its real module names, so a manifest's own ``entry``, relative to the
plugin's directory, is replaced (``tether plugins package`` writes wheels this way).

Discovery never raises for what it finds: missing search paths, paths that cannot be
searched (too long, unreadable, not a directory), invalid manifests (with every
problem: a file that is not regular, too large or beyond the parser's bounds is one)
and name conflicts are all collected in the :class:`DiscoveryResult`.

The index cache (``tether._index_cache``) keeps every validated manifest keyed on
``(manifest path, size, mtime_ns)``, so a warm scan costs a few ``stat`` calls per
plugin.
"""

from __future__ import annotations

import errno
import importlib.metadata
import importlib.util
import logging
import os
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tether._describe import error_line
from tether._documents import DocumentError, decode, parse, read_bytes
from tether._index_cache import CACHE_FORMAT, RACY_WINDOW_NS, IndexCache, default_cache_path
from tether._manifest import MANIFEST_NAMES, Manifest, document_error, validate_manifest_data
from tether.errors import ManifestError, ManifestProblem, PluginNameConflictError

if TYPE_CHECKING:
    from tether._config import TetherConfig

__all__ = [
    "CACHE_FORMAT",
    "ENTRY_POINT_GROUP",
    "PLUGIN_PATH_ENV",
    "RACY_WINDOW_NS",
    "SYSTEM_PLUGIN_DIRECTORY",
    "DiscoveredPlugin",
    "DiscoveryResult",
    "IndexCache",
    "InvalidPlugin",
    "SearchPath",
    "SearchedPath",
    "default_cache_path",
    "default_search_paths",
    "discover",
    "search_paths_for",
]

ENTRY_POINT_GROUP = "tether.plugins"
PLUGIN_PATH_ENV = "TETHER_PLUGIN_PATH"
SYSTEM_PLUGIN_DIRECTORY = Path("/usr/local/lib/tether/plugins")
# Plugins that ship with tether (the built-in workloads), found like any others.
BUILTIN_PLUGIN_DIRECTORY = Path(__file__).resolve().parent / "builtin"
"""Files modified this close to being read are re-checked by content (covers coarse clocks)."""

_SKIPPED_DIRECTORIES = frozenset({"__pycache__"})
_FORMATS = {
    "plugin.yaml": "yaml",
    "plugin.yml": "yaml",
    "plugin.json": "json",
    "plugin.toml": "toml",
}
_log = logging.getLogger("tether.discovery")
_Outcome = Manifest | ManifestError


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class SearchPath:
    """A place to look for plugins. ``origin``: cwd, user, system, env, cli or config."""

    path: Path
    origin: str


@dataclass(frozen=True, slots=True)
class DiscoveredPlugin:
    """A plugin whose manifest validated. ``location``: its directory or entry-point description."""

    manifest: Manifest
    origin: str
    location: str

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def directory(self) -> Path | None:
        """The plugin's directory; ``None`` for an entry point without a manifest file."""
        return self.manifest.directory


@dataclass(frozen=True, slots=True)
class InvalidPlugin:
    """A plugin whose manifest did not validate; ``error.problems`` lists every reason."""

    location: str
    origin: str
    error: ManifestError


@dataclass(frozen=True, slots=True)
class SearchedPath:
    """What one search path gave.

    ``found`` counts valid plugins read there (a plugin that lost a name conflict
    included), ``invalid`` the invalid ones; a directory already reached through an
    earlier search path counts in neither. ``error`` says why an existing path could
    not be searched (not a directory, no permission).
    """

    path: Path
    origin: str
    exists: bool
    found: int
    invalid: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DiscoveryResult:
    plugins: tuple[DiscoveredPlugin, ...]
    invalid: tuple[InvalidPlugin, ...]
    conflicts: tuple[PluginNameConflictError, ...]
    searched: tuple[SearchedPath, ...]
    cache_hits: int
    cache_misses: int
    _by_name: dict[str, DiscoveredPlugin] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.plugins})

    def get(self, name: str) -> DiscoveredPlugin | None:
        return self._by_name.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)


# --------------------------------------------------------------------------- search paths


def default_search_paths(
    *,
    cwd: Path | None = None,
    home: Path | None = None,
    environ: Mapping[str, str] | None = None,
    plugin_paths: Sequence[Path] = (),
    config_directories: Sequence[Path] = (),
    scan_defaults: bool = True,
) -> list[SearchPath]:
    """The search paths in order, made absolute against ``cwd``; repeats keep the first.

    ``scan_defaults=False`` leaves out the working directory's, the user's, the
    system's and ``$TETHER_PLUGIN_PATH``'s (a config's ``enable_discovery: false``).
    """
    cwd = Path.cwd() if cwd is None else cwd
    home = Path.home() if home is None else home
    environ = os.environ if environ is None else environ
    defaults = [
        (Path("plugins"), "cwd"),
        (home / ".tether" / "plugins", "user"),
        (SYSTEM_PLUGIN_DIRECTORY, "system"),
        *((Path(p), "env") for p in environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p),
    ]
    raw = [
        *(defaults if scan_defaults else ()),
        *((Path(p), "cli") for p in plugin_paths),
        *((Path(p), "config") for p in config_directories),
        (BUILTIN_PLUGIN_DIRECTORY, "builtin"),
    ]
    paths: list[SearchPath] = []
    seen: set[Path] = set()
    for path, origin in raw:
        absolute = _absolute(path, cwd=cwd, home=home)
        if absolute not in seen:
            seen.add(absolute)
            paths.append(SearchPath(absolute, origin))
    return paths


def search_paths_for(
    config: TetherConfig, *, plugin_paths: Sequence[Path] = ()
) -> list[SearchPath]:
    """The search paths a config drives: the defaults (unless ``plugins.enable_discovery``
    is false), ``plugin_paths`` (``--plugin-path``), then ``plugins.directory`` and
    ``plugins.paths``."""
    return default_search_paths(
        plugin_paths=plugin_paths,
        config_directories=config.plugin_directories(),
        scan_defaults=config.plugins.enable_discovery,
    )


def _absolute(path: Path, *, cwd: Path, home: Path) -> Path:
    parts = path.parts
    if parts and parts[0] == "~":
        path = home.joinpath(*parts[1:])
    return cwd / path  # made absolute, not resolved: a symlinked search path keeps its name


# --------------------------------------------------------------------------- candidates


@dataclass(frozen=True, slots=True)
class _ManifestFile:
    path: str
    stat: os.stat_result


@dataclass(frozen=True, slots=True)
class _Candidate:
    """One would-be plugin, before its manifest is read."""

    location: str
    origin: str
    real: str | None  # resolved directory, to skip a directory reached twice
    manifests: tuple[_ManifestFile, ...] = ()
    entry: str | None = None  # entry-point value: the entry, whatever the manifest says
    outcome: _Outcome | None = None  # known without reading a manifest file


@dataclass(frozen=True, slots=True)
class _Scan:
    exists: bool
    candidates: tuple[_Candidate, ...] = ()
    error: str | None = None


def _reason(exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"not a usable path ({error_line(exc)})"  # a NUL byte, or a path that cannot be encoded


def _unreadable(path: str, exc: OSError) -> ManifestError:
    return ManifestError(
        Path(path), [ManifestProblem(Path(path), "", f"cannot read: {_reason(exc)}")]
    )


def _manifests_in(directory: str) -> tuple[_ManifestFile, ...]:
    """Every manifest directly inside ``directory``; raise ``OSError`` if unreadable.

    Anything by a manifest's name counts (a FIFO, a device, a directory): reading it is
    refused with what it is, so the plugin is listed as invalid, not silently missing.
    """
    found = []
    for name in MANIFEST_NAMES:
        path = os.path.join(directory, name)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        found.append(_ManifestFile(path, st))
    return tuple(found)


def _directory_candidate(directory: str, real: str, origin: str) -> _Candidate | None:
    try:
        manifests = _manifests_in(directory)
    except OSError as exc:
        return _Candidate(directory, origin, real, outcome=_unreadable(directory, exc))
    return _Candidate(directory, origin, real, manifests) if manifests else None


def _scan(search: SearchPath) -> _Scan:
    path = os.fspath(search.path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return _Scan(exists=False)
    except (OSError, ValueError) as exc:  # too long, a loop of links, no permission, a NUL
        return _Scan(exists=False, error=f"cannot search: {_reason(exc)}")
    try:
        return _Scan(exists=True, candidates=_candidates_at(path, st, search.origin))
    except (OSError, ValueError) as exc:
        return _Scan(exists=True, error=f"cannot read: {_reason(exc)}")


def _candidates_at(path: str, st: os.stat_result, origin: str) -> tuple[_Candidate, ...]:
    """The plugins a search path holds: itself, or its subdirectories with manifests."""
    if not stat.S_ISDIR(st.st_mode) and os.path.basename(path) in _FORMATS:
        directory = os.path.dirname(path)
        manifest = _ManifestFile(path, st)
        return (_Candidate(directory, origin, os.path.realpath(directory), (manifest,)),)
    if not stat.S_ISDIR(st.st_mode):
        reason = "not a directory (expected a directory of plugins or a plugin directory)"
        raise NotADirectoryError(errno.ENOTDIR, reason)
    real = os.path.realpath(path)
    manifests = _manifests_in(path)
    if manifests:
        return (_Candidate(path, origin, real, manifests),)
    return tuple(_children(path, real, origin))


def _children(path: str, real: str, origin: str) -> Iterator[_Candidate]:
    with os.scandir(path) as entries:
        listed = sorted(entries, key=lambda e: e.name)
    for entry in listed:
        if entry.name.startswith(".") or entry.name in _SKIPPED_DIRECTORIES:
            continue
        try:
            if not entry.is_dir():
                continue
            child_real = (
                os.path.realpath(entry.path)
                if entry.is_symlink()
                else os.path.join(real, entry.name)
            )
        except OSError:
            continue
        candidate = _directory_candidate(entry.path, child_real, origin)
        if candidate is not None:
            yield candidate


# --------------------------------------------------------------------------- entry points


def _entry_point_candidates() -> Iterator[_Candidate]:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None:  # always set by entry_points(); None only for hand-made ones
            yield _entry_point_candidate(ep, ep.dist)


def _entry_point_candidate(
    ep: importlib.metadata.EntryPoint, dist: importlib.metadata.Distribution
) -> _Candidate:
    location = f"{dist.name} {dist.version} (entry point {ep.name})"
    package = _package_directory(dist, ep.module.partition(".")[0])
    if package is not None:
        candidate = _directory_candidate(package, os.path.realpath(package), "entry-point")
        if candidate is not None:
            return replace(candidate, location=location, entry=ep.value)
    return _Candidate(location, "entry-point", None, outcome=_synthesized(ep, dist, location))


def _package_directory(dist: importlib.metadata.Distribution, top: str) -> str | None:
    """The directory of the top-level package ``top``, found without importing it."""
    if any(len(f.parts) > 1 and f.parts[0] == top for f in dist.files or ()):
        located = str(dist.locate_file(top))
        return located if Path(located).is_dir() else None
    try:  # editable installs list no package files: ask the finders (runs no package code)
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    return locations[0] if locations and Path(locations[0]).is_dir() else None


def _first(dist: importlib.metadata.Distribution, key: str) -> str | None:
    values = dist.metadata.get_all(key)
    return str(values[0]) if values else None


def _synthesized(
    ep: importlib.metadata.EntryPoint, dist: importlib.metadata.Distribution, location: str
) -> _Outcome:
    """A manifest made from the distribution's metadata, validated like a manifest file."""
    data = {
        "name": ep.name,
        "version": dist.version,
        "description": _first(dist, "Summary") or "",
        "author": _first(dist, "Author") or _first(dist, "Author-email") or "",
        "entry": ep.value,
    }
    try:
        manifest = validate_manifest_data(data, path=_metadata_path(dist, location))
    except ManifestError as exc:
        return exc
    return manifest.model_copy(update={"source": None})  # no manifest file, no directory


def _metadata_path(dist: importlib.metadata.Distribution, location: str) -> Path:
    """The metadata file of ``dist``, for error messages (``location`` if not listed)."""
    for f in dist.files or ():
        if f.name in {"METADATA", "PKG-INFO"} and f.parent.name.endswith(
            (".dist-info", ".egg-info")
        ):
            return Path(str(f.locate()))
    return Path(location)


# --------------------------------------------------------------------------- reading manifests


def _parse(path: str, content: bytes, entry: str | None) -> _Outcome:
    file = Path(path)
    try:
        document = parse(decode(content), _FORMATS[os.path.basename(path)])
        data = document.data
        if entry is not None and isinstance(data, dict):  # the entry point's value wins
            data = {**data, "entry": entry}
        return validate_manifest_data(data, path=file, lines=document.lines)
    except DocumentError as exc:
        return document_error(file, exc)
    except ManifestError as exc:
        return exc


def _several(candidate: _Candidate) -> ManifestError:
    first = Path(candidate.manifests[0].path)
    names = ", ".join(Path(m.path).name for m in candidate.manifests)
    message = f"more than one manifest in {candidate.location}: {names}"
    return ManifestError(first, [ManifestProblem(first, "", message)])


class _Reader:
    """Reads candidates' manifests through the cache, counting hits and misses."""

    def __init__(self, index: IndexCache | None) -> None:
        self.index = index
        self.hits = 0
        self.misses = 0

    def read(self, candidate: _Candidate) -> _Outcome:
        if candidate.outcome is not None:
            return candidate.outcome
        if len(candidate.manifests) > 1:
            return _several(candidate)
        return self._read_file(candidate.manifests[0], candidate.entry)

    def _read_file(self, file: _ManifestFile, entry: str | None) -> _Outcome:
        if self.index is not None:
            cached = self.index.lookup(file.path, file.stat, entry=entry)
            if cached is not None:
                self.hits += 1
                return cached
        self.misses += 1
        started = time.time_ns()
        try:
            content = read_bytes(file.path, st=file.stat)
        except DocumentError as exc:
            return document_error(Path(file.path), exc)
        outcome = _parse(file.path, content, entry)
        if self.index is not None:
            self.index.store(file.path, file.stat, content, outcome, entry=entry, read_ns=started)
        return outcome


# --------------------------------------------------------------------------- discovery


class _Collector:
    """Applies the rules: a directory counts once, the first plugin to claim a name wins."""

    def __init__(self) -> None:
        self.plugins: dict[str, DiscoveredPlugin] = {}
        self.invalid: list[InvalidPlugin] = []
        self.conflicts: list[PluginNameConflictError] = []
        self._directories: set[str] = set()

    def is_new(self, candidate: _Candidate) -> bool:
        if candidate.real is None:
            return True
        if candidate.real in self._directories:
            return False
        self._directories.add(candidate.real)
        return True

    def add(self, candidate: _Candidate, outcome: _Outcome) -> bool:
        """Record the outcome; ``True`` when the manifest was valid."""
        if isinstance(outcome, ManifestError):
            self.invalid.append(InvalidPlugin(candidate.location, candidate.origin, outcome))
            return False
        first = self.plugins.get(outcome.name)
        if first is not None:
            conflict = PluginNameConflictError(outcome.name, first.location, candidate.location)
            self.conflicts.append(conflict)
        else:
            self.plugins[outcome.name] = DiscoveredPlugin(
                outcome, candidate.origin, candidate.location
            )
        return True


def discover(
    search_paths: Sequence[SearchPath],
    *,
    entry_points: bool = True,
    cache: IndexCache | None = None,
) -> DiscoveryResult:
    """Find every plugin in ``search_paths`` (then entry points) without importing any of them."""
    reader = _Reader(cache)
    collector = _Collector()
    if cache is not None:
        cache.begin_scan()
    searched = [_search(path, reader, collector) for path in search_paths]
    if entry_points:
        for candidate in _entry_point_candidates():
            if collector.is_new(candidate):
                collector.add(candidate, reader.read(candidate))
    if cache is not None:
        cache.end_scan()
    return DiscoveryResult(
        plugins=tuple(collector.plugins.values()),
        invalid=tuple(collector.invalid),
        conflicts=tuple(collector.conflicts),
        searched=tuple(searched),
        cache_hits=reader.hits,
        cache_misses=reader.misses,
    )


def _search(search: SearchPath, reader: _Reader, collector: _Collector) -> SearchedPath:
    scan = _scan(search)
    found = invalid = 0
    for candidate in scan.candidates:
        if not collector.is_new(candidate):
            continue
        if collector.add(candidate, reader.read(candidate)):
            found += 1
        else:
            invalid += 1
    return SearchedPath(search.path, search.origin, scan.exists, found, invalid, scan.error)
