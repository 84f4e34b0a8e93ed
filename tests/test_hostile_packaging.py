"""Packaging, installing, locking, entry checks, manifest lines and retries, attacked.

Each test hands tether something a careless or hostile user could: an archive whose
members repeat, clash or carry control characters, a wheel with a link in it, an
archive that declares more members than a plugin has, a plugin file that cannot be
read, a lock file that is a FIFO, a directory, nested absurdly or too large, an entry
module tether must not parse, a manifest key long enough to multiply the line
finder's memory, and retry values no one should pass. The answer is always a clear
error naming the file or the value (or a warning, where loading decides), never a
traceback, a hang or a file written outside the target.

Everything is small: archives of a few members (the one that declares many holds
20,001 empty ones, about 100 KiB compressed), files made large by ``truncate`` (sparse,
never read), and subprocesses bounded by a timeout.
"""

from __future__ import annotations

import ast
import asyncio
import gzip
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from helpers import PluginWriter
from tether import PluginManager
from tether._documents import parse
from tether._durations import format_duration
from tether._entry_source import MAX_SOURCE_BYTES, check_entry_source, with_default_entry
from tether._manifest import load_manifest
from tether._retries import MAX_ATTEMPTS, MAX_DELAY, RetryPolicy
from tether._toml_lines import MAX_PATH_LENGTH
from tether.errors import ConfigError, PackagingError, PluginLoadError
from tether.packaging import (
    build_tarball,
    build_wheel,
    install_plugin,
    read_lock,
    write_lock,
)

SRC = Path(__file__).resolve().parent.parent / "src"
MANIFEST = json.dumps(
    {"name": "p", "version": "1.0.0", "description": "d", "author": "a", "entry": "plugin:Plugin"}
).encode()
CODE = b"import tether\n\nclass Plugin(tether.Plugin):\n    pass\n"


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _plain(prefix: str) -> list[tuple[str, bytes]]:
    return [(f"{prefix}/plugin.json", MANIFEST), (f"{prefix}/plugin.py", CODE)]


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    """A wheel ``tether plugins package`` built, of plugin ``p``."""
    directory = tmp_path / "src" / "p"
    directory.mkdir(parents=True)
    (directory / "plugin.json").write_bytes(MANIFEST)
    (directory / "plugin.py").write_bytes(CODE)
    return build_wheel(directory, tmp_path / "dist")


def _rewrite(wheel: Path, target: Path, extra: list[tuple[zipfile.ZipInfo, bytes]]) -> Path:
    """``wheel`` with ``extra`` members added (RECORD left as it is: the checks that
    matter here come first)."""
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(target, "w") as out:
        for info in source.infolist():
            out.writestr(info, source.read(info))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile warns of a duplicate
            for info, data in extra:
                out.writestr(info, data)
    return target


def _refused(source: Path, root: Path, message: str) -> None:
    """Installing ``source`` into ``root`` fails with ``message`` and leaves nothing."""
    with pytest.raises(PackagingError, match=message):
        install_plugin(source, root)
    assert not root.exists() or list(root.iterdir()) == []


# --------------------------------------------------------------------------- archives


def test_a_tarball_naming_a_file_twice_is_refused(tmp_path: Path) -> None:
    """Which copy lands would depend on the order of extraction: the second one won."""
    source = _tar(tmp_path / "p.tar.gz", [*_plain("p"), ("p/plugin.py", b"raise SystemExit\n")])
    _refused(source, tmp_path / "root", "'p/plugin.py' is in the archive twice")


def test_a_wheel_naming_a_file_twice_is_refused(wheel: Path, tmp_path: Path) -> None:
    twice = zipfile.ZipInfo("tether_plugin_p/plugin.py")
    source = _rewrite(wheel, tmp_path / wheel.name, [(twice, b"raise SystemExit\n")])
    _refused(source, tmp_path / "root", "'tether_plugin_p/plugin.py' is in the archive twice")


def test_a_member_that_is_a_file_and_a_directory_is_named(tmp_path: Path) -> None:
    """It failed with the bare ``File exists`` of the operating system."""
    members = [*_plain("p"), ("p/sub", b"x"), ("p/sub/inner.py", b"y")]
    source = _tar(tmp_path / "p.tar.gz", members)
    _refused(source, tmp_path / "root", "'p/sub' is a file and a directory")


@pytest.mark.parametrize(
    "name",
    ["p/a\nb.py", "p/evil\u202egp.py", "p/tab\there.py", "p/sub\x1b[2J/x.py"],
    ids=["newline", "right-to-left-override", "tab", "escape-sequence"],
)
def test_member_names_with_control_characters_are_refused(tmp_path: Path, name: str) -> None:
    source = _tar(tmp_path / "p.tar.gz", [*_plain("p"), (name, b"x = 1\n")])
    _refused(source, tmp_path / "root", "control or invisible character")


def test_a_wheel_member_with_a_newline_is_refused(wheel: Path, tmp_path: Path) -> None:
    extra = [(zipfile.ZipInfo("tether_plugin_p/a\nb.py"), b"x = 1\n")]
    source = _rewrite(wheel, tmp_path / wheel.name, extra)
    _refused(source, tmp_path / "root", "control or invisible character")


def test_a_symbolic_link_in_a_wheel_is_refused(wheel: Path, tmp_path: Path) -> None:
    """It was installed as a regular file holding the link's target, against the docs."""
    link = zipfile.ZipInfo("tether_plugin_p/link.py")
    link.external_attr = 0o120777 << 16
    source = _rewrite(wheel, tmp_path / wheel.name, [(link, b"/etc/passwd")])
    _refused(source, tmp_path / "root", "link.py is a link or a special file")


def test_a_tarball_with_too_many_members_is_refused_before_all_are_read(tmp_path: Path) -> None:
    """The headers past the bound are not read: here the compressed stream ends inside
    them, which made the install fail as an unreadable archive after reading up to that
    point (holding every header read in memory)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, data in [*_plain("p"), *((f"p/f{i}", b"") for i in range(30_000))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    compressed = gzip.compress(raw.getvalue())
    source = tmp_path / "many.tar.gz"
    source.write_bytes(compressed[: len(compressed) * 9 // 10])  # cut near member 27,000
    _refused(source, tmp_path / "root", "more than 10000 files")


def test_a_wheel_declaring_too_many_entries_is_refused_unparsed(
    wheel: Path, tmp_path: Path
) -> None:
    """The end record's count is read before zipfile builds an object per entry."""
    data = bytearray(wheel.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 8 : end + 12] = (0xFFFF).to_bytes(2, "little") * 2
    source = tmp_path / wheel.name
    source.write_bytes(bytes(data))
    _refused(source, tmp_path / "root", "more than 10000 files")


# --------------------------------------------------------------------------- plugin files

UNREADABLE = Path("/proc/self/mem")  # a regular file by stat whose first read fails


@pytest.fixture
def unreadable_plugin(tmp_path: Path) -> Path:
    if not UNREADABLE.exists():  # pragma: no cover - Linux has it
        pytest.skip("needs /proc/self/mem")
    directory = PluginWriter(tmp_path / "src")("p", CODE.decode(), directory="p")
    (directory / "state.bin").symlink_to(UNREADABLE)
    return directory


def test_install_names_the_file_it_cannot_read(unreadable_plugin: Path, tmp_path: Path) -> None:
    """It was a bare ``OSError: Input/output error`` naming no file."""
    with pytest.raises(PackagingError, match=r"cannot copy .*state\.bin"):
        install_plugin(unreadable_plugin, tmp_path / "root")
    assert not (tmp_path / "root" / "p").exists()


@pytest.mark.parametrize("build", [build_wheel, build_tarball], ids=["wheel", "tar"])
def test_package_names_the_file_it_cannot_read(
    unreadable_plugin: Path, tmp_path: Path, build: Callable[[Path, Path], Path]
) -> None:
    with pytest.raises(PackagingError, match=r"cannot read .*state\.bin"):
        build(unreadable_plugin, tmp_path / "dist")
    assert not (tmp_path / "dist").exists() or list((tmp_path / "dist").iterdir()) == []


def test_package_refuses_a_file_name_install_would_refuse(tmp_path: Path) -> None:
    directory = PluginWriter(tmp_path / "src")("p", CODE.decode(), directory="p")
    (directory / "a\nb.py").write_text("x = 1\n", encoding="utf-8")
    with pytest.raises(PackagingError, match="control or invisible character") as caught:
        build_tarball(directory, tmp_path / "dist")
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- the lock


def _verifying_config(tmp_path: Path) -> Path:
    PluginWriter(tmp_path / "plugins")("p", CODE.decode(), directory="p")
    config = tmp_path / "app.yaml"
    config.write_text("plugins:\n  verify: true\n  plugins:\n    - path: plugins/p\n")
    return config


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(SRC), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", "from tether.cli import main; main()", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_a_lock_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """Reading it waited forever for a writer."""
    config = _verifying_config(tmp_path)
    os.mkfifo(tmp_path / "tether.lock")
    result = _cli("--config", str(config), "plugins", "lock", "--check", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "invalid lock file" in result.stderr
    assert "not a regular file (a FIFO)" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested far deeper than a lock file is"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "nested far deeper than a lock file is"),
        ('{"lock_version": true, "plugins": {}}', "lock_version 1"),
        ('{"lock_version": 1.0, "plugins": {}}', "lock_version 1"),
    ],
    ids=["deep-list", "deep-object", "version-true", "version-float"],
)
def test_malformed_locks_are_config_errors(tmp_path: Path, text: str, problem: str) -> None:
    lock = tmp_path / "tether.lock"
    lock.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem):
        read_lock(lock)


def test_a_lock_too_large_is_refused_unread(tmp_path: Path) -> None:
    lock = tmp_path / "tether.lock"
    with lock.open("wb") as stream:
        stream.truncate(65 << 20)  # sparse: no disk used, and never read
    with pytest.raises(ConfigError, match="too large: 68,157,440 bytes"):
        read_lock(lock)


def test_a_lock_that_is_a_directory_is_named_when_writing(tmp_path: Path) -> None:
    """The error named the temporary file, not the lock."""
    lock = tmp_path / "tether.lock"
    lock.mkdir()
    with pytest.raises(ConfigError, match=r"cannot write the lock file .*tether\.lock: "):
        write_lock(lock, [])
    assert [p.name for p in tmp_path.iterdir()] == ["tether.lock"]


# --------------------------------------------------------------------------- the entry check


def _entry_plugin(tmp_path: Path, source: bytes, *, entry: str | None) -> Path:
    directory = tmp_path / "p"
    directory.mkdir()
    manifest = {"name": "p", "version": "1.0.0", "description": "d", "author": "a"}
    if entry is not None:
        manifest["entry"] = entry
    (directory / "plugin.json").write_text(json.dumps(manifest), encoding="utf-8")
    (directory / "plugin.py").write_bytes(source)
    return directory


def test_a_long_attribute_chain_as_a_base_does_not_crash_the_default_entry(
    tmp_path: Path,
) -> None:
    """``ast.unparse`` of the base ran out of recursion: an internal error, at load too."""
    chain = ".".join(["a"] * 900)
    source = CODE + f"\nclass Other({chain}):\n    pass\n".encode()
    ast.parse(source)  # Python itself parses (and imports) it
    manifest = load_manifest(_entry_plugin(tmp_path, source, entry=None))
    assert with_default_entry(manifest).entry == "plugin:Plugin"
    assert check_entry_source(manifest).errors == ()


def test_an_entry_module_too_large_to_parse_is_a_warning(tmp_path: Path) -> None:
    """It was an error, though loading the plugin would have worked."""
    directory = _entry_plugin(tmp_path, CODE, entry="plugin:Plugin")
    with (directory / "plugin.py").open("r+b") as stream:
        stream.truncate(MAX_SOURCE_BYTES + 1)  # sparse, never read
    check = check_entry_source(load_manifest(directory))
    assert check.errors == ()
    (finding,) = check.findings
    assert finding.warning
    assert "'Plugin' is checked when it is loaded" in finding.message


def test_a_convention_file_too_large_to_parse_asks_for_an_entry(tmp_path: Path) -> None:
    directory = _entry_plugin(tmp_path, CODE, entry=None)
    with (directory / "plugin.py").open("r+b") as stream:
        stream.truncate(MAX_SOURCE_BYTES + 1)
    with pytest.raises(PluginLoadError, match="more than the 2 MiB") as caught:
        with_default_entry(load_manifest(directory))
    assert "entry: module:Attribute" in str(caught.value.hint)


# --------------------------------------------------------------------------- manifest lines


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("json", '{"name": "p", "KEY": [1, 1, 1]}'),
        ("toml", 'name = "p"\nKEY = [1, 1, 1]\n'),
        ("yaml", "name: p\n? KEY\n: [1, 1, 1]\n"),
    ],
)
def test_a_long_key_over_a_list_gets_no_line_per_item(fmt: str, text: str) -> None:
    """Each item's path repeated the key: a 1 MiB manifest of a 400 KB key over 300,000
    items asked for 120 GB. Paths past the bound get no line; their parent's stands."""
    key = "k" * (MAX_PATH_LENGTH + 1)
    lines = dict(parse(text.replace("KEY", key), fmt).lines)
    assert lines["name"] == 1
    assert all(len(path) <= MAX_PATH_LENGTH for path in lines)


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    ("attempts", "backoff", "error", "message"),
    [
        (10**9, 1.0, ValueError, "retry attempts must be from 1 to 100"),
        (0, 1.0, ValueError, "retry attempts must be from 1 to 100"),
        (True, 1.0, TypeError, "retry attempts must be an integer"),
        (3, math.nan, ValueError, "retry backoff must be a number of seconds from 0 to 3600"),
        (3, math.inf, ValueError, "retry backoff must be a number of seconds from 0 to 3600"),
        (3, 1e308, ValueError, "retry backoff must be a number of seconds from 0 to 3600"),
        (3, -1.0, ValueError, "retry backoff must be a number of seconds from 0 to 3600"),
        (3, "1s", TypeError, "retry backoff must be a number of seconds"),
    ],
)
def test_absurd_retry_values_are_refused(
    attempts: object, backoff: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RetryPolicy(attempts, backoff)  # type: ignore[arg-type]


def test_the_wait_between_tries_stops_doubling_at_an_hour() -> None:
    """100 attempts 1h apart (what the config allows) doubled past what a timedelta
    holds: the log line of the 48th failure raised OverflowError."""
    policy = RetryPolicy(MAX_ATTEMPTS, MAX_DELAY)
    assert [RetryPolicy(4, 0.5).delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    for failed in (1, 48, 99, 10_000):
        assert policy.delay(failed) == MAX_DELAY
        assert format_duration(timedelta(seconds=policy.delay(failed))) == "1h"


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"retries": 10**9, "retry_backoff": 0}, ValueError, "retry attempts must be from 1"),
        ({"retries": True}, TypeError, "retries must be an integer"),
        ({"retries": 1, "retry_backoff": math.nan}, ValueError, "retry backoff must be"),
        ({"retries": 1, "retry_backoff": -1}, ValueError, "retry backoff must be"),
    ],
    ids=["a-billion", "true", "nan-backoff", "negative-backoff"],
)
def test_load_plugin_refuses_absurd_retries_before_a_try(
    tmp_path: Path, arguments: dict[str, object], error: type[Exception], message: str
) -> None:
    """A billion retries ran ~1,000 tries, until the doubling overflowed a float; ``True``
    was two tries, a negative backoff no wait, NaN an error after the first try."""
    code = """\
        from pathlib import Path

        import tether

        class Plugin(tether.Plugin):
            def __init__(self):
                Path(__file__).with_name("tried").touch()
                raise RuntimeError("flaky")
        """
    directory = PluginWriter(tmp_path)("p", code, directory="p")
    with pytest.raises(error, match=message):
        asyncio.run(PluginManager().load_plugin(directory, **arguments))  # type: ignore[arg-type]
    assert not (directory / "tried").exists()


def test_a_huge_version_or_constraint_is_echoed_short_and_parsed_fast() -> None:
    """A 200 KB version or a 900 KB constraint gives a message of a line, not the value
    again (and the constraint is refused by its length before any parsing)."""
    from tether._versions import constraint_problem, parse_constraint, version_problem

    version = "1." + "9" * 200_000
    message = version_problem(version)
    assert message is not None
    assert len(message) < 400
    assert "(200,002 characters)" in message
    constraint = ">=1.0.0," * 112_500
    problem = constraint_problem(constraint)
    assert problem is not None
    assert len(problem) < 400
    assert "longer than 1,000 characters" in problem
    with pytest.raises(ValueError, match="longer than 1,000 characters"):
        parse_constraint(constraint)
    assert parse_constraint(">=1.0.0,<2.0.0").allows("1.5.0")
