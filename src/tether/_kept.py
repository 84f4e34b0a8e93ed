"""What a reload keeps so it can go back: the files of each version, and the plugin's storage.

**Files.** When a directory plugin's version is loaded its files are read into memory
(:func:`capture`: the files :func:`tether._integrity.plugin_files` counts, at most
:data:`MAX_CAPTURE_BYTES`), because by the time that version is replaced the files on disk
are the new version's. When a reload replaces it, the captured files are written under the
state directory (``<state dir>/versions/<plugin>/<version>-<n>/``, :class:`KeptVersions`),
where ``tether plugins rollback`` finds them later, after the grace period or a restart.
The newest copy and the one the live version runs from are kept; older ones are removed.

**Storage.** Before a new version starts, the plugin's ``plugin_storage`` keys are
snapshotted (:func:`snapshot_storage`); a rollback writes the snapshot back
(:func:`restore_storage`), so an old version never reads what a newer one migrated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tether._integrity import plugin_files
from tether.errors import PackagingError, TetherError

if TYPE_CHECKING:
    from tether._manifest import Manifest
    from tether._storage import StateStore

__all__ = [
    "MAX_CAPTURE_BYTES",
    "MAX_SNAPSHOT_KEYS",
    "CapturedFiles",
    "KeptCopy",
    "KeptVersions",
    "StorageSnapshot",
    "capture",
    "restore_storage",
    "snapshot_storage",
]

log = logging.getLogger("tether")

MAX_CAPTURE_BYTES = 32 << 20
"""A plugin directory larger than this is not kept for ``plugins rollback`` (logged)."""
MAX_SNAPSHOT_KEYS = 100_000
"""A plugin with more storage keys than this is not snapshotted before a reload (logged)."""
_INFO = "kept.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True, slots=True)
class CapturedFiles:
    """One version's files as they were when it was loaded."""

    plugin: str
    version: str
    source: str
    files: tuple[tuple[str, bytes], ...]
    at: datetime


def capture(manifest: Manifest) -> CapturedFiles | None:
    """The files of a directory plugin's version, read now; None if it has no directory
    or they cannot be kept (too large, unreadable: logged, not raised)."""
    directory = manifest.directory
    if directory is None:
        return None
    try:
        listed = plugin_files(directory)
        total = 0
        files = []
        for relative, path in listed:
            total += path.stat().st_size
            if total > MAX_CAPTURE_BYTES:
                log.info("plugin %s: its files are over %d MB; `plugins rollback` will not "
                         "have a copy of %s", manifest.name, MAX_CAPTURE_BYTES >> 20,
                         manifest.version)  # fmt: skip
                return None
            files.append((relative, path.read_bytes()))
    except (OSError, PackagingError) as exc:
        log.info("plugin %s: could not keep a copy of its files: %s", manifest.name, exc)
        return None
    return CapturedFiles(manifest.name, manifest.version, str(directory), tuple(files),
                         datetime.now(UTC))  # fmt: skip


@dataclass(frozen=True, slots=True)
class KeptCopy:
    """A copy of a version's files under the state directory."""

    plugin: str
    version: str
    directory: Path
    source: str
    at: datetime

    def to_dict(self) -> dict[str, object]:
        return {"plugin": self.plugin, "version": self.version, "directory": str(self.directory),
                "source": self.source, "at": self.at.isoformat()}  # fmt: skip


class KeptVersions:
    """The copies under ``root`` (``<state dir>/versions``), one folder per plugin."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _folder(self, plugin: str) -> Path:
        return self.root / _UNSAFE.sub("_", plugin)

    def keep(self, captured: CapturedFiles, *, running_from: str | None = None) -> KeptCopy:
        """Write ``captured`` out (atomically: a temporary folder renamed); older copies go,
        except the one ``running_from`` names (the live version's own folder)."""
        folder = self._folder(captured.plugin)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = captured.at.strftime("%Y%m%dT%H%M%S%f")
        name = _UNSAFE.sub("_", f"{captured.version}-{stamp}")
        target = folder / name
        work = Path(tempfile.mkdtemp(prefix=".incoming-", dir=folder))
        try:
            for relative, data in captured.files:
                path = work / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            info = {"plugin": captured.plugin, "version": captured.version,
                    "source": captured.source, "at": captured.at.isoformat()}  # fmt: skip
            (work / f".{_INFO}").write_text(json.dumps(info), encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            work.replace(target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        keep = {target.resolve()}
        if running_from is not None:
            keep.add(Path(running_from).resolve())
        for other in folder.iterdir():
            if other.is_dir() and other.resolve() not in keep:
                shutil.rmtree(other, ignore_errors=True)
        return KeptCopy(captured.plugin, captured.version, target, captured.source,
                        captured.at)  # fmt: skip

    def latest(self, plugin: str, *, other_than: str | None = None) -> KeptCopy | None:
        """The newest copy of ``plugin`` (not the folder ``other_than``), if any."""
        folder = self._folder(plugin)
        if not folder.is_dir():
            return None
        skip = Path(other_than).resolve() if other_than else None
        copies = []
        for child in folder.iterdir():
            if child.name.startswith(".") or not child.is_dir() or child.resolve() == skip:
                continue
            found = _read_copy(child)
            if found is not None and found.plugin == plugin:
                copies.append(found)
        return max(copies, key=lambda c: c.at, default=None)


def _read_copy(directory: Path) -> KeptCopy | None:
    try:
        info = json.loads((directory / f".{_INFO}").read_text(encoding="utf-8"))
        return KeptCopy(str(info["plugin"]), str(info["version"]), directory,
                        str(info["source"]), datetime.fromisoformat(str(info["at"])))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class StorageSnapshot:
    """A plugin's storage (encoded values by key) at one moment."""

    plugin: str
    values: dict[str, str]


def snapshot_storage(store: StateStore, plugin: str) -> StorageSnapshot | None:
    """The plugin's storage now; None if it is too large or cannot be read (logged)."""
    try:
        keys = store.keys(plugin)
        if len(keys) > MAX_SNAPSHOT_KEYS:
            log.warning("plugin %s has %d storage keys (over %d): not snapshotted before the "
                        "reload; a rollback will not restore its storage", plugin, len(keys),
                        MAX_SNAPSHOT_KEYS)  # fmt: skip
            return None
        values = {}
        for key in keys:
            value = store.get(plugin, key)
            if value is not None:
                values[key] = value
    except TetherError as exc:
        log.warning("plugin %s: could not snapshot its storage before the reload: %s", plugin,
                    exc)  # fmt: skip
        return None
    return StorageSnapshot(plugin, values)


def restore_storage(store: StateStore, snapshot: StorageSnapshot) -> int:
    """Write ``snapshot`` back; how many keys differed (written, or removed)."""
    plugin = snapshot.plugin
    changed = 0
    for key in store.keys(plugin):
        if key not in snapshot.values:
            with contextlib.suppress(TetherError):
                store.delete(plugin, key)
                changed += 1
    for key, value in snapshot.values.items():
        if store.get(plugin, key) != value:
            store.set(plugin, key, value)
            changed += 1
    return changed
