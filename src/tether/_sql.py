"""One SQL layer under plugin storage, the database service and the state tables.

Plugin storage (``_storage``), the ``database`` service (``_database``) and the
state tables (``tether._state_tables``) keep their own schemas and queries; what
they share lives here:

* **targets** (:class:`Target`): a file path, ``sqlite:///path`` or ``:memory:``
  is SQLite; a ``postgresql://`` (or ``postgres://``) URL is PostgreSQL; any other
  ``scheme://`` is refused. Messages show :attr:`Target.location`: the file name,
  or the URL with its password replaced by ``***``.
* **connections** (:class:`Connection`): one driver connection per target, opened
  at the first statement (or by :meth:`Connection.open`) and shared by threads
  under a re-entrant lock. SQLite runs in autocommit mode with a WAL journal,
  ``synchronous=FULL``, foreign keys enforced and a 30 s busy timeout, opened with
  ``check_same_thread=False`` (the lock serializes it); PostgreSQL runs through
  psycopg 3 in autocommit mode with a connect timeout. So a statement outside a
  transaction is committed when it returns. A PostgreSQL connection found closed
  or broken is replaced before the next statement, but never inside a
  transaction: a transaction lost with its connection must fail, not "commit" as
  a no-op on a new one.
* **dialects** (:data:`SQLITE`, :data:`POSTGRESQL`): statements are written with
  ``?`` placeholders and rewritten for psycopg by :func:`translate_placeholders`.
  Times are sent as UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` to SQLite (the form its
  own ``datetime()`` compares with) and as ``datetime`` to PostgreSQL
  (:meth:`Dialect.time`), and read back from either by :func:`read_time`. Booleans
  are sent as they are (SQLite stores 0/1). PostgreSQL's ``NOW()`` and
  ``NOW() - INTERVAL 'N unit'`` are rewritten for SQLite by
  :meth:`Dialect.translate_now`.
* **transactions** (:meth:`Connection.transaction`): commit when the block ends,
  roll back when it raises; used inside another, a savepoint, so an inner failure
  rolls back only the inner block. A transaction belongs to the thread that
  opened it: other threads wait for it to end.
* **errors**: a failure to connect is a :class:`~tether.errors.StorageError`
  ("cannot open the KIND at LOCATION", "cannot connect to ..." on PostgreSQL).
  Inside ``with connection.storage_errors(message):`` every driver error
  (``sqlite3.Error``, ``psycopg.Error``), ``OSError`` and failure to connect
  becomes a ``StorageError`` whose message starts with ``message``. Outside such a
  block a statement raises the driver's own error (the database service hands
  those to plugins, as PEP 249 expects). The driver's error is always the
  ``__cause__``, and no message carries a password.
"""

from __future__ import annotations

import abc
import functools
import logging
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, NamedTuple, Protocol, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from tether.errors import StorageError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "POSTGRESQL",
    "SQLITE",
    "Connection",
    "Dialect",
    "DialectName",
    "Fetch",
    "Result",
    "Target",
    "is_postgres_url",
    "open_sqlite",
    "read_time",
    "redact_url",
    "sqlite_target",
    "translate_placeholders",
]

logger = logging.getLogger("tether.sql")

DialectName = Literal["sqlite", "postgresql"]
Fetch = Literal["all", "one", "none"]

SQLITE_BUSY_TIMEOUT: Final = 30.0
DEFAULT_CONNECT_TIMEOUT: Final = 10


# --------------------------------------------------------------------------- targets

_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_postgres_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def sqlite_target(target: str | Path, *, kind: str) -> str:
    """The SQLite file name for a path, ``sqlite:///path`` or ``:memory:``.

    Any other ``scheme://`` is refused with a ``StorageError`` naming ``kind``.
    """
    if isinstance(target, Path):
        return str(target)
    if target in {":memory:", "sqlite://"}:
        return ":memory:"
    if target.startswith("sqlite:///"):
        return target.removeprefix("sqlite:///") or ":memory:"
    match = _SCHEME.match(target)
    if match:
        raise StorageError(
            f"unsupported {kind} URL scheme {match.group(1)!r} in {redact_url(target)}",
            hint="use a file path, sqlite:///path/to/file.db, or postgresql://user@host/db",
        )
    return target


@dataclass(frozen=True, slots=True)
class Target:
    """Where a connection goes: its dialect, what the driver opens, what messages call it."""

    dialect: Dialect
    name: str = field(repr=False)  # the SQLite file name, or the URL with its password
    kind: str  # what it is for ("state store", "database"); names it in messages
    location: str = field(init=False)  # the file name, or the URL with its password hidden

    def __post_init__(self) -> None:
        object.__setattr__(self, "location", redact_url(self.name))

    @classmethod
    def parse(cls, target: str | Path, *, kind: str) -> Target:
        """A PostgreSQL target for a ``postgresql://`` URL, else a SQLite one."""
        if is_postgres_url(target):
            return cls.postgresql(str(target), kind=kind)
        return cls.sqlite(target, kind=kind)

    @classmethod
    def sqlite(cls, path: str | Path, *, kind: str) -> Target:
        return cls(SQLITE, sqlite_target(path, kind=kind), kind)

    @classmethod
    def postgresql(cls, url: str, *, kind: str) -> Target:
        return cls(POSTGRESQL, url, kind)

    @property
    def path(self) -> str | None:
        """The SQLite file, if there is one."""
        return self.name if self.dialect is SQLITE and self.name != ":memory:" else None

    def scrub(self, text: str) -> str:
        """``text`` without this target's password (a driver may echo its URL)."""
        text = text.replace(self.name, self.location)
        password = urlsplit(self.name).password
        for secret in {password, unquote(password)} if password else ():
            text = text.replace(secret, "***")
        return text


# --------------------------------------------------------------------------- placeholders

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
    """``sql`` with ``?`` placeholders rewritten for psycopg.

    Each ``?`` outside quoted strings, quoted identifiers, dollar-quoted bodies and
    comments becomes ``%s``, every ``%`` is doubled, and ``??`` stands for a literal
    ``?`` (the jsonb operators). Only bare ``?`` is translated, not ``?NNN``.
    """
    return _PG_TOKENS.sub(_pg_token, sql)


_translated_sql: Final = functools.lru_cache(maxsize=1024)(translate_placeholders)

_PG_NOW: Final = re.compile(r"\bNOW\(\)(?:\s*-\s*INTERVAL\s*'(\d+ [A-Za-z]+)')?", re.IGNORECASE)


# --------------------------------------------------------------------------- dialects


class _Cursor(Protocol):
    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...
    @property
    def rowcount(self) -> int: ...
    def execute(self, sql: str, params: Sequence[object], /) -> object: ...
    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[object]], /) -> object: ...
    def fetchall(self) -> list[Any]: ...
    def fetchmany(self, size: int, /) -> list[Any]: ...
    def close(self) -> None: ...


class _DriverConnection(Protocol):
    def cursor(self) -> _Cursor: ...
    def close(self) -> None: ...


class Dialect(abc.ABC):
    """What differs between SQLite and PostgreSQL in the SQL this layer sends."""

    name: ClassVar[DialectName]
    begin: ClassVar[str]  # opens a transaction
    schema_lock: ClassVar[str | None]  # held to the end of the transaction that creates tables
    table_exists: ClassVar[str]  # one row whose first column is true if table ? exists
    connect_verb: ClassVar[str]  # "cannot {connect_verb} the database at ..."
    hint: ClassVar[str]  # what to check when the target cannot be reached

    @property
    @abc.abstractmethod
    def driver(self) -> ModuleType:
        """The DB-API module (``sqlite3``, ``psycopg``): its exception classes and more."""

    @abc.abstractmethod
    def connect(self, target: Target, *, timeout: int, read_only: bool) -> _DriverConnection: ...

    def is_lost(self, conn: _DriverConnection) -> bool:
        """Whether ``conn`` is closed or broken and should be replaced."""
        del conn
        return False

    def native(self, sql: str) -> str:
        """``sql`` (``?`` placeholders) in the driver's own parameter style."""
        return sql

    def time(self, moment: datetime | None) -> object:
        """``moment`` as this dialect stores times."""
        return moment

    def translate_now(self, sql: str) -> str:
        """PostgreSQL's ``NOW()`` and ``NOW() - INTERVAL 'N unit'`` in this dialect."""
        return sql

    def __repr__(self) -> str:
        return f"<dialect {self.name}>"


class _SQLite(Dialect):
    name = "sqlite"
    begin = "BEGIN IMMEDIATE"  # take the write lock up front: no upgrade deadlocks
    schema_lock = None
    table_exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    connect_verb = "open"
    hint = "check that the directory exists and is writable"

    @property
    def driver(self) -> ModuleType:
        return sqlite3

    def connect(self, target: Target, *, timeout: int, read_only: bool) -> _DriverConnection:
        del timeout  # SQLite waits for locks (the busy timeout), never for a server
        return open_sqlite(target.name, read_only=read_only)

    def time(self, moment: datetime | None) -> object:
        return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def translate_now(self, sql: str) -> str:
        return _PG_NOW.sub(
            lambda m: f"datetime('now', '-{m[1]}')" if m[1] else "datetime('now')", sql
        )


class _PostgreSQL(Dialect):
    name = "postgresql"
    begin = "BEGIN"
    schema_lock = "SELECT pg_advisory_xact_lock(?)"  # CREATE TABLE IF NOT EXISTS races otherwise
    table_exists = "SELECT to_regclass(?) IS NOT NULL"
    connect_verb = "connect to"
    hint = "check the URL, that the server is running, and the credentials"

    @property
    def driver(self) -> ModuleType:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - psycopg is a dependency
            raise StorageError(
                "PostgreSQL support needs psycopg", hint="pip install 'psycopg[binary]'"
            ) from exc
        return psycopg

    def connect(self, target: Target, *, timeout: int, read_only: bool) -> _DriverConnection:
        del read_only  # only SQLite opens files read-only; a reader here just reads
        conn = self.driver.connect(target.name, autocommit=True, connect_timeout=timeout)
        return cast("_DriverConnection", conn)

    def is_lost(self, conn: _DriverConnection) -> bool:
        pg = cast("psycopg.Connection[tuple[Any, ...]]", conn)
        return pg.closed or pg.broken

    def native(self, sql: str) -> str:
        return _translated_sql(sql)


SQLITE: Final[Dialect] = _SQLite()
POSTGRESQL: Final[Dialect] = _PostgreSQL()


def open_sqlite(name: str, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode, WAL journal, ``synchronous=FULL``, foreign keys on.

    With ``read_only`` the file must exist; it is opened read-only and left as it is.
    """
    if read_only:
        uri = f"{Path(name).resolve().as_uri()}?mode=ro"
        return sqlite3.connect(
            uri,
            uri=True,
            timeout=SQLITE_BUSY_TIMEOUT,
            isolation_level=None,
            check_same_thread=False,
        )
    if name != ":memory:":
        Path(name).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        name, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def read_time(value: object) -> datetime | None:
    """A time as either dialect returns it (``datetime`` or text), made aware (UTC if naive)."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- connections


class Result(NamedTuple):
    """What a statement returned: rows (tuples), their column names, the driver's row count."""

    rows: list[tuple[Any, ...]]
    columns: tuple[str, ...]
    rowcount: int


class _UnreachableError(StorageError):
    """A failure to connect (the driver's error is its cause); ``storage_errors`` rewords it."""


class Connection:
    """One connection to a :class:`Target`, shared by threads (see the module docstring).

    ``closed_hint`` is the hint of the error raised when it is used after
    :meth:`close`; ``read_only`` opens a SQLite file read-only.
    """

    def __init__(
        self,
        target: Target,
        *,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
        read_only: bool = False,
        closed_hint: str | None = None,
    ) -> None:
        self.target = target
        self.dialect = target.dialect
        self._connect_timeout = connect_timeout
        self._read_only = read_only
        self._closed_hint = closed_hint
        self._lock = threading.RLock()
        self._conn: _DriverConnection | None = None
        self._closed = False
        self._depth = 0
        self._owner: int | None = None  # the thread inside transaction(), if any

    @property
    def location(self) -> str:
        return self.target.location

    @property
    def in_transaction(self) -> bool:
        """Whether the calling thread is inside :meth:`transaction`."""
        return self._depth > 0 and self._owner == threading.get_ident()

    def open(self) -> None:
        """Connect now rather than at the next statement (or replace a lost connection)."""
        with self._lock:
            self._connection()

    def run(
        self,
        sql: str,
        params: Sequence[object] = (),
        *,
        fetch: Fetch = "all",
        native: bool = False,
    ) -> Result:
        """Run one statement (``?`` placeholders; with ``native``, the driver's own style)."""
        with self._lock:
            cursor = self._connection().cursor()
            try:
                cursor.execute(sql if native else self.dialect.native(sql), params)
                description = cursor.description
                rows: list[tuple[Any, ...]] = []
                if fetch != "none" and description is not None:
                    rows = cursor.fetchall() if fetch == "all" else cursor.fetchmany(1)
                columns = tuple(column[0] for column in description or ())
                return Result(rows, columns, cursor.rowcount)
            finally:
                cursor.close()

    def run_many(self, sql: str, seq_of_params: Iterable[Sequence[object]]) -> int:
        """Run ``sql`` once per parameter sequence; return the driver's total row count."""
        with self._lock:
            cursor = self._connection().cursor()
            try:
                cursor.executemany(self.dialect.native(sql), seq_of_params)
                return cursor.rowcount
            finally:
                cursor.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commit on success, roll back on an exception; nested use makes a savepoint."""
        with self._lock:
            depth = self._depth
            savepoint = f"tether_savepoint_{depth}"
            self._command(self.dialect.begin if depth == 0 else f"SAVEPOINT {savepoint}")
            self._depth += 1
            self._owner = threading.get_ident()
            try:
                yield
            except BaseException:
                self._undo(depth, savepoint)
                raise
            else:
                self._finish(depth, savepoint)
            finally:
                # Only now: no reconnecting while COMMIT is pending, or a transaction
                # lost with its connection would "commit" as a no-op on a new one.
                self._depth -= 1

    def create_schema(self, statements: Iterable[str], *, lock_id: int) -> None:
        """Run ``CREATE ... IF NOT EXISTS`` statements in one transaction.

        On PostgreSQL the transaction first takes the advisory lock ``lock_id``, so
        processes creating the same tables at once wait for each other.
        """
        with self.transaction():
            if self.dialect.schema_lock is not None:
                self.run(self.dialect.schema_lock, (lock_id,), fetch="none")
            for statement in statements:
                self.run(statement, fetch="none")

    def has_table(self, name: str) -> bool:
        rows = self.run(self.dialect.table_exists, (name,), fetch="one").rows
        return bool(rows and rows[0][0])

    def storage_errors(
        self, message: str, *, hint: str | None = None, plugin: str | None = None
    ) -> _StorageErrors:
        """Inside the block, driver errors become ``StorageError(f"{message}: ...")``."""
        return _StorageErrors(self.target, message, hint, plugin)

    def close(self) -> None:
        """Close the connection (an open transaction is rolled back by the server)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            logger.debug("closed %s %s", self.target.kind, self.location)

    def __repr__(self) -> str:
        return f"Connection({self.dialect.name}, {self.location!r})"

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> _DriverConnection:
        if self._closed:
            raise StorageError(
                f"the {self.target.kind} at {self.location} is closed", hint=self._closed_hint
            )
        conn = self._conn
        if conn is not None and (self._depth > 0 or not self.dialect.is_lost(conn)):
            return conn
        if conn is not None:
            logger.warning("reconnecting to %s: the connection was lost", self.location)
            conn.close()
        try:
            self._conn = self.dialect.connect(
                self.target, timeout=self._connect_timeout, read_only=self._read_only
            )
        except (self.dialect.driver.Error, OSError) as exc:
            self._conn = None
            verb = self.dialect.connect_verb
            message = f"cannot {verb} the {self.target.kind} at {self.location}"
            raise _failure(self.target, message, exc, error=_UnreachableError) from exc
        logger.debug("opened %s %s", self.target.kind, self.location)
        return self._conn

    def _command(self, sql: str) -> None:
        self.run(sql, fetch="none", native=True)

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
            logger.warning("rollback failed on %s", self.location, exc_info=True)


class _StorageErrors:
    """``Connection.storage_errors``: a class, not a generator, because it wraps every call."""

    __slots__ = ("_hint", "_message", "_plugin", "_target")

    def __init__(self, target: Target, message: str, hint: str | None, plugin: str | None) -> None:
        self._target = target
        self._message = message
        self._hint = hint
        self._plugin = plugin

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, _UnreachableError) and isinstance(exc.__cause__, Exception):
            exc = exc.__cause__  # reworded: the caller's message, the driver's error
        elif isinstance(exc, StorageError) or not isinstance(
            exc, (self._target.dialect.driver.Error, OSError)
        ):
            return  # nothing, or not the driver's: let it through unchanged
        raise _failure(
            self._target, self._message, exc, hint=self._hint, plugin=self._plugin
        ) from exc


def _failure(
    target: Target,
    message: str,
    exc: Exception,
    *,
    hint: str | None = None,
    plugin: str | None = None,
    error: type[StorageError] = StorageError,
) -> StorageError:
    return error(
        f"{message}: {type(exc).__name__}: {target.scrub(str(exc))}",
        plugin=plugin,
        path=target.path,
        hint=hint or target.dialect.hint,
    )
