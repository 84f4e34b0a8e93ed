"""A plugin's files, their SHA-256, and the lock file that records them (``tether.lock``).

The files of a plugin are every regular file under its directory except ``__pycache__``
directories, ``*.pyc`` files and anything whose name starts with a dot (files and
directories: ``.git``, ``.venv``, editor swap files). Symbolic links are followed (the
code they lead to is the code that runs); a directory reached twice is read once.

A plugin's digest is the SHA-256 of, for each file in the order of its relative path
(``/``-separated): the path in UTF-8, a NUL byte, and the 32-byte SHA-256 of its
content. Renaming a file changes it, and so does changing, adding or removing one.

``tether.lock`` is JSON::

    {
      "lock_version": 1,
      "generated_by": "tether 0.1.0",
      "plugins": {
        "greeter": {
          "version": "1.0.0",
          "path": "plugins/greeter",
          "sha256": "<digest of the plugin's files>",
          "files": {"greeter.py": "<sha256 of its content>", "plugin.yaml": "..."}
        }
      }
    }

``path`` is relative to the lock's directory when the plugin lives under it. With
``plugins.verify: true`` (:func:`check_plugin`, run before any of a plugin's code is
imported) a plugin is refused when the lock does not list it or when its digest differs,
naming the first file (in that order) that changed, was added or was removed. Reads
nothing but files; imports no plugin code.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tether._documents import DocumentError, decode, read_bytes
from tether._manifest import Manifest
from tether._version import __version__
from tether.errors import ConfigError, IntegrityError, PackagingError

__all__ = [
    "LOCK_NAME",
    "LOCK_VERSION",
    "MAX_FILES",
    "MAX_LOCK_BYTES",
    "Lock",
    "LockedPlugin",
    "PluginFiles",
    "check_plugin",
    "first_difference",
    "hash_plugin",
    "is_packaged",
    "lock_entry",
    "lock_path",
    "plugin_files",
    "read_lock",
    "write_lock",
]

LOCK_NAME = "tether.lock"
LOCK_VERSION = 1
MAX_FILES = 10_000
"""More files than this under one plugin directory is refused (a misplaced directory)."""
MAX_LOCK_BYTES = 64 << 20
"""A lock file larger than this is refused unread (a few hundred plugins at most files)."""
_CHUNK = 1 << 20
_HEX_LENGTH = 64  # a SHA-256 in hex


def is_packaged(name: str) -> bool:
    """Whether a file or directory of this name belongs to a plugin's files."""
    return not name.startswith(".") and name != "__pycache__" and not name.endswith(".pyc")


def plugin_files(directory: Path) -> list[tuple[str, Path]]:
    """``(relative path, file)`` for every file of the plugin at ``directory``, sorted.

    A file that is not regular (a FIFO, a socket, a device, a broken link) or more than
    :data:`MAX_FILES` files is a :class:`PackagingError` naming it.
    """
    found = sorted(_walk(directory))
    if len(found) > MAX_FILES:  # pragma: no cover - _walk stops first
        raise _too_many(directory)
    return found


def _walk(directory: Path) -> Iterator[tuple[str, Path]]:
    seen: set[tuple[int, int]] = set()
    count = 0
    pending = [(directory, "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as entries:
                listed = sorted(entries, key=lambda e: e.name)
        except OSError as exc:
            raise _unreadable(folder, exc) from None
        for entry in listed:
            if not is_packaged(entry.name):
                continue
            relative = prefix + entry.name
            path = Path(entry.path)
            try:
                mode = path.stat().st_mode
            except OSError as exc:
                raise _unreadable(path, exc) from None
            if stat.S_ISDIR(mode):
                pending.append((path, relative + "/"))
                continue
            if not stat.S_ISREG(mode):
                raise PackagingError(
                    f"{path} is not a regular file",
                    path=path,
                    hint="a plugin directory holds regular files and directories only: "
                    "remove it (or give it a name starting with a dot to leave it out)",
                )
            count += 1
            if count > MAX_FILES:
                raise _too_many(directory)
            yield relative, path


def _unreadable(path: Path, exc: OSError) -> PackagingError:
    return PackagingError(
        f"cannot read {path}: {exc.strerror or exc}",
        path=path,
        hint="a plugin directory holds readable files: remove or repair it",
    )


def _too_many(directory: Path) -> PackagingError:
    return PackagingError(
        f"more than {MAX_FILES} files under {directory}",
        path=directory,
        hint="a plugin directory holds the plugin's manifest and code; move data and "
        "environments out of it (or into a directory whose name starts with a dot)",
    )


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def combined_digest(files: Iterable[tuple[str, str]]) -> str:
    """The plugin's digest from ``(relative path, file sha256 hex)`` pairs, in path order."""
    digest = hashlib.sha256()
    for relative, hexdigest in sorted(files):
        digest.update(relative.encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
        digest.update(bytes.fromhex(hexdigest))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class PluginFiles:
    """A plugin directory's files (relative path to SHA-256) and their digest."""

    files: Mapping[str, str]
    sha256: str


def hash_plugin(directory: Path) -> PluginFiles:
    """The files of the plugin at ``directory`` and their digest; what cannot be read is a
    :class:`PackagingError` naming the file."""
    files = {}
    for relative, path in plugin_files(directory):
        try:
            files[relative] = file_digest(path)
        except OSError as exc:
            raise PackagingError(
                f"cannot read {path}: {exc.strerror or exc}",
                path=path,
                hint="a plugin's files must be readable by the user running tether",
            ) from None
    return PluginFiles(files, combined_digest(files.items()))


def first_difference(locked: Mapping[str, str], found: Mapping[str, str]) -> tuple[str, str]:
    """The first path (in order) that differs, and how: changed, added or removed."""
    for relative in sorted(set(locked) | set(found)):
        if relative not in found:
            return relative, "removed"
        if relative not in locked:
            return relative, "added"
        if locked[relative] != found[relative]:
            return relative, "changed"
    raise ValueError("the files do not differ")


# --------------------------------------------------------------------------- the lock file


@dataclass(frozen=True, slots=True)
class LockedPlugin:
    name: str
    version: str
    path: str | None
    sha256: str
    files: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Lock:
    path: Path
    plugins: Mapping[str, LockedPlugin]


def lock_path(config_path: Path | None) -> Path:
    """Where the lock of a config lives: beside it (in the working directory without one)."""
    base = config_path.parent if config_path is not None else Path.cwd()
    return base / LOCK_NAME


def lock_entry(manifest: Manifest, lock_file: Path) -> LockedPlugin:
    """What the lock records for one plugin (its directory is hashed now)."""
    directory = manifest.directory
    if directory is None:
        raise PackagingError(
            f"plugin '{manifest.name}' has no directory (an entry point without a manifest): "
            "its files cannot be locked",
            hint="give the distribution a plugin.yaml beside its code (`tether plugins "
            "package` builds such wheels), or leave the plugin out of the config",
        )
    hashed = hash_plugin(directory)
    return LockedPlugin(
        manifest.name, manifest.version, _shown_path(directory, lock_file.parent),
        hashed.sha256, hashed.files,
    )  # fmt: skip


def _shown_path(directory: Path, base: Path) -> str:
    absolute = Path(os.path.abspath(directory))  # noqa: PTH100 - not resolved: keep links
    try:
        return absolute.relative_to(Path(os.path.abspath(base))).as_posix()  # noqa: PTH100
    except ValueError:
        return str(absolute)


def write_lock(path: Path, plugins: Iterable[LockedPlugin]) -> Lock:
    """Write the lock file ``path`` (through a temporary file, then renamed over it)."""
    entries = {p.name: p for p in plugins}
    data = {
        "lock_version": LOCK_VERSION,
        "generated_by": f"tether {__version__}",
        "plugins": {
            name: {
                "version": p.version,
                "path": p.path,
                "sha256": p.sha256,
                "files": dict(sorted(p.files.items())),
            }
            for name, p in sorted(entries.items())
        },
    }
    text = json.dumps(data, indent=2) + "\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the lock file {path}: {exc.strerror or exc}",
            path=path,
            hint=f"{LOCK_NAME} is written beside the config: make that a writable "
            "directory, with no directory or special file of that name in it",
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
    return Lock(path, entries)


def read_lock(path: Path) -> Lock:
    """Read a lock file; a missing, unreadable or malformed one is a ``ConfigError``.

    Read within bounds: a regular file (never a FIFO or a device, which could block or
    never end) of at most :data:`MAX_LOCK_BYTES`, UTF-8, nested no deeper than a lock is.
    """
    try:
        text = decode(read_bytes(path, limit=MAX_LOCK_BYTES))
    except DocumentError as exc:
        if not Path(path).exists() and not Path(path).is_symlink():
            raise ConfigError(
                f"plugins.verify is true but there is no lock file: {path}",
                path=path,
                hint="run `tether plugins lock` (with the same --config) to record the "
                "plugins' files, or set plugins.verify: false",
            ) from None
        raise _bad_lock(path, exc.problem) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _bad_lock(path, f"not valid JSON ({exc})") from None
    except RecursionError:
        raise _bad_lock(path, "nested far deeper than a lock file is") from None
    return Lock(path, _plugins_of(data, path))


def _plugins_of(data: object, path: Path) -> dict[str, LockedPlugin]:
    version = data.get("lock_version") if isinstance(data, dict) else None
    if not isinstance(data, dict) or type(version) is not int or version != LOCK_VERSION:
        raise _bad_lock(path, f"expected a JSON object with lock_version {LOCK_VERSION}")
    plugins = data.get("plugins")
    if not isinstance(plugins, dict):
        raise _bad_lock(path, "`plugins` must be an object of plugin names")
    return {name: _locked(name, entry, path) for name, entry in plugins.items()}


def _locked(name: str, entry: object, path: Path) -> LockedPlugin:
    if not isinstance(entry, dict):
        raise _bad_lock(path, f"plugins.{name} must be an object")
    files = entry.get("files")
    fields = (entry.get("version"), entry.get("sha256"))
    if not all(isinstance(v, str) for v in fields) or not isinstance(files, dict):
        raise _bad_lock(path, f"plugins.{name} needs `version`, `sha256` and `files`")
    if not all(isinstance(v, str) and _is_hex(v) for v in files.values()):
        raise _bad_lock(path, f"plugins.{name}.files: each value must be a SHA-256 in hex")
    where = entry.get("path")
    return LockedPlugin(
        name, str(fields[0]), where if isinstance(where, str) else None, str(fields[1]), files
    )


def _is_hex(value: str) -> bool:
    return len(value) == _HEX_LENGTH and all(c in "0123456789abcdef" for c in value)


def _bad_lock(path: Path, problem: str) -> ConfigError:
    return ConfigError(
        f"invalid lock file {path}: {problem}",
        path=path,
        hint="the lock is written by `tether plugins lock`: run it again to replace the file",
    )


# --------------------------------------------------------------------------- verify


def check_plugin(manifest: Manifest, lock: Lock) -> None:
    """Refuse (``IntegrityError``) a plugin the lock does not list or whose files differ."""
    locked = lock.plugins.get(manifest.name)
    again = (
        "if the change is intended, run `tether plugins lock` (with the same --config) to "
        "record the files again"
    )
    if locked is None:
        raise IntegrityError(
            f"plugin '{manifest.name}' is not in the lock file {lock.path}: plugins.verify "
            "refuses a plugin the lock does not list",
            plugin=manifest.name,
            lock=lock.path,
            hint=f"run `tether plugins lock` (with the same --config) to add it to {LOCK_NAME}",
        )
    if manifest.directory is None:
        raise IntegrityError(
            f"plugin '{manifest.name}' has no directory (an entry point without a manifest): "
            "plugins.verify cannot check its files",
            plugin=manifest.name,
            lock=lock.path,
            hint="install it with a plugin.yaml beside its code, or set plugins.verify: false",
        )
    found = hash_plugin(manifest.directory)
    if found.sha256 == locked.sha256:
        return
    if dict(found.files) == dict(locked.files):  # the lock's digest was edited by hand
        raise IntegrityError(
            f"plugin '{manifest.name}': the digest in {lock.path} does not match its files",
            plugin=manifest.name,
            lock=lock.path,
            hint=again,
        )
    file, change = first_difference(locked.files, found.files)
    versions = (
        f" (locked version {locked.version}, found {manifest.version})"
        if locked.version != manifest.version
        else ""
    )
    raise IntegrityError(
        f"plugin '{manifest.name}': its files differ from {lock.path}: {file} was {change} "
        f"in {manifest.directory}{versions}",
        plugin=manifest.name,
        lock=lock.path,
        file=file,
        change=change,
        hint=again,
    )
