"""Installing and uninstalling plugins in a plugin directory (``tether plugins install``).

What can be installed: a plugin directory, a tarball (one top-level directory holding
the plugin, as ``tether plugins package --format tar`` builds), or a wheel that holds
one top-level package with the plugin's manifest in it (as ``tether plugins package``
builds). Any other wheel is refused with the advice to ``pip install`` it: its code may
live in several packages and depend on others, which only pip can bring in.

The plugin lands in ``<root>/<name>`` (``root``: ``~/.tether/plugins`` for the user,
``/usr/local/lib/tether/plugins`` for the system, both searched by discovery). Its
manifest validates before anything is put in place; the files (the plugin's files as
:mod:`tether._integrity` defines them) are first written to a hidden directory beside
the destination, then renamed into place, so discovery never sees half a plugin. An
installed plugin of another version, or another copy of the same version, is replaced
only with ``force``; an identical one is left as it is.

Archives are read within bounds: members are regular files and directories under one
top-level directory (no links, no absolute paths, no ``..``), at most
:data:`tether._integrity.MAX_FILES` of them and :data:`MAX_UNPACKED_BYTES` in all, and a
wheel's files must match the SHA-256 its ``RECORD`` lists.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Literal
from zlib import error as zlib_error

from tether._discovery import SYSTEM_PLUGIN_DIRECTORY
from tether._integrity import MAX_FILES, hash_plugin, is_packaged, plugin_files
from tether._manifest import MANIFEST_NAMES, Manifest, load_manifest
from tether.errors import ManifestError, PackagingError

__all__ = [
    "MAX_UNPACKED_BYTES",
    "Installed",
    "install_plugin",
    "install_root",
    "uninstall_plugin",
]

MAX_UNPACKED_BYTES = 256 * 1024 * 1024
_CHUNK = 1 << 20
_MAX_MEMBERS = 2 * MAX_FILES  # files and the directories that hold them
_ZIP_TAIL = 22 + 0xFFFF  # the end record and the longest comment after it
_ZIP_END_SIZE = 22
_MAX_DIRECTORY_BYTES = _MAX_MEMBERS * 1024  # a kilobyte of name and fields per entry
Scope = Literal["user", "system"]


def install_root(scope: Scope) -> Path:
    """The plugin directory of ``scope``: ``~/.tether/plugins`` or the system's."""
    return Path.home() / ".tether" / "plugins" if scope == "user" else SYSTEM_PLUGIN_DIRECTORY


@dataclass(frozen=True, slots=True)
class Installed:
    """What an install did. ``replaced``: the version it replaced; ``changed`` is false
    when the same files were installed already."""

    name: str
    version: str
    path: Path
    replaced: str | None
    changed: bool


# --------------------------------------------------------------------------- unpacking


@dataclass(frozen=True, slots=True)
class _Member:
    parts: tuple[str, ...]
    size: int
    open: Callable[[], IO[bytes] | None]


def _checked_parts(name: str, archive: Path) -> tuple[str, ...]:
    path = PurePosixPath(name)
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if path.is_absolute() or ".." in parts or not parts:
        raise PackagingError(
            f"{archive}: unsafe member name {name!r} (absolute, or leading out with '..')",
            path=archive,
            hint="the archive is not one `tether plugins package` builds: check where it came from",
        )
    if not all(part.isprintable() for part in parts):
        raise PackagingError(
            f"{archive}: member name {name!r} holds a control or invisible character",
            path=archive,
            hint="plugin file names are printable text: rename the file in the plugin's "
            "directory and build the archive again",
        )
    return parts


def _bounded(members: list[_Member], archive: Path) -> list[_Member]:
    if len(members) > MAX_FILES or sum(m.size for m in members) > MAX_UNPACKED_BYTES:
        raise _too_large(archive)
    _refuse_clashes(members, archive)
    return members


def _too_large(archive: Path) -> PackagingError:
    return PackagingError(
        f"{archive}: more than {MAX_FILES} files or {MAX_UNPACKED_BYTES >> 20} MiB unpacked",
        path=archive,
        hint="a plugin archive holds the plugin's manifest and code",
    )


def _refuse_clashes(members: list[_Member], archive: Path) -> None:
    """Refuse two members of one name (which one lands would depend on the order they are
    written in) and a name that is a file and a directory at once."""
    files: set[tuple[str, ...]] = set()
    for member in members:
        if member.parts in files:
            raise _clash(archive, member.parts, "is in the archive twice")
        files.add(member.parts)
    for member in members:
        for end in range(1, len(member.parts)):
            if member.parts[:end] in files:
                raise _clash(archive, member.parts[:end], "is a file and a directory")


def _clash(archive: Path, parts: tuple[str, ...], problem: str) -> PackagingError:
    return PackagingError(
        f"{archive}: {'/'.join(parts)!r} {problem}",
        path=archive,
        hint="the archive is not one `tether plugins package` builds: build it again from "
        "the plugin's directory",
    )


def _tar_members(archive: tarfile.TarFile, source: Path) -> list[_Member]:
    members = []
    count = 0
    while (info := archive.next()) is not None:  # headers read one by one: a bound on
        count += 1  # the members holds before a million of them are in memory
        if count > _MAX_MEMBERS:
            raise _too_large(source)
        parts = _checked_parts(info.name, source)
        if info.isdir():
            continue
        if not info.isfile():
            raise PackagingError(
                f"{source}: {info.name} is a link or a special file, which a plugin "
                "tarball may not hold",
                path=source,
                hint="build the tarball with `tether plugins package --format tar`",
            )
        members.append(_Member(parts, info.size, functools.partial(archive.extractfile, info)))
    return _bounded(members, source)


def _zip_members(archive: zipfile.ZipFile, source: Path) -> list[_Member]:
    members = []
    for info in archive.infolist():
        parts = _checked_parts(info.filename, source)
        if info.is_dir():
            continue
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind not in (0, stat.S_IFREG):  # 0: written by a tool that records no mode
            raise PackagingError(
                f"{source}: {info.filename} is a link or a special file, which a plugin "
                "wheel may not hold",
                path=source,
                hint="build the wheel with `tether plugins package`",
            )
        members.append(_Member(parts, info.file_size, functools.partial(archive.open, info)))
    return _bounded(members, source)


def _zip_is_bounded(source: Path) -> bool:
    """Whether the end record of a zip file declares at most ``_MAX_MEMBERS`` entries in
    a central directory of at most ``_MAX_DIRECTORY_BYTES`` (true when there is no record:
    :mod:`zipfile` then refuses the file), read before zipfile builds an object for each
    entry."""
    with source.open("rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        stream.seek(max(0, size - _ZIP_TAIL))
        tail = stream.read()
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or len(tail) < end + _ZIP_END_SIZE:
        return True
    entries = int.from_bytes(tail[end + 10 : end + 12], "little")  # 0xFFFF: see ZIP64
    directory = int.from_bytes(tail[end + 12 : end + 16], "little")
    return entries <= _MAX_MEMBERS and directory <= _MAX_DIRECTORY_BYTES


def _copy(stream: IO[bytes], target: Path, limit: int) -> bytes:
    """Copy at most ``limit`` bytes of ``stream`` to ``target``; their SHA-256."""
    digest = hashlib.sha256()
    written = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        while chunk := stream.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise PackagingError(
                    f"{target.name}: more data than the archive declares", path=target
                )
            digest.update(chunk)
            out.write(chunk)
    return digest.digest()


def _extract(members: list[_Member], top: str, into: Path) -> dict[str, bytes]:
    """Write the members under the directory ``top`` into ``into``, leaving out what is
    not a plugin file; the SHA-256 of each by its archive name."""
    digests = {}
    for member in members:
        if member.parts[0] != top or not all(is_packaged(p) for p in member.parts[1:]):
            continue
        stream = member.open()
        if stream is None:  # pragma: no cover - regular members only
            continue
        with stream:
            digest = _copy(stream, into.joinpath(*member.parts[1:]), member.size)
        digests["/".join(member.parts)] = digest
    return digests


def _only_top(members: list[_Member], source: Path, *, ignore: tuple[str, ...] = ()) -> str:
    tops = sorted({m.parts[0] for m in members if len(m.parts) > 1} - set(ignore))
    loose = [m.parts[0] for m in members if len(m.parts) == 1 and m.parts[0] not in ignore]
    names = {m.parts for m in members if len(m.parts) == 2}  # noqa: PLR2004 - top/file
    manifests = [t for t in tops if any((t, n) in names for n in MANIFEST_NAMES)]
    if len(tops) == 1 and not loose and manifests:
        return tops[0]
    found = ", ".join([*tops, *loose][:5]) or "nothing"
    raise PackagingError(
        f"{source} does not hold one plugin directory (a top-level directory with a "
        f"manifest); it holds {found}",
        path=source,
        hint="build it with `tether plugins package`, or install the plugin's directory",
    )


def _unpack_tarball(source: Path, into: Path) -> Path:
    try:
        with tarfile.open(source, "r:*") as archive:
            members = _tar_members(archive, source)
            top = _only_top(members, source)
            _extract(members, top, into / top)
    except (tarfile.TarError, EOFError, OSError, zlib_error) as exc:
        raise _unreadable(source, exc) from None
    return into / top


def _unpack_wheel(source: Path, into: Path) -> Path:
    try:
        if not _zip_is_bounded(source):
            raise _too_large(source)
        with zipfile.ZipFile(source) as archive:
            members = _zip_members(archive, source)
            infos = sorted({m.parts[0] for m in members if m.parts[0].endswith(".dist-info")})
            extra = [m.parts[0] for m in members if m.parts[0].endswith(".data")]
            if len(infos) != 1 or extra:
                raise _not_ours(source, "no single .dist-info" if not extra else extra[0])
            try:
                top = _only_top(members, source, ignore=(infos[0],))
            except PackagingError:
                raise _not_ours(source, "more than one plugin package") from None
            record = _record(archive, f"{infos[0]}/RECORD", source)
            digests = _extract(members, top, into / top)
    except (zipfile.BadZipFile, OSError, zlib_error) as exc:
        raise _unreadable(source, exc) from None
    _check_record(record, digests, source)
    return into / top


def _record(archive: zipfile.ZipFile, name: str, source: Path) -> dict[str, str]:
    try:
        text = archive.read(name).decode("utf-8")
    except KeyError:
        raise _not_ours(source, "no RECORD") from None
    return {row[0]: row[1] for row in csv.reader(io.StringIO(text)) if len(row) > 1}


def _check_record(record: dict[str, str], digests: dict[str, bytes], source: Path) -> None:
    for name, digest in digests.items():
        expected = record.get(name, "")
        found = "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        if expected != found:
            problem = "is not listed in RECORD" if not expected else "does not match RECORD"
            raise PackagingError(
                f"{source} is damaged: {name} {problem}",
                path=source,
                hint="build the wheel again (`tether plugins package`) or download it again",
            )


def _not_ours(source: Path, why: str) -> PackagingError:
    return PackagingError(
        f"{source} is not a plugin wheel `tether plugins package` builds ({why})",
        path=source,
        hint=f"install it into the Python environment instead: pip install {source}",
    )


def _unreadable(source: Path, exc: BaseException) -> PackagingError:
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return PackagingError(
        f"cannot read {source}: {reason}",
        path=source,
        hint="give a plugin directory, a .tar.gz or a .whl built by `tether plugins package`",
    )


# --------------------------------------------------------------------------- install


@contextmanager
def _staging(root: Path) -> Iterator[Path]:
    """A hidden directory in ``root`` (discovery skips dot-directories), removed after."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tether-install-", dir=root))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage(source: Path, staging: Path) -> tuple[Manifest, Path]:
    """The plugin of ``source`` written into ``staging``, with its validated manifest."""
    if source.is_dir() or source.name in MANIFEST_NAMES:
        manifest = load_manifest(source)
        directory = manifest.directory or source
        staged = staging / "plugin"
        for relative, path in plugin_files(directory):
            _copy_file(path, staged / relative)
        return load_manifest(staged), staged
    if not source.is_file():
        raise PackagingError(
            f"nothing to install at {source}",
            path=source,
            hint="give a plugin directory, a .tar.gz or a .whl (`tether plugins package` "
            "builds them)",
        )
    if source.suffix == ".whl":
        staged = _unpack_wheel(source, staging)
        try:
            return load_manifest(staged), staged
        except ManifestError as exc:
            raise PackagingError(
                f"the plugin in {source} does not validate as a plugin directory: "
                f"{exc.problems[0] if exc.problems else exc}",
                path=source,
                hint=f"a wheel whose plugin takes its entry from its entry point is installed "
                f"with pip: pip install {source}",
            ) from None
    staged = _unpack_tarball(source, staging)
    return load_manifest(staged), staged


def _copy_file(path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copy2(path, target)
    except OSError as exc:  # a read error carries no file name: say which file it was
        raise PackagingError(
            f"cannot copy {path}: {exc.strerror or exc}",
            path=path,
            hint="a plugin's files must be readable regular files: remove or repair it",
        ) from None


def install_plugin(source: Path, root: Path, *, force: bool = False) -> Installed:
    """Install the plugin at ``source`` (directory, tarball or wheel) into ``root``."""
    with _staging(root) as staging:
        manifest, staged = _stage(Path(source), staging)
        target = root / manifest.name
        previous = _installed(target)
        if previous is not None and _same_files(previous, staged):
            return Installed(manifest.name, manifest.version, target, None, changed=False)
        if target.exists() and not force:
            raise _occupied(manifest, target, previous)
        _put_in_place(staged, target, staging)
        replaced = previous.version if previous is not None else None
        return Installed(manifest.name, manifest.version, target, replaced, changed=True)


def _installed(target: Path) -> Manifest | None:
    if not target.is_dir():
        return None
    try:
        return load_manifest(target)
    except ManifestError:
        return None


def _same_files(previous: Manifest, staged: Path) -> bool:
    if previous.directory is None:  # pragma: no cover - read from a directory
        return False
    try:
        return hash_plugin(previous.directory).sha256 == hash_plugin(staged).sha256
    except (PackagingError, OSError):
        return False


def _occupied(manifest: Manifest, target: Path, previous: Manifest | None) -> PackagingError:
    if previous is None:
        what = f"{target} exists and is not a valid plugin directory"
    elif previous.name != manifest.name:
        what = f"{target} holds plugin '{previous.name}'"
    elif previous.version == manifest.version:
        what = f"another copy of '{manifest.name}' {manifest.version} is installed at {target}"
    else:
        what = f"'{manifest.name}' {previous.version} is installed at {target}"
    return PackagingError(
        f"not installing '{manifest.name}' {manifest.version}: {what}",
        plugin=manifest.name,
        path=target,
        hint=f"pass --force to replace it, or `tether plugins uninstall {manifest.name}` first",
    )


def _put_in_place(staged: Path, target: Path, staging: Path) -> None:
    """Rename ``staged`` to ``target``; an existing ``target`` is moved aside first and
    put back if the rename fails."""
    aside = staging / "previous"
    if target.exists() or target.is_symlink():
        target.rename(aside)
    try:
        staged.rename(target)
    except OSError:
        if aside.exists():
            aside.rename(target)
        raise


# --------------------------------------------------------------------------- uninstall


def uninstall_plugin(name: str, root: Path) -> Manifest:
    """Remove plugin ``name`` from ``root``: ``<root>/<name>``, or the directory there
    whose manifest names it. Its manifest."""
    for directory in _candidates(name, root):
        manifest = _installed(directory)
        if manifest is not None and manifest.name == name:
            with _staging(root) as staging:
                directory.rename(staging / "removed")
            return manifest
    installed = sorted(m.name for m in map(_installed, _candidates(None, root)) if m)
    listed = ", ".join(installed) if installed else "none"
    raise PackagingError(
        f"plugin '{name}' is not installed in {root} (installed there: {listed})",
        plugin=name,
        path=root,
        hint="`tether plugins list` shows where each plugin is; --user and --system pick "
        "the directory",
    )


def _candidates(name: str | None, root: Path) -> list[Path]:
    first = [root / name] if name is not None else []
    try:
        others = sorted(p for p in root.iterdir() if is_packaged(p.name) and p.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        others = []
    return first + [p for p in others if p not in first]
