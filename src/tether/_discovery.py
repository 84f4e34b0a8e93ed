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
``(manifest path, size, mtime_ns)`` and each plugin directory's manifest names, so a
warm scan costs two ``stat`` calls per plugin; a plugin's manifest is rebuilt from the
cache when its ``manifest`` is first used.
"""

from __future__ import annotations

import errno
import functools
import importlib.metadata
import importlib.util
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tether._describe import error_line
from tether._documents import DocumentError, decode, parse, read_bytes
from tether._index_cache import (
    CACHE_FORMAT,
    RACY_WINDOW_NS,
    CachedManifest,
    IndexCache,
    default_cache_path,
)
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
_Found = _Outcome | CachedManifest  # a valid manifest from the index, built when used


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class SearchPath:
    """A place to look for plugins. ``origin``: cwd, user, system, env, cli or config."""

    path: Path
    origin: str


class DiscoveredPlugin:
    """A plugin whose manifest validated. ``location``: its directory or entry-point description.

    Immutable, compared by manifest, origin and location. From a warm scan the manifest is
    rebuilt from the index cache the first time ``manifest`` is used (``name`` needs no
    rebuilding): a scan costs a plugin a stat or two, and only the plugins a command
    reads pay for their manifests.
    """

    __slots__ = ("_load", "_location", "_manifest", "_name", "_origin")

    def __init__(self, manifest: Manifest, origin: str, location: str) -> None:
        self._start(manifest.name, manifest, lambda: manifest, origin, location)

    @classmethod
    def deferred(
        cls, name: str, load: Callable[[], Manifest], origin: str, location: str
    ) -> DiscoveredPlugin:
        """A plugin named ``name`` whose manifest ``load()`` gives when first used."""
        plugin = cls.__new__(cls)
        plugin._start(name, None, load, origin, location)  # noqa: SLF001 - its own class
        return plugin

    def _start(
        self,
        name: str,
        manifest: Manifest | None,
        load: Callable[[], Manifest],
        origin: str,
        location: str,
    ) -> None:
        self._name, self._manifest, self._load = name, manifest, load
        self._origin, self._location = origin, location

    @property
    def manifest(self) -> Manifest:
        manifest = self._manifest
        if manifest is None:
            manifest = self._manifest = self._load()
        return manifest

    @property
    def name(self) -> str:
        return self._name

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def location(self) -> str:
        return self._location

    @property
    def directory(self) -> Path | None:
        """The plugin's directory; ``None`` for an entry point without a manifest file."""
        return self.manifest.directory

    def _key(self) -> tuple[Manifest, str, str]:
        return (self.manifest, self._origin, self._location)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DiscoveredPlugin):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"DiscoveredPlugin(manifest={self.manifest!r}, origin={self._origin!r}, "
            f"location={self._location!r})"
        )


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


def _manifests_in(directory: str, index: IndexCache | None) -> tuple[_ManifestFile, ...]:
    """Every manifest directly inside ``directory``; raise ``OSError`` if unreadable.

    Anything by a manifest's name counts (a FIFO, a device, a directory): reading it is
    refused with what it is, so the plugin is listed as invalid, not silently missing.
    With an index, a directory unchanged since it was last probed costs one ``stat`` of
    its own and one per manifest it holds, instead of one per manifest name.
    """
    if index is None:
        return _probe(directory)
    try:
        st = os.stat(directory)
    except (FileNotFoundError, NotADirectoryError):
        return ()  # gone since it was listed
    names = index.manifest_names(directory, st)
    if names is not None:
        paths = [os.path.join(directory, name) for name in names]
        try:
            return tuple(_ManifestFile(path, os.stat(path)) for path in paths)
        except (FileNotFoundError, NotADirectoryError):
            pass  # gone within the directory's timestamp: probe it again
    probed_ns = time.time_ns()
    found = _probe(directory)
    names = tuple(os.path.basename(m.path) for m in found)
    index.store_names(directory, st, names, probed_ns=probed_ns)
    return found


def _probe(directory: str) -> tuple[_ManifestFile, ...]:
    found = []
    for name in MANIFEST_NAMES:
        path = os.path.join(directory, name)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        found.append(_ManifestFile(path, st))
    return tuple(found)


def _directory_candidate(
    directory: str, real: str, origin: str, index: IndexCache | None
) -> _Candidate | None:
    try:
        manifests = _manifests_in(directory, index)
    except OSError as exc:
        return _Candidate(directory, origin, real, outcome=_unreadable(directory, exc))
    return _Candidate(directory, origin, real, manifests) if manifests else None


def _scan(search: SearchPath, index: IndexCache | None) -> _Scan:
    path = os.fspath(search.path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return _Scan(exists=False)
    except (OSError, ValueError) as exc:  # too long, a loop of links, no permission, a NUL
        return _Scan(exists=False, error=f"cannot search: {_reason(exc)}")
    try:
        return _Scan(exists=True, candidates=_candidates_at(path, st, search.origin, index))
    except (OSError, ValueError) as exc:
        return _Scan(exists=True, error=f"cannot read: {_reason(exc)}")


def _candidates_at(
    path: str, st: os.stat_result, origin: str, index: IndexCache | None
) -> tuple[_Candidate, ...]:
    """The plugins a search path holds: itself, or its subdirectories with manifests."""
    if not stat.S_ISDIR(st.st_mode) and os.path.basename(path) in _FORMATS:
        directory = os.path.dirname(path)
        manifest = _ManifestFile(path, st)
        return (_Candidate(directory, origin, os.path.realpath(directory), (manifest,)),)
    if not stat.S_ISDIR(st.st_mode):
        reason = "not a directory (expected a directory of plugins or a plugin directory)"
        raise NotADirectoryError(errno.ENOTDIR, reason)
    real = os.path.realpath(path)
    manifests = _manifests_in(path, index)
    if manifests:
        return (_Candidate(path, origin, real, manifests),)
    return tuple(_children(path, real, origin, index))


def _children(path: str, real: str, origin: str, index: IndexCache | None) -> Iterator[_Candidate]:
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
        candidate = _directory_candidate(entry.path, child_real, origin, index)
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
        real = os.path.realpath(package)
        candidate = _directory_candidate(package, real, "entry-point", index=None)
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

    def read(self, candidate: _Candidate) -> _Found:
        if candidate.outcome is not None:
            return candidate.outcome
        if len(candidate.manifests) > 1:
            return _several(candidate)
        return self._read_file(candidate.manifests[0], candidate.entry)

    def _read_file(self, file: _ManifestFile, entry: str | None) -> _Found:
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

    def add(self, candidate: _Candidate, outcome: _Found) -> bool:
        """Record the outcome; ``True`` when the manifest was valid."""
        if isinstance(outcome, ManifestError):
            self.invalid.append(InvalidPlugin(candidate.location, candidate.origin, outcome))
            return False
        first = self.plugins.get(outcome.name)
        if first is not None:
            conflict = PluginNameConflictError(outcome.name, first.location, candidate.location)
            self.conflicts.append(conflict)
        elif isinstance(outcome, CachedManifest):
            load = functools.partial(_rebuilt, outcome)
            self.plugins[outcome.name] = DiscoveredPlugin.deferred(
                outcome.name, load, candidate.origin, candidate.location
            )
        else:
            self.plugins[outcome.name] = DiscoveredPlugin(
                outcome, candidate.origin, candidate.location
            )
        return True


def _rebuilt(cached: CachedManifest) -> Manifest:
    """The manifest of a cache hit; read from its file if the entry cannot be rebuilt."""
    try:
        return cached.build()
    except Exception as exc:  # a bug: an entry this build wrote but cannot read back
        _log.debug("cannot rebuild %s from the index cache: %s", cached.path, error_line(exc))
    try:
        outcome = _parse(cached.path, read_bytes(cached.path), cached.entry)
    except DocumentError as exc:
        outcome = document_error(Path(cached.path), exc)
    if isinstance(outcome, ManifestError):
        raise outcome  # the file changed since the scan and is no longer valid
    return outcome


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
    scan = _scan(search, reader.index)
    found = invalid = 0
    for candidate in scan.candidates:
        if not collector.is_new(candidate):
            continue
        if collector.add(candidate, reader.read(candidate)):
            found += 1
        else:
            invalid += 1
    return SearchedPath(search.path, search.origin, scan.exists, found, invalid, scan.error)
