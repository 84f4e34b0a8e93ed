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

Connections, placeholders, transactions and errors are the SQL layer's
(``tether._sql``), shared with plugin storage and the state tables; this module
is the plugin-facing API over it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Final, Self, TypeAlias

from tether._sql import (
    DEFAULT_CONNECT_TIMEOUT,
    Connection,
    DialectName,
    Fetch,
    Target,
    is_postgres_url,
    translate_placeholders,
)

__all__ = [
    "DEFAULT_DATABASE_PATH",
    "DatabaseManager",
    "PostgresDatabase",
    "Row",
    "SQLiteDatabase",
    "open_database",
    "translate_placeholders",
]

DEFAULT_DATABASE_PATH: Final = Path(".tether/app.db")

Row: TypeAlias = dict[str, object]


class DatabaseManager:
    """SQL access for plugins; one connection, used by one thread at a time."""

    def __init__(self, target: Target, *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> None:
        self._sql = Connection(
            target,
            connect_timeout=connect_timeout,
            closed_hint="open a new one with open_database(); the plugin may have been unloaded",
        )
        self._sql.open()  # an unreachable database fails here, not at the first query

    @property
    def backend(self) -> DialectName:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._sql.dialect.name

    @property
    def location(self) -> str:
        """The file name, or the URL with its password hidden."""
        return self._sql.location

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
        error: type[Exception] = getattr(self._sql.dialect.driver, name)
        return error

    @property
    def in_transaction(self) -> bool:
        """Whether the calling thread is inside ``transaction()``."""
        return self._sql.in_transaction

    def query(self, sql: str, *params: object) -> list[Row]:
        """Every row the statement returns, as dicts keyed by column name."""
        return self._rows(sql, params, "all")

    def query_one(self, sql: str, *params: object) -> Row | None:
        """The first row the statement returns, or ``None``."""
        rows = self._rows(sql, params, "one")
        return rows[0] if rows else None

    def execute(self, sql: str, *params: object) -> int:
        """Run a statement; return the driver's row count (-1 where it has none)."""
        return self._sql.run(sql, params, fetch="none").rowcount

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[object]]) -> int:
        """Run ``sql`` once per parameter tuple, all or nothing; return the total row count."""
        with self.transaction():
            return self._sql.run_many(sql, [tuple(params) for params in seq_of_params])

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """Commit on success, roll back on an exception; nested use makes a savepoint."""
        with self._sql.transaction():
            yield self

    def close(self) -> None:
        """Close the connection; an open transaction is rolled back by the server."""
        self._sql.close()

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
        return f"{type(self).__name__}({self.location!r})"

    def _rows(self, sql: str, params: tuple[object, ...], fetch: Fetch) -> list[Row]:
        result = self._sql.run(sql, params, fetch=fetch)
        return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


class SQLiteDatabase(DatabaseManager):
    """A SQLite file (WAL journal, ``synchronous=FULL``, foreign keys enforced)."""

    def __init__(self, path: str | Path = DEFAULT_DATABASE_PATH) -> None:
        super().__init__(Target.sqlite(path, kind="database"))


class PostgresDatabase(DatabaseManager):
    """PostgreSQL through psycopg 3, in autocommit mode outside ``transaction()``.

    A connection found closed or broken (outside a transaction) is replaced on the
    next call.
    """

    def __init__(self, url: str, *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> None:
        super().__init__(Target.postgresql(url, kind="database"), connect_timeout=connect_timeout)


def open_database(url_or_path: str | Path = DEFAULT_DATABASE_PATH) -> DatabaseManager:
    """A database for a path or ``sqlite:///`` URL (SQLite) or a ``postgresql://`` URL."""
    if is_postgres_url(url_or_path):
        return PostgresDatabase(str(url_or_path))
    return SQLiteDatabase(url_or_path)
