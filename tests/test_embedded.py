"""With no DSN, ``tether bench`` starts an embedded PostgreSQL in ~/.tether/pgdata and reuses it.

Run as a real ``tether`` process with a fresh home directory made by ``mkdtemp``
(mode 0700, like /root), without ``$XDG_RUNTIME_DIR``: the way a user meets it.
Run as root, PostgreSQL runs as the system user ``pgserver``, which must be able to
pass through the home directory: tether adds search permission (o+x) only, and
says so. The server stops when the tether process exits.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TETHER = str(Path(sys.executable).parent / "tether")


@pytest.fixture
def home() -> Iterator[Path]:
    # Not under pytest's base temp: another pytest session makes /tmp/pytest-of-root
    # private again, which would lock the 'pgserver' user out (see tests/pg.py).
    directory = Path(tempfile.mkdtemp(prefix="tether-home-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _bench(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"XDG_RUNTIME_DIR", "TETHER_DSN", "TETHER_PGDATA"}
    }
    env["HOME"] = str(home)
    return subprocess.run(
        [TETHER, "bench", "-w", "tpcb", "-c", "2", "--format", "json", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=240,
        check=False,
    )


def _postgres_running(data_directory: Path) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                command
                and command[0].endswith(b"postgres")
                and str(data_directory).encode() in command
            ):
                return True
    return False


def test_the_embedded_server_is_created_then_reused(home):
    first = _bench(home, "-T", "1s")
    assert first.returncode == 0, first.stderr
    data_directory = home / ".tether" / "pgdata"
    assert f"embedded PostgreSQL: created {data_directory}" in first.stderr
    assert "Warning" not in first.stderr  # no RuntimeDirWarning without XDG_RUNTIME_DIR
    report = json.loads(first.stdout)
    assert report["database"]["embedded"] is True
    assert report["database"]["data_directory"] == str(data_directory)
    assert report["metrics"]["setup"] == "loaded"
    assert report["totals"]["transactions"] > 0
    assert (data_directory / "PG_VERSION").is_file()

    second = _bench(home, "-t", "20")
    assert second.returncode == 0, second.stderr
    assert f"embedded PostgreSQL: reusing {data_directory}" in second.stderr
    assert json.loads(second.stdout)["metrics"]["setup"] == "reused"
    assert not _postgres_running(data_directory), "the server outlived the tether process"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
def test_as_root_the_home_directory_only_becomes_searchable(home):
    result = _bench(home, "-t", "5")
    assert result.returncode == 0, result.stderr
    mode = stat.S_IMODE(home.stat().st_mode)
    assert mode & stat.S_IXOTH, "the 'pgserver' user cannot reach the data directory"
    assert not mode & stat.S_IROTH, "the home directory was made readable by everyone"
    assert f"made {home} searchable by other users (o+x)" in result.stderr
