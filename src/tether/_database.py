"""The ``database`` service: SQL for plugins over SQLite (default) or PostgreSQL (by URL).

One API on both backends::

    db = open_database(".tether/app.db")            # or "postgresql://user@host/db"
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users (name) VALUES (?)", "ada")
    db.query("SELECT * FROM users WHERE name = ?", "ada")   # [{'id': 1, 'name': 'ada'}]
    with db.transaction():
        db.execute(...)
        db.execute(...)

Placeholders are ``?`` on both backends and values are always sent as
parameters, never formatted into the SQL. On PostgreSQL each ``?`` outside
quoted strings, quoted identifiers, dollar-quoted bodies and comments becomes
``%s``, every ``%`` is doubled for psycopg, and ``??`` stands for a literal
``?`` (the jsonb operators). Only bare ``?`` is translated, not ``?NNN``.

Outside ``transaction()`` every statement commits on its own (autocommit).
``transaction()`` commits when its block ends and rolls back when the block
raises; used inside another ``transaction()`` it becomes a savepoint, so an inner
failure rolls back only the inner block. A transaction belongs to the thread that
opened it: other threads wait for it to end, so never wait inside a transaction
on another thread that uses the same manager.

Errors: SQL that fails raises the driver's own exception (``sqlite3.Error`` or
``psycopg.Error`` subclasses, DB-API 2.0). To catch them without knowing the
backend, use the manager's attributes, as PEP 249 suggests: ``db.Error``,
``db.IntegrityError``, ``db.OperationalError``, ``db.ProgrammingError``. A
database that cannot be opened, and a manager used after ``close()``, raise
:class:`~tether.errors.StorageError`.
"""

from __future__ import annotations

import abc
import logging
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, ClassVar, Final, Literal, Self, TypeAlias

from tether._storage import is_postgres_url, redact_url, sqlite_target
from tether.errors import StorageError

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import DictRow

__all__ = [
    "DEFAULT_DATABASE_PATH",
    "DatabaseManager",
    "PostgresDatabase",
    "Row",
    "SQLiteDatabase",
    "open_database",
    "translate_placeholders",
]

logger = logging.getLogger("tether.database")

DEFAULT_DATABASE_PATH: Final = Path(".tether/app.db")

Row: TypeAlias = dict[str, object]
_Fetch = Literal["all", "one", "none"]

# Everything whose ``?`` and ``%`` are text, not syntax. Order matters: E'' before ''.
_PG_TOKENS: Final = re.compile(
    r"""
      (?P<text>
          (?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'        # E'escape string'
        | '(?:[^']|'')*'                            # 'string'
        | "(?:[^"]|"")*"                            # "identifier"
        | --[^\n]*                                  # -- comment
        | /\*.*?\*/                                 # /* comment */
        | (?<![\w$])\$(?P<tag>[A-Za-z_]\w*|)\$.*?\$(?P=tag)\$   # $tag$ body $tag$
      )
    | (?P<literal_q>\?\?)
    | (?P<placeholder>\?)
    | (?P<percent>%)
    """,
    re.VERBOSE | re.DOTALL,
)


def _pg_token(match: re.Match[str]) -> str:
    if match.group("text") is not None:
        return match.group("text").replace("%", "%%")
    if match.group("literal_q") is not None:
        return "?"
    if match.group("placeholder") is not None:
        return "%s"
    return "%%"


def translate_placeholders(sql: str) -> str:
    """``sql`` with ``?`` placeholders rewritten for psycopg (see the module docstring)."""
    return _PG_TOKENS.sub(_pg_token, sql)


class DatabaseManager(abc.ABC):
    """SQL access for plugins; one connection, used by one thread at a time."""

    backend: ClassVar[str]

    def __init__(self, location: str, driver: ModuleType) -> None:
        self._location = location
        self._driver = driver
        self._lock = threading.RLock()
        self._depth = 0
        self._owner: int | None = None  # the thread inside transaction(), if any
        self._closed = False

    @property
    def location(self) -> str:
        """The file name, or the URL with its password hidden."""
        return self._location

    # PEP 249's optional extension: the driver's exception classes on the connection
    # object, so plugins can catch them without knowing the backend.
    @property
    def Error(self) -> type[Exception]:  # noqa: N802 - the PEP 249 name
        return self._driver_error("Error")

    @property
    def IntegrityError(self) -> type[Exception]:  # noqa: N802 - the PEP 249 name
        return self._driver_error("IntegrityError")

    @property
    def OperationalError(self) -> type[Exception]:  # noqa: N802 - the PEP 249 name
        return self._driver_error("OperationalError")

    @property
    def ProgrammingError(self) -> type[Exception]:  # noqa: N802 - the PEP 249 name
        return self._driver_error("ProgrammingError")

    def _driver_error(self, name: str) -> type[Exception]:
        error: type[Exception] = getattr(self._driver, name)
        return error

    @property
    def in_transaction(self) -> bool:
        """Whether the calling thread is inside ``transaction()``."""
        return self._depth > 0 and self._owner == threading.get_ident()

    def query(self, sql: str, *params: object) -> list[Row]:
        """Every row the statement returns, as dicts keyed by column name."""
        return self._run(sql, params, "all")[0]

    def query_one(self, sql: str, *params: object) -> Row | None:
        """The first row the statement returns, or ``None``."""
        rows = self._run(sql, params, "one")[0]
        return rows[0] if rows else None

    def execute(self, sql: str, *params: object) -> int:
        """Run a statement; return the driver's row count (-1 where it has none)."""
        return self._run(sql, params, "none")[1]

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[object]]) -> int:
        """Run ``sql`` once per parameter tuple, all or nothing; return the total row count."""
        with self.transaction():
            return self._executemany(sql, [tuple(params) for params in seq_of_params])

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """Commit on success, roll back on an exception; nested use makes a savepoint."""
        with self._lock:
            self._check_open()
            depth = self._depth
            savepoint = f"tether_savepoint_{depth}"
            self._command(self._begin_sql if depth == 0 else f"SAVEPOINT {savepoint}")
            self._depth += 1
            self._owner = threading.get_ident()
            try:
                yield self
            except BaseException:
                self._undo(depth, savepoint)
                raise
            else:
                self._finish(depth, savepoint)
            finally:
                # Only now: PostgresDatabase must not reconnect while COMMIT is pending,
                # or a transaction lost with its connection would "commit" as a no-op.
                self._depth -= 1

    def _finish(self, depth: int, savepoint: str) -> None:
        if depth > 0:
            self._command(f"RELEASE SAVEPOINT {savepoint}")
            return
        try:
            self._command("COMMIT")
        except BaseException:
            self._undo(0, savepoint)
            raise

    def _undo(self, depth: int, savepoint: str) -> None:
        try:
            if depth == 0:
                self._command("ROLLBACK")
            else:
                self._command(f"ROLLBACK TO SAVEPOINT {savepoint}")
                self._command(f"RELEASE SAVEPOINT {savepoint}")
        except Exception:
            logger.warning("rollback failed on %s", self._location, exc_info=True)

    def close(self) -> None:
        """Close the connection; an open transaction is rolled back by the server."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()
                logger.debug("closed database %s", self._location)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._location!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(
                f"the database at {self._location} is closed",
                hint="open a new one with open_database(); the plugin may have been unloaded",
            )

    def _run(self, sql: str, params: tuple[object, ...], fetch: _Fetch) -> tuple[list[Row], int]:
        with self._lock:
            self._check_open()
            return self._execute(sql, params, fetch)

    _begin_sql: ClassVar[str] = "BEGIN"

    @abc.abstractmethod
    def _execute(
        self, sql: str, params: tuple[object, ...], fetch: _Fetch
    ) -> tuple[list[Row], int]: ...

    @abc.abstractmethod
    def _executemany(self, sql: str, seq_of_params: list[tuple[object, ...]]) -> int: ...

    @abc.abstractmethod
    def _command(self, sql: str) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...


def _dict_row(cursor: sqlite3.Cursor, row: tuple[object, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


class SQLiteDatabase(DatabaseManager):
    """A SQLite file (WAL journal, ``synchronous=FULL``, foreign keys enforced)."""

    backend = "sqlite"
    _begin_sql = "BEGIN IMMEDIATE"  # take the write lock up front: no upgrade deadlocks

    def __init__(self, path: str | Path = DEFAULT_DATABASE_PATH) -> None:
        name = sqlite_target(path, kind="database")
        super().__init__(name, sqlite3)
        try:
            if name != ":memory:":
                Path(name).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                name, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(
                f"cannot open the database at {name}: {type(exc).__name__}: {exc}",
                path=name,
                hint="check that the directory exists and is writable",
            ) from exc
        self._conn.row_factory = _dict_row
        logger.debug("opened database %s", name)

    def _execute(
        self, sql: str, params: tuple[object, ...], fetch: _Fetch
    ) -> tuple[list[Row], int]:
        cursor = self._conn.execute(sql, params)
        try:
            if fetch == "all":
                rows: list[Row] = cursor.fetchall()
            elif fetch == "one":
                rows = cursor.fetchmany(1)
            else:
                rows = []
            return rows, cursor.rowcount
        finally:
            cursor.close()

    def _executemany(self, sql: str, seq_of_params: list[tuple[object, ...]]) -> int:
        return self._conn.executemany(sql, seq_of_params).rowcount

    def _command(self, sql: str) -> None:
        self._conn.execute(sql)

    def _close(self) -> None:
        self._conn.close()


class PostgresDatabase(DatabaseManager):
    """PostgreSQL through psycopg 3, in autocommit mode outside ``transaction()``.

    A connection found closed or broken (outside a transaction) is replaced on the
    next call.
    """

    backend = "postgresql"

    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - psycopg is a dependency
            raise StorageError(
                "the PostgreSQL database service needs psycopg",
                hint="pip install 'psycopg[binary]'",
            ) from exc
        super().__init__(redact_url(url), psycopg)
        self._psycopg = psycopg
        self._url = url
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[DictRow] = self._connect()
        logger.debug("opened database %s", self._location)

    def _connect(self) -> psycopg.Connection[DictRow]:
        from psycopg.rows import dict_row

        try:
            return self._psycopg.connect(
                self._url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=self._connect_timeout,
            )
        except self._psycopg.Error as exc:
            raise StorageError(
                f"cannot connect to the database at {self._location}: {exc}",
                hint="check the URL, that the server is running, and the credentials",
            ) from exc

    def _connection(self) -> psycopg.Connection[DictRow]:
        if (self._conn.closed or self._conn.broken) and self._depth == 0:
            logger.warning("reconnecting to %s: the connection was lost", self._location)
            self._conn = self._connect()
        return self._conn

    def _execute(
        self, sql: str, params: tuple[object, ...], fetch: _Fetch
    ) -> tuple[list[Row], int]:
        with self._connection().execute(translate_placeholders(sql), params) as cursor:
            rows: list[Row] = []
            if fetch != "none" and cursor.description is not None:
                rows = cursor.fetchall() if fetch == "all" else cursor.fetchmany(1)
            return rows, cursor.rowcount

    def _executemany(self, sql: str, seq_of_params: list[tuple[object, ...]]) -> int:
        with self._connection().cursor() as cursor:
            cursor.executemany(translate_placeholders(sql), seq_of_params)
            return cursor.rowcount

    def _command(self, sql: str) -> None:
        self._connection().execute(sql)

    def _close(self) -> None:
        self._conn.close()


def open_database(url_or_path: str | Path = DEFAULT_DATABASE_PATH) -> DatabaseManager:
    """A database for a path or ``sqlite:///`` URL (SQLite) or a ``postgresql://`` URL."""
    if is_postgres_url(url_or_path):
        return PostgresDatabase(str(url_or_path))
    return SQLiteDatabase(url_or_path)
