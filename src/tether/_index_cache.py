"""The discovery index cache: validated manifests keyed on (path, size, mtime_ns).

A warm scan costs a few ``stat`` calls per plugin: every validated manifest (or its
problems) is kept on disk (``$TETHER_CACHE_DIR/index.json`` or the XDG cache) and taken
back when the manifest file's path, size and modification time are unchanged. A file
modified within :data:`RACY_WINDOW_NS` of the moment it was read could change again
without changing its size or timestamp; such entries are confirmed against a digest of
the file's bytes (a read, still no parse) until they are older.

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

from tether._describe import error_line
from tether._documents import DocumentError, read_bytes
from tether._manifest import Manifest
from tether.errors import ManifestError, ManifestProblem

__all__ = ["CACHE_FORMAT", "RACY_WINDOW_NS", "IndexCache", "default_cache_path"]

_log = logging.getLogger("tether.discovery")

CACHE_FORMAT = 1
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


@dataclass(slots=True)
class _Entry:
    size: int
    mtime_ns: int
    entry: str | None
    digest: str
    checked_ns: int  # when the bytes behind ``digest`` were read (or last confirmed)
    manifest: str | None = None  # the manifest as JSON, without ``source``
    problems: list[tuple[str, str, str, int | None]] | None = None
    built: Manifest | None = field(default=None, repr=False)  # in memory only

    def matches(self, st: os.stat_result, entry: str | None) -> bool:
        return self.size == st.st_size and self.mtime_ns == st.st_mtime_ns and self.entry == entry

    @property
    def is_racy(self) -> bool:
        return self.mtime_ns + RACY_WINDOW_NS > self.checked_ns

    def to_json(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _ENTRY_FIELDS}


_ENTRY_FIELDS = ("size", "mtime_ns", "entry", "digest", "checked_ns", "manifest", "problems")


def _entry_from_json(raw: object) -> _Entry | None:
    """An entry read back from the cache file, or ``None`` if it has the wrong shape."""
    match raw:
        case {
            "size": int(size),
            "mtime_ns": int(mtime),
            "entry": str() | None as entry,
            "digest": str(digest),
            "checked_ns": int(checked),
            "manifest": str() | None as manifest,
            "problems": list() | None as problems,
        }:
            parsed = _problems_from_json(problems) if problems is not None else None
            record = _Entry(size, mtime, entry, digest, checked, manifest, parsed)
            return record if (manifest is None) != (parsed is None) else None
        case _:
            return None


def _problems_from_json(raw: list[object]) -> list[tuple[str, str, str, int | None]] | None:
    problems = []
    for item in raw:
        match item:
            case [str(path), str(name), str(message), int() | None as line]:
                problems.append((path, name, message, line))
            case _:
                return None
    return problems


def _digest(content: bytes) -> str:
    return hashlib.blake2b(content, digest_size=16).hexdigest()


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
        self._loaded = True
        self._changed = False
        try:
            document = json.loads(read_bytes(self._path, limit=None))
        except DocumentError as exc:
            if self._path.exists():
                _log.debug("ignoring unreadable index cache %s: %s", self._path, exc)
            return
        except Exception as exc:  # any JSON the file holds, however broken or deep
            _log.debug("ignoring unreadable index cache %s: %s", self._path, error_line(exc))
            return
        if not _is_current(document):
            _log.debug("ignoring index cache %s: other format or tether version", self._path)
            return
        for path, raw in document["entries"].items():
            entry = _entry_from_json(raw)
            if entry is not None:
                self._entries[path] = entry

    def save(self) -> bool:
        """Write the cache atomically if it changed; ``True`` when written."""
        if not self._changed:
            return False
        document = {"format": CACHE_FORMAT, "tether": _tether_version()}
        document["entries"] = {path: e.to_json() for path, e in self._entries.items()}
        try:
            _write_atomically(self._path, json.dumps(document, separators=(",", ":")).encode())
        except (OSError, ValueError) as exc:
            _log.debug("cannot write index cache %s: %s", self._path, error_line(exc))
            return False
        self._changed = False
        return True

    def begin_scan(self) -> None:
        """Start counting which manifests a scan sees (loads the file on first use)."""
        if not self._loaded:
            self.load()
        self._seen = set()

    def end_scan(self) -> bool:
        """Drop entries the scan did not see; save if anything changed."""
        unseen = self._entries.keys() - self._seen
        for path in unseen:
            del self._entries[path]
        self._changed = self._changed or bool(unseen)
        return self.save()

    def lookup(
        self, path: str, st: os.stat_result, *, entry: str | None = None
    ) -> Manifest | ManifestError | None:
        """The cached outcome for this manifest file, or ``None`` (a miss)."""
        self._seen.add(path)
        cached = self._entries.get(path)
        if cached is None or not cached.matches(st, entry) or not stat.S_ISREG(st.st_mode):
            return None
        if cached.is_racy and not self._confirm(path, cached):
            return None
        if cached.built is not None:  # a repeated scan in this process: nothing to rebuild
            return cached.built
        try:
            outcome = _outcome_from(cached, path)
        except Exception:  # an entry edited by hand or from another build: read the file
            return None
        if isinstance(outcome, Manifest):
            cached.built = outcome
        return outcome

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
            record.manifest, record.built = _cacheable(outcome), outcome
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


def _tether_version() -> str:
    from tether._version import __version__

    return __version__


def _is_current(document: object) -> bool:
    return (
        isinstance(document, dict)
        and document.get("format") == CACHE_FORMAT
        and document.get("tether") == _tether_version()
        and isinstance(document.get("entries"), dict)
    )


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


def _outcome_from(cached: _Entry, path: str) -> Manifest | ManifestError:
    if cached.problems is not None:
        problems = [ManifestProblem(Path(p), f, m, line) for p, f, m, line in cached.problems]
        return ManifestError(Path(path), problems)
    if cached.manifest is None:
        raise ValueError("cache entry holds neither a manifest nor problems")
    return _rebuild(cached.manifest, path)


# --------------------------------------------------------------------------- rebuilding manifests

# A cached manifest is kept as the JSON text of its validated fields and rebuilt with
# ``Manifest.model_validate_json``. Measured on a manifest with dependencies,
# permissions, config schema, hooks, events and exports: 33 us, against 45 us for
# ``model_construct`` of every nested model (pydantic's construct runs in Python, its
# validation in Rust) and 3.7 ms to parse the YAML; text rather than nested JSON makes
# the cache file three times faster to load. Validating also means a cache file edited
# by hand can never yield a manifest that would not validate. ``_cacheable`` only caches
# a manifest whose rebuilt copy equals the original (values and fields set), so what
# JSON loses (tuples or dates in free-form config defaults, non-string keys, NaN) falls
# back to parsing the file, never to a different manifest.


def _rebuild(text: str, source: str) -> Manifest:
    if not text.startswith("{"):
        raise ValueError("a cached manifest must be a JSON object")
    return Manifest.model_validate_json(f'{{"source":{json.dumps(source)},{text[1:]}')


def _cacheable(manifest: Manifest) -> str | None:
    """The manifest as JSON text, or ``None`` if rebuilding would not give it back."""
    if manifest.source is None:
        return None
    try:
        text = manifest.model_dump_json(exclude_unset=True)
        rebuilt = _rebuild(text, os.fspath(manifest.source))
        same = rebuilt == manifest and rebuilt.model_fields_set == manifest.model_fields_set
        return text if same and _dumps_match(rebuilt, manifest) else None
    except Exception:  # what does not survive JSON is parsed from its file on the next scan
        return None


def _dumps_match(rebuilt: BaseModel, original: BaseModel) -> bool:
    """Nested models were given the same fields (``==`` does not compare fields set)."""
    return rebuilt.model_dump(exclude_unset=True) == original.model_dump(exclude_unset=True)
