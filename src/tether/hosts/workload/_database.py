"""Which database a run uses, connecting to it, and saying why a connection failed.

A DSN comes from ``--dsn``, else ``$TETHER_DSN``, else the config's ``database.dsn``;
with none of them an embedded PostgreSQL is started (:mod:`._embedded`). Every DSN
shown to a person has its password masked.

A client's connection is of one of three kinds (:data:`DRIVERS`): ``asyncpg``,
``psycopg`` (sync, autocommit, used from a thread) or ``psycopg-async``
(``psycopg.AsyncConnection``, autocommit, on the run's event loop). Before closing a
``psycopg-async`` connection tether removes any reader registered on its socket, so
a workload may keep one registered for the connection's lifetime (``tpcb`` does).
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncpg  # type: ignore[import-untyped]
import psycopg

from tether.hosts.workload._errors import DatabaseUnavailableError
from tether.hosts.workload._toolkit import AsyncConnection

T = TypeVar("T")

__all__ = [
    "CONNECT_TIMEOUT",
    "DRIVERS",
    "Database",
    "close_connections",
    "connect_async",
    "connect_psycopg_async",
    "connect_sync",
    "describe_connect_error",
    "mask_dsn",
    "open_connections",
    "server_version",
]

CONNECT_TIMEOUT = 10.0
DRIVERS = ("asyncpg", "psycopg", "psycopg-async")
APPLICATION_NAME = "tether-bench"
_URL_PASSWORD = re.compile(r"(://[^:/@?#\s]*:)([^@/?#\s]*)(@)")
_PARAM_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]+)", re.IGNORECASE)


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``****`` (URL or ``key=value`` form)."""
    masked = _URL_PASSWORD.sub(
        lambda m: m.group(1) + ("****" if m.group(2) else "") + m.group(3), dsn
    )
    return _PARAM_PASSWORD.sub(lambda m: m.group(1) + "****", masked)


@dataclass(frozen=True, slots=True)
class Database:
    """The database of a run. ``data_directory`` is set for the embedded server."""

    dsn: str
    embedded: bool = False
    data_directory: Path | None = None
    reused: bool = False

    @property
    def display(self) -> str:
        return mask_dsn(self.dsn)


def describe_connect_error(exc: BaseException) -> str:  # noqa: PLR0911 - one case a line
    """One line saying why connecting failed (no traceback, no password)."""
    if isinstance(exc, TimeoutError):
        return f"timed out after {CONNECT_TIMEOUT:g}s"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, FileNotFoundError):
        return "no server socket there (is the server running?)"
    if isinstance(exc, OSError) and exc.errno is not None:
        return (exc.strerror or errno.errorcode.get(exc.errno, str(exc))).lower()
    if isinstance(exc, psycopg.OperationalError):
        return _psycopg_reason(str(exc))
    if isinstance(exc, OSError) and exc.args:
        # asyncpg gathers one OSError per address tried: "Multiple exceptions: [Errno 111] ..."
        return _reason_in(str(exc))
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _reason_in(text: str) -> str:
    if "Connect call failed" in text or "Errno 111" in text:
        return "connection refused"
    if "No such file or directory" in text:
        return "no server socket there (is the server running?)"
    return text.splitlines()[0]


def _psycopg_reason(text: str) -> str:
    """psycopg's 'connection failed: connection to server at "x", port 1 failed: <why>'."""
    first = text.strip().splitlines()[0] if text.strip() else "connection failed"
    reason = first.rsplit(" failed: ", 1)[-1].strip()
    lowered = reason[:1].lower() + reason[1:]
    return lowered.removeprefix("fATAL:  ").removeprefix("FATAL:  ")


_URL_HINT = "write the DSN as a URL: postgresql://user:password@host:5432/dbname"
_LOGIN_HINT = "the server answered: check the user, password and database name in the DSN"
_LOGIN_REFUSED = ("does not exist", "authentication failed", "no pg_hba.conf entry", "permission")


def _hint(exc: BaseException, reason: str) -> str | None:
    """A hint fitting the failure; ``None`` for the default (is the server there?)."""
    if isinstance(exc, ValueError | psycopg.ProgrammingError):
        return _URL_HINT
    if isinstance(exc, asyncpg.PostgresError) or any(s in reason for s in _LOGIN_REFUSED):
        return _LOGIN_HINT
    return None


async def _guarded(dsn: str, attempt: Callable[[], Awaitable[T]]) -> T:
    try:
        return await asyncio.wait_for(attempt(), CONNECT_TIMEOUT)
    except (
        OSError,
        TimeoutError,
        ValueError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        psycopg.Error,
    ) as exc:
        reason = describe_connect_error(exc)
        raise DatabaseUnavailableError(mask_dsn(dsn), reason, hint=_hint(exc, reason)) from exc


async def connect_async(dsn: str) -> AsyncConnection:
    """An asyncpg connection, or :class:`DatabaseUnavailableError`."""
    return await _guarded(
        dsn,
        lambda: asyncpg.connect(
            dsn,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": APPLICATION_NAME},
        ),
    )


def _sync_connection(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=int(CONNECT_TIMEOUT),
        application_name=APPLICATION_NAME,
    )


async def connect_sync(dsn: str) -> psycopg.Connection[Any]:
    """A psycopg (sync, autocommit) connection opened in a thread, or the same error."""
    connection: psycopg.Connection[Any] = await _guarded(
        dsn, lambda: asyncio.to_thread(_sync_connection, dsn)
    )
    return connection


async def connect_psycopg_async(dsn: str) -> psycopg.AsyncConnection[Any]:
    """A psycopg ``AsyncConnection`` (autocommit), or the same error."""
    return await _guarded(
        dsn,
        lambda: psycopg.AsyncConnection.connect(
            dsn,
            autocommit=True,
            connect_timeout=int(CONNECT_TIMEOUT),
            application_name=APPLICATION_NAME,
        ),
    )


_CONNECT: dict[str, Callable[[str], Awaitable[Any]]] = {
    "asyncpg": connect_async,
    "psycopg": connect_sync,
    "psycopg-async": connect_psycopg_async,
}


async def open_connections(dsn: str, count: int, *, driver: str) -> list[Any]:
    """``count`` connections of the kind ``driver`` names (one of :data:`DRIVERS`), opened
    together."""
    connect = _CONNECT[driver]
    results = await asyncio.gather(*(connect(dsn) for _ in range(count)), return_exceptions=True)
    opened = [r for r in results if not isinstance(r, BaseException)]
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        await close_connections(opened, driver=driver)
        raise failures[0]
    return opened


async def close_connections(connections: list[Any], *, driver: str) -> None:
    """Close every connection; a connection that fails to close is dropped."""
    for connection in connections:
        try:
            if driver == "psycopg":
                await asyncio.to_thread(connection.close)
                continue
            if driver == "psycopg-async" and not connection.closed:
                asyncio.get_running_loop().remove_reader(connection.fileno())
            await asyncio.wait_for(connection.close(), 5.0)
        except Exception:  # noqa: S112 - closing is best effort
            continue


async def server_version(connection: object, *, driver: str) -> str:
    """The server's ``server_version`` setting."""
    if driver == "asyncpg":
        return str(await cast("AsyncConnection", connection).fetchval("SHOW server_version"))
    if driver == "psycopg-async":
        cursor = await cast("psycopg.AsyncConnection[Any]", connection).execute(
            "SHOW server_version"
        )
        found = await cursor.fetchone()
        return str(found[0]) if found else "unknown"

    def query() -> str:
        sync = cast("psycopg.Connection[tuple[object, ...]]", connection)
        row = sync.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"

    return await asyncio.to_thread(query)
