"""The discovery index cache: validated manifests keyed on (path, size, mtime_ns).

A warm scan costs two ``stat`` calls per plugin (its directory and its manifest) and
one read of the cache file: every validated manifest (or its problems) is kept on
disk (``$TETHER_CACHE_DIR/index.json`` or the XDG cache) and taken back when the
manifest file's path, size and modification time are unchanged; each plugin
directory's manifest names are kept with its inode and modification time, which
change when a name in it is added, removed or renamed. A file or directory modified
within :data:`RACY_WINDOW_NS` of the moment it was read could change again without
changing its timestamp; such manifests are confirmed against a digest of the file's
bytes (a read, still no parse), and such directories probed again, until they are older.

A cache hit hands back the manifest's name and a :class:`CachedManifest`: the
manifest is rebuilt from its JSON text (:mod:`tether._rebuild`, no validation again)
when the plugin's ``manifest`` is first used, so a scan pays only for the manifests
its caller reads.

The file is two lines: a header (format, tether version, a key of the manifest
model's fields, and a digest of the second line) and the body (manifests and
directories). Since cached manifests are not validated again, the body is trusted
only when the digest matches: a file cut short, edited by hand or written by a build
whose manifest model differs is ignored as a whole.

Nothing in a manifest or in the cache file can break a scan: an entry only ever stands
for a regular file, files are read through :func:`tether._documents.read_bytes` (never
blocking on a FIFO or a device), and a cache file or entry that does not read back is a
miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import from_json

from tether._describe import error_line
from tether._documents import DocumentError, read_bytes
from tether._manifest import Manifest
from tether._rebuild import builder, schema_key
from tether.errors import ManifestError, ManifestProblem

__all__ = ["CACHE_FORMAT", "RACY_WINDOW_NS", "CachedManifest", "IndexCache", "default_cache_path"]

_log = logging.getLogger("tether.discovery")

CACHE_FORMAT = 2
RACY_WINDOW_NS = 2_000_000_000


def default_cache_path(
    *, environ: Mapping[str, str] | None = None, home: Path | None = None
) -> Path:
    """Where the index cache lives.

    ``$TETHER_CACHE_DIR/index.json``, else ``$XDG_CACHE_HOME/tether/index.json``, else
    ``~/.cache/tether/index.json``.
    """
    environ = os.environ if environ is None else environ
    if environ.get("TETHER_CACHE_DIR"):
        return Path(environ["TETHER_CACHE_DIR"]) / "index.json"
    if environ.get("XDG_CACHE_HOME"):
        return Path(environ["XDG_CACHE_HOME"]) / "tether" / "index.json"
    return (Path.home() if home is None else home) / ".cache" / "tether" / "index.json"


_Problem = tuple[str, str, str, int | None]


@dataclass(slots=True)
class _Entry:
    size: int
    mtime_ns: int
    entry: str | None
    digest: str
    checked_ns: int  # when the bytes behind ``digest`` were read (or last confirmed)
    name: str | None = None  # the valid manifest's name, readable without rebuilding it
    manifest: str | None = None  # the valid manifest's JSON dump (text), without ``source``
    problems: list[_Problem] | None = None
    built: Manifest | None = field(default=None, repr=False)  # in memory only

    def matches(self, st: os.stat_result, entry: str | None) -> bool:
        return self.size == st.st_size and self.mtime_ns == st.st_mtime_ns and self.entry == entry

    @property
    def is_racy(self) -> bool:
        return self.mtime_ns + RACY_WINDOW_NS > self.checked_ns

    def to_json(self) -> list[object]:
        fields = (self.size, self.mtime_ns, self.entry, self.digest, self.checked_ns)
        return [*fields, self.name, self.manifest, self.problems]


def _entry_from_json(raw: object) -> _Entry | None:
    """An entry read back from the cache file, or ``None`` if it has the wrong shape."""
    match raw:
        case [
            int(size),
            int(mtime),
            str() | None as entry,
            str(digest),
            int(checked),
            str() | None as name,
            str() | None as manifest,
            list() | None as problems,
        ]:
            if (problems is None) == (manifest is None) or (name is None) != (manifest is None):
                return None  # an entry holds a named manifest or its problems
            parsed = None if problems is None else _problems_from_json(problems)
            if problems is not None and parsed is None:
                return None
            return _Entry(size, mtime, entry, digest, checked, name, manifest, parsed)
        case _:
            return None


def _problems_from_json(raw: list[object]) -> list[_Problem] | None:
    problems = []
    for item in raw:
        match item:
            case [str(path), str(name), str(message), int() | None as line]:
                problems.append((path, name, message, line))
            case _:
                return None
    return problems


@dataclass(slots=True)
class _Listing:
    """The manifest names a plugin directory held when its (inode, mtime) were these."""

    inode: int
    mtime_ns: int
    checked_ns: int  # when the directory was probed
    names: tuple[str, ...]

    def matches(self, st: os.stat_result) -> bool:
        return (
            self.mtime_ns == st.st_mtime_ns
            and self.inode == st.st_ino
            and self.mtime_ns + RACY_WINDOW_NS <= self.checked_ns
        )

    def to_json(self) -> list[object]:
        return [self.inode, self.mtime_ns, self.checked_ns, list(self.names)]


def _listing_from_json(raw: object) -> _Listing | None:
    match raw:
        case [int(inode), int(mtime), int(checked), list(names)] if all(
            isinstance(n, str) for n in names
        ):
            return _Listing(inode, mtime, checked, tuple(names))
        case _:
            return None


def _digest(content: bytes) -> str:
    return hashlib.blake2b(content, digest_size=16).hexdigest()


class CachedManifest:
    """A valid manifest in the index: its name at once, the :class:`Manifest` when asked.

    A warm scan hands these to :mod:`tether._discovery`, which builds the manifest the
    first time a plugin's ``manifest`` is used: listing a thousand plugins to find the
    three a config names rebuilds three.
    """

    __slots__ = ("_entry", "name", "path")

    def __init__(self, entry: _Entry, path: str) -> None:
        if entry.name is None:
            raise ValueError("a cached manifest has a name")
        self.name: str = entry.name
        self.path = path  # the manifest file
        self._entry = entry

    @property
    def entry(self) -> str | None:
        """The entry-point value injected into the manifest, if it had no entry."""
        return self._entry.entry

    def build(self) -> Manifest:
        """The manifest (built once per process); an exception if the entry is unusable."""
        entry = self._entry
        if entry.built is None:
            if entry.manifest is None:
                raise ValueError("cache entry holds no manifest")
            entry.built = _rebuild(from_json(entry.manifest), Path(self.path))
        return entry.built


class IndexCache:
    """Validated manifests (and invalid ones' problems) keyed on path, size and mtime.

    ``discover`` loads it on first use, looks every manifest up, and saves it when
    something changed, dropping entries for manifests the scan did not see. A missing,
    corrupt, unreadable or stale-format file is ignored and rebuilt, never an error;
    a cache that cannot be written is logged at debug level and otherwise ignored.
    """

    def __init__(self, path: Path | None = None) -> None:
        self._path = default_cache_path() if path is None else Path(path)
        self._entries: dict[str, _Entry] = {}
        self._seen: set[str] = set()
        self._listings: dict[str, _Listing] = {}
        self._seen_directories: set[str] = set()
        self._loaded = False
        self._changed = False

    @property
    def path(self) -> Path:
        return self._path

    def __len__(self) -> int:
        return len(self._entries)

    def load(self) -> None:
        """Read the cache file, replacing what is in memory; a bad file leaves it empty."""
        self._entries = {}
        self._listings = {}
        self._loaded = True
        self._changed = False
        try:
            body = _read_body(read_bytes(self._path, limit=None))
        except DocumentError as exc:
            if self._path.exists():
                _log.debug("ignoring unreadable index cache %s: %s", self._path, exc)
            return
        except Exception as exc:  # any JSON the file holds, however broken or deep
            _log.debug("ignoring unreadable index cache %s: %s", self._path, error_line(exc))
            return
        if body is None:
            _log.debug(
                "ignoring index cache %s: another format, tether version or manifest model, "
                "or entries that do not match their digest",
                self._path,
            )
            return
        manifests, directories = body
        for path, raw in manifests.items():
            entry = _entry_from_json(raw)
            if entry is not None:
                self._entries[path] = entry
        for path, raw in directories.items():
            listing = _listing_from_json(raw)
            if listing is not None:
                self._listings[path] = listing

    def save(self) -> bool:
        """Write the cache atomically if it changed; ``True`` when written."""
        if not self._changed:
            return False
        try:
            body = json.dumps(
                {
                    "manifests": {path: e.to_json() for path, e in self._entries.items()},
                    "directories": {path: d.to_json() for path, d in self._listings.items()},
                },
                separators=(",", ":"),
            ).encode()
            header = json.dumps({**_header(), "digest": _digest(body)}, separators=(",", ":"))
            _write_atomically(self._path, header.encode() + b"\n" + body)
        except (OSError, ValueError, TypeError) as exc:
            _log.debug("cannot write index cache %s: %s", self._path, error_line(exc))
            return False
        self._changed = False
        return True

    def begin_scan(self) -> None:
        """Start counting which manifests a scan sees (loads the file on first use)."""
        if not self._loaded:
            self.load()
        self._seen = set()
        self._seen_directories = set()

    def end_scan(self) -> bool:
        """Drop entries the scan did not see; save if anything changed."""
        unseen = self._entries.keys() - self._seen
        for path in unseen:
            del self._entries[path]
        gone = self._listings.keys() - self._seen_directories
        for path in gone:
            del self._listings[path]
        self._changed = self._changed or bool(unseen) or bool(gone)
        return self.save()

    def manifest_names(self, directory: str, st: os.stat_result) -> tuple[str, ...] | None:
        """The manifest names ``directory`` (stat ``st``) held when last probed, or ``None``.

        A directory's modification time changes when a name in it is added, removed or
        renamed, so an unchanged one still holds the same manifests; one modified within
        :data:`RACY_WINDOW_NS` of its probe is probed again.
        """
        self._seen_directories.add(directory)
        cached = self._listings.get(directory)
        return cached.names if cached is not None and cached.matches(st) else None

    def store_names(
        self, directory: str, st: os.stat_result, names: tuple[str, ...], *, probed_ns: int
    ) -> None:
        """Remember that ``directory`` (stat ``st``, taken before the probe) held ``names``."""
        self._seen_directories.add(directory)
        self._listings[directory] = _Listing(st.st_ino, st.st_mtime_ns, probed_ns, names)
        self._changed = True

    def lookup(
        self, path: str, st: os.stat_result, *, entry: str | None = None
    ) -> Manifest | ManifestError | CachedManifest | None:
        """The cached outcome for this manifest file, or ``None`` (a miss).

        A valid manifest comes back as a :class:`CachedManifest` (its name, and the
        manifest when asked), or as the manifest itself once built in this process.
        """
        self._seen.add(path)
        cached = self._entries.get(path)
        if cached is None or not cached.matches(st, entry) or not stat.S_ISREG(st.st_mode):
            return None
        if cached.is_racy and not self._confirm(path, cached):
            return None
        if cached.built is not None:  # a repeated scan in this process: nothing to rebuild
            return cached.built
        if cached.problems is not None:
            problems = [ManifestProblem(Path(p), f, m, line) for p, f, m, line in cached.problems]
            return ManifestError(Path(path), problems)
        return CachedManifest(cached, path)

    def store(
        self,
        path: str,
        st: os.stat_result,
        content: bytes,
        outcome: Manifest | ManifestError,
        *,
        entry: str | None = None,
        read_ns: int,
    ) -> None:
        """Remember the outcome of reading ``content`` (stat ``st``) at ``read_ns``."""
        self._seen.add(path)
        record = _Entry(st.st_size, st.st_mtime_ns, entry, _digest(content), read_ns)
        if isinstance(outcome, ManifestError):
            record.problems = [
                (os.fspath(p.path), p.field, p.message, p.line) for p in outcome.problems
            ]
        else:
            record.name, record.manifest, record.built = outcome.name, _cacheable(outcome), outcome
            if record.manifest is None:
                self._changed = self._changed or self._entries.pop(path, None) is not None
                return
        self._entries[path] = record
        self._changed = True

    def _confirm(self, path: str, cached: _Entry) -> bool:
        """Check a recently modified file's bytes against the digest."""
        started = time.time_ns()
        try:
            content = read_bytes(path)
        except DocumentError:
            return False
        if _digest(content) != cached.digest:
            return False
        cached.checked_ns = started
        self._changed = True
        return True


def _header() -> dict[str, object]:
    """What a cache file must have been written with to be read back (but its digest)."""
    from tether._version import __version__

    return {"format": CACHE_FORMAT, "tether": __version__, "manifest": schema_key(Manifest)}


_Body = tuple[dict[str, object], dict[str, object]]


def _read_body(content: bytes) -> _Body | None:
    """The manifests and directories of a cache file, or ``None`` if this build cannot
    trust it."""
    head, newline, body = content.partition(b"\n")
    header = json.loads(head)
    if not (newline and isinstance(header, dict)):
        return None
    if {k: v for k, v in header.items() if k != "digest"} != _header():
        return None
    if header.get("digest") != _digest(body):
        return None
    document = from_json(body)  # pydantic's parser: a fifth faster than json.loads here
    match document:
        case {"manifests": dict(manifests), "directories": dict(directories)}:
            return manifests, directories
        case _:
            return None


def _write_atomically(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".index-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- rebuilding manifests

# A cached manifest is kept as the text of its JSON dump (``exclude_unset``): loading
# the file then parses strings, not a thousand nested documents, and a manifest is
# parsed and rebuilt by ``tether._rebuild`` (no validation again) only when used.
# Measured on the discovery benchmark's manifests (dependencies, permissions, config
# schema, hooks, events, exports), a rebuild costs about half of
# ``Manifest.model_validate_json`` (whose checks run in Python). The file's digest
# stands for the validation skipped.
# ``_cacheable`` only caches a manifest whose rebuilt copy, read back from JSON text,
# equals the original (values and fields set, at every level), so what JSON loses
# (tuples or dates in free-form config defaults, non-string keys, NaN) falls back to
# parsing the file, never to a different manifest.


def _rebuild(data: object, source: Path) -> Manifest:
    if not isinstance(data, dict):
        raise TypeError("a cached manifest is a JSON object")
    return builder(Manifest)({**data, "source": source})


def _cacheable(manifest: Manifest) -> str | None:
    """The manifest's JSON dump as text, or ``None`` if rebuilding would not give it back."""
    if manifest.source is None:
        return None
    try:
        text = json.dumps(manifest.model_dump(mode="json", exclude_unset=True))
        rebuilt = _rebuild(from_json(text), manifest.source)
        same = rebuilt == manifest and rebuilt.model_fields_set == manifest.model_fields_set
    except Exception:  # what does not survive JSON is parsed from its file on the next scan
        return None
    return text if same and _dumps_match(rebuilt, manifest) else None


def _dumps_match(rebuilt: BaseModel, original: BaseModel) -> bool:
    """Nested models were given the same fields (``==`` does not compare fields set)."""
    return rebuilt.model_dump(exclude_unset=True) == original.model_dump(exclude_unset=True)
