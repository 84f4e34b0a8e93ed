"""The embedded PostgreSQL (pgserver, with pgvector) used when no DSN is given.

The data directory (default ``~/.tether/pgdata``) is kept: the next run finds the
cluster there and reuses it, tables and all. The server listens on a Unix socket
in the data directory only, and stops when the last tether process using it exits.

Two things are handled here so that a user does not meet them:

- pgserver places a lock file under ``$XDG_RUNTIME_DIR``; when that is unset,
  platformdirs warns (``RuntimeDirWarning``) and falls back to
  ``/run/user/<uid>`` or ``$TMPDIR/runtime-<uid>``. The fallback is fine for a
  lock file, so the warning is silenced.
- Run as root, pgserver runs PostgreSQL as a system user ``pgserver`` (created on
  first use), which must be able to *reach* its data directory. pgserver would
  make every parent directory readable and searchable by all users (``o+rx``,
  including your home directory); tether instead adds only search permission
  (``o+x``: others may pass through, not list) to the parents that lack it, and
  says which ones it changed.
"""

from __future__ import annotations

import contextlib
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from tether.hosts.workload._database import Database
from tether.hosts.workload._errors import EmbeddedServerError

__all__ = ["DATA_DIRECTORY_ENV", "default_data_directory", "start_embedded"]

DATA_DIRECTORY_ENV = "TETHER_PGDATA"
_SEARCHABLE = stat.S_IXGRP | stat.S_IXOTH
_servers: dict[Path, Any] = {}  # one handle per data directory and process


def default_data_directory() -> Path:
    """``$TETHER_PGDATA``, else ``~/.tether/pgdata``."""
    configured = os.environ.get(DATA_DIRECTORY_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".tether" / "pgdata"


def _import_pgserver() -> ModuleType:
    with warnings.catch_warnings():
        # platformdirs.RuntimeDirWarning (XDG_RUNTIME_DIR unset): its fallback serves.
        warnings.filterwarnings("ignore", message=r".*XDG_RUNTIME_DIR.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"platformdirs.*")
        import pgserver

    return pgserver


def _grant_search(path: Path, changed: list[Path]) -> None:
    """Let other users pass through every parent of ``path`` (o+x, g+x), nothing more."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & _SEARCHABLE != _SEARCHABLE:
            parent.chmod(stat.S_IMODE(mode) | _SEARCHABLE)
            changed.append(parent)


@contextlib.contextmanager
def _search_only_permissions(pgserver: ModuleType, changed: list[Path]) -> Iterator[None]:
    """While pgserver starts as root, widen parents by search permission only."""
    module = getattr(pgserver, "postgres_server", None)
    original = getattr(module, "ensure_prefix_permissions", None)
    if module is None or original is None:  # another pgserver version: let it do its own
        yield
        return
    module.ensure_prefix_permissions = lambda path: _grant_search(Path(path), changed)
    try:
        yield
    finally:
        module.ensure_prefix_permissions = original


def start_embedded(data_directory: Path, *, notify: Callable[[str], None]) -> Database:
    """Start (or reuse) the embedded server in ``data_directory``; ``notify`` says what happened."""
    directory = data_directory.expanduser().resolve()
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedServerError(
            f"cannot create {directory.parent} for the embedded PostgreSQL: {exc.strerror or exc}",
            path=directory.parent,
            hint="choose another place with --pgdata DIR (or database.data_directory, "
            "$TETHER_PGDATA), or pass --dsn to use a running server",
        ) from exc
    reused = (directory / "PG_VERSION").is_file()
    pgserver = _import_pgserver()
    changed: list[Path] = []
    try:
        server = _servers.get(directory)
        if server is None:
            with _search_only_permissions(pgserver, changed):
                server = pgserver.get_server(directory, cleanup_mode="stop")
            _servers[directory] = server
        uri = str(server.get_uri())
    except Exception as exc:
        raise EmbeddedServerError(
            f"cannot start the embedded PostgreSQL in {directory}: {type(exc).__name__}: {exc}",
            path=directory,
            hint=f"its log is {directory / 'log'}; remove the directory to start afresh, "
            "or pass --dsn to use a running server",
        ) from exc
    if changed and os.geteuid() == 0:
        names = ", ".join(str(p) for p in changed)
        notify(
            f"running as root: PostgreSQL runs as the system user 'pgserver'; made {names} "
            "searchable by other users (o+x) so that it can reach its data directory"
        )
    verb = "reusing" if reused else "created"
    notify(f"embedded PostgreSQL: {verb} {directory} (socket in that directory)")
    return Database(dsn=uri, embedded=True, data_directory=directory, reused=reused)
