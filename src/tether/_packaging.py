"""Building a plugin into a wheel or a tarball (``tether plugins package``).

Both hold the plugin's files as :mod:`tether._integrity` defines them (no
``__pycache__``, ``*.pyc`` or dot-files), read from the plugin's directory after its
manifest validates.

The wheel (``tether_plugin_<name>-<version>-py3-none-any.whl``) is built here with the
standard library, no build backend and no network: the plugin's directory becomes the
top-level package ``tether_plugin_<name>`` (the manifest unchanged inside it), and
``entry_points.txt`` exposes it in the ``tether.plugins`` group as
``<name> = tether_plugin_<name>.<entry module>:<attribute>``, which discovery uses as
the plugin's entry. ``METADATA`` takes the name ``tether-plugin-<name>``, the version
(normalised to PEP 440: ``1.0.0-beta.1`` becomes ``1.0.0b1``), the description and
the author from the manifest; ``RECORD`` has every file's SHA-256. The archive's
timestamps are fixed, so the same files always give the same wheel.

The tarball (``<name>-<version>.tar.gz``) holds one directory, ``<name>/``, as 001's
``tar -czf my_plugin-1.0.0.tar.gz -C dist my_plugin`` does.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import stat
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from packaging.version import InvalidVersion, Version

from tether._discovery import ENTRY_POINT_GROUP
from tether._entry_source import with_default_entry
from tether._integrity import plugin_files
from tether._manifest import Manifest, load_manifest
from tether._version import __version__
from tether.errors import PackagingError

__all__ = [
    "build_tarball",
    "build_wheel",
    "distribution_name",
    "package_name",
    "wheel_version",
]

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: reproducible wheels


def package_name(plugin: str) -> str:
    """The top-level package a wheel puts plugin ``plugin``'s directory in."""
    return "tether_plugin_" + re.sub(r"[-.]", "_", plugin).lower()


def distribution_name(plugin: str) -> str:
    """The distribution name of plugin ``plugin``'s wheel (PEP 503 normalised)."""
    return "tether-plugin-" + re.sub(r"[-_.]+", "-", plugin).lower()


def wheel_version(manifest: Manifest) -> str:
    """The manifest's version as PEP 440 has it (what pip and the wheel's name show)."""
    try:
        return str(Version(manifest.version))
    except InvalidVersion:
        raise PackagingError(
            f"plugin '{manifest.name}': version {manifest.version} has no PEP 440 form, "
            "which a wheel needs",
            plugin=manifest.name,
            path=manifest.source,
            hint="use a pre-release Python understands (1.0.0-alpha.1, 1.0.0-rc.2), or "
            "build a tarball with --format tar",
        ) from None


def _manifest_at(directory: Path) -> tuple[Manifest, Path]:
    manifest = load_manifest(directory)
    if manifest.directory is None:  # pragma: no cover - load_manifest sets source
        raise PackagingError(f"no plugin directory at {directory}", path=directory)
    return manifest, manifest.directory


def _written(output: Path, name: str, write: Callable[[Path], None]) -> Path:
    """``write`` into a temporary file in ``output``, then renamed to ``name``."""
    output.mkdir(parents=True, exist_ok=True)
    target = output / name
    temporary = output / f".{name}.{os.getpid()}.tmp"
    try:
        write(temporary)
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def _archive_name(relative: str, path: Path) -> str:
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise PackagingError(
            f"{path}: the file name is not valid UTF-8, which an archive cannot hold",
            path=path,
            hint="rename the file",
        ) from None
    if not all(part.isprintable() for part in relative.split("/")):
        raise PackagingError(
            f"{repr(str(path))[1:-1]}: the file name holds a control or invisible "
            "character, which `tether plugins install` refuses in an archive",
            path=path,
            hint="rename the file (or give it a name starting with a dot to leave it out)",
        )
    return relative


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:  # a read error carries no file name: say which file it was
        raise PackagingError(
            f"cannot read {path}: {exc.strerror or exc}",
            path=path,
            hint="a plugin's files must be readable regular files: remove or repair it",
        ) from None


def _mode(path: Path) -> int:
    return 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644


# --------------------------------------------------------------------------- wheel


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _dist_info(manifest: Manifest, version: str) -> dict[str, str]:
    package = package_name(manifest.name)
    module, _, attribute = with_default_entry(manifest).entry.partition(":")
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {distribution_name(manifest.name)}",
        f"Version: {version}",
        f"Summary: {_one_line(manifest.description)}",
        *([f"Author: {_one_line(manifest.author)}"] if manifest.author.strip() else []),
        "Keywords: tether,tether-plugin",
    ]
    wheel = [
        "Wheel-Version: 1.0",
        f"Generator: tether {__version__}",
        "Root-Is-Purelib: true",
        "Tag: py3-none-any",
    ]
    entry_points = [f"[{ENTRY_POINT_GROUP}]", f"{manifest.name} = {package}.{module}:{attribute}"]
    return {
        "METADATA": "\n".join(metadata) + "\n",
        "WHEEL": "\n".join(wheel) + "\n",
        "entry_points.txt": "\n".join(entry_points) + "\n",
    }


def _zip_entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | mode) << 16
    return info


def build_wheel(directory: Path, output: Path) -> Path:
    """Build the wheel of the plugin at ``directory`` into ``output``; its path."""
    manifest, source = _manifest_at(directory)
    version = wheel_version(manifest)
    package = package_name(manifest.name)
    stem = f"{package}-{version}"
    contents = [
        (f"{package}/{_archive_name(relative, path)}", _read(path), _mode(path))
        for relative, path in plugin_files(source)
    ]
    info_dir = f"{stem}.dist-info"
    contents += [
        (f"{info_dir}/{name}", text.encode("utf-8"), 0o644)
        for name, text in _dist_info(manifest, version).items()
    ]
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data, _ in contents:
        writer.writerow([name, _record_hash(data), len(data)])
    writer.writerow([f"{info_dir}/RECORD", "", ""])
    contents.append((f"{info_dir}/RECORD", record.getvalue().encode("utf-8"), 0o644))

    def write(path: Path) -> None:
        with zipfile.ZipFile(path, "w") as archive:
            for name, data, mode in contents:
                archive.writestr(_zip_entry(name, mode), data)

    return _written(output, f"{stem}-py3-none-any.whl", write)


# --------------------------------------------------------------------------- tarball


def build_tarball(directory: Path, output: Path) -> Path:
    """Build ``<name>-<version>.tar.gz`` of the plugin at ``directory`` into ``output``."""
    manifest, source = _manifest_at(directory)
    files = [(_archive_name(relative, path), path) for relative, path in plugin_files(source)]

    def write(path: Path) -> None:
        with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
            for relative, file in files:
                data = _read(file)
                info = tarfile.TarInfo(f"{manifest.name}/{relative}")
                info.size = len(data)
                info.mode = _mode(file)
                info.mtime = int(file.stat().st_mtime)
                archive.addfile(info, io.BytesIO(data))

    return _written(output, f"{manifest.name}-{manifest.version}.tar.gz", write)
