"""One embedded PostgreSQL (pgserver) per test session, and a fresh schema per test.

Use it from a test module with ``pytest_plugins = ["pg"]`` and ask for ``pg_url``
(a URL whose ``search_path`` is a schema of its own, so tests do not see each
other's tables) or ``pg_server_url`` (the server's own URL). The server listens on
a Unix socket only and is stopped and deleted at the end of the session. Mark the
tests that use it ``@pytest.mark.slow``.

The data directory is a ``mkdtemp`` directory, not one under pytest's base temp:
run as root, pgserver runs PostgreSQL as a ``pgserver`` user and opens up the
directory's parents for it, and every pytest session that starts meanwhile (two
engineers, two runs) makes ``/tmp/pytest-of-root`` private again, so PostgreSQL
would fail with "Permission denied".
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

_schemas = itertools.count()


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        # platformdirs warns (an error here) when XDG_RUNTIME_DIR is unset; pgserver
        # reads it on import to place its lock file.
        if not os.environ.get("XDG_RUNTIME_DIR"):
            patch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("xdg-runtime")))
        import pgserver

        base = Path(tempfile.mkdtemp(prefix="tether-pg-"))
        try:
            server = pgserver.get_server(base / "data", cleanup_mode="delete")
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server_url: str) -> str:
    schema = f"test_{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in pg_server_url else "?"
    return f"{pg_server_url}{separator}options={quote(f'-csearch_path={schema}')}"
